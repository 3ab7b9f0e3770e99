"""Training records follow the training contract and never show a held-out colour-shape combination."""
from __future__ import annotations

from itertools import islice

from PIL import Image

from omnimamba.shapes.language import parse_caption
from omnimamba.shapes.preset import shapes_config
from omnimamba.shapes.records import chat_records, t2i_records, text_records
from omnimamba.shapes.world import HELD_OUT, SIZE



def held_out_mentioned(text: str) -> bool:
    return bool(set(parse_caption(text).objects) & HELD_OUT)


def test_chat_records():
    records = list(islice(chat_records(0), 300))
    with_image = [r for r in records if r["image"] is not None]
    assert 0.05 < 1 - len(with_image) / len(records) < 0.3  # some text-only chats
    assert all(isinstance(r["image"], Image.Image) and r["image"].size == (SIZE, SIZE) for r in with_image)
    turns = [len(r["conversations"]) // 2 for r in records]
    assert set(turns) == {1, 2, 3}
    for r in records:
        conv = r["conversations"]
        assert [t["from"] for t in conv] == ["human", "gpt"] * (len(conv) // 2)
        assert all(t["value"].strip() for t in conv)
        assert not any(held_out_mentioned(t["value"]) for t in conv)
    text_only = next(r for r in records if r["image"] is None)
    assert parse_caption(text_only["conversations"][0]["value"]).objects  # the caption it answers from


def test_t2i_and_text_records():
    for r in islice(t2i_records(0), 100):
        assert set(r) == {"caption", "image"} and r["image"].size == (SIZE, SIZE)
        assert parse_caption(r["caption"]).objects and not held_out_mentioned(r["caption"])
    texts = [r["text"] for r in islice(text_records(0), 100)]
    assert any(t.startswith("USER: ") and " ASSISTANT: " in t for t in texts)
    assert any("<|endoftext|>USER: " in t for t in texts)  # later turns follow the answer's EOS
    assert any("USER:" not in t for t in texts)
    assert not any(held_out_mentioned(t) for t in texts)


def test_streams_are_seeded():
    first = [r["conversations"] for r in islice(chat_records(5), 20)]
    assert first == [r["conversations"] for r in islice(chat_records(5), 20)]
    assert first != [r["conversations"] for r in islice(chat_records(6), 20)]


def test_longest_chats_fit_the_preset():
    from omnimamba.tokenizer import OmniTokenizer

    tok, cfg = OmniTokenizer.from_file(), shapes_config()  # the GPT-NeoX-20B file shipped in the package
    longest = 0
    for r in islice(chat_records(1), 400):
        conv = r["conversations"]
        ids = sum((tok.chat_turn(h["value"]) + tok.encode(" " + g["value"]) + [0]
                   for h, g in zip(conv[::2], conv[1::2])), [])
        longest = max(longest, len(ids))
    assert 4 + cfg.vision.num_patches + longest <= cfg.mmu_positions - 64  # room for a few more turns
    assert max(len(tok.encode(r["caption"])) for r in islice(t2i_records(1), 300)) <= cfg.caption_len


def test_where_questions_only_when_asked_for_and_their_answers_name_the_shapes_ninth():
    from omnimamba.shapes.questions import place
    from omnimamba.shapes.records import WHERE_MIX
    from omnimamba.shapes.sources import make_item

    assert abs(sum(WHERE_MIX.values()) - 1) < 1e-9
    asked = lambda records: [t["value"] for r in records for t in r["conversations"] if t["value"].startswith("Where")]  # noqa: E731
    assert not asked(islice(chat_records(0), 200))
    where = asked(islice(chat_records(0, mix=WHERE_MIX), 200))
    assert len(where) > 10
    assert [make_item(3, "mmu", 7, WHERE_MIX) for _ in range(2)][0] == make_item(3, "mmu", 7, WHERE_MIX)
    assert (place((20, 20)), place((128, 128)), place((240, 128)), place((128, 10)), place((10, 250))) == (
        "at the top left", "in the middle", "on the right", "at the top", "at the bottom left")


def test_a_where_answer_holds_for_its_scene():
    import numpy as np

    from omnimamba.shapes.questions import ask, facts_of_scene, place
    from omnimamba.shapes.world import TRAIN_COMBOS, sample_scene

    rng = np.random.default_rng(0)
    for _ in range(50):
        scene = sample_scene(rng, TRAIN_COMBOS)
        qa = ask(facts_of_scene(scene), "where", rng)
        shape = next(s for s in scene.shapes if f"the {s.colour} {s.kind}" in qa.question.lower())
        assert qa.answer == f"The {shape.colour} {shape.kind} is {place(shape.centre)}." and qa.expected in qa.answer
