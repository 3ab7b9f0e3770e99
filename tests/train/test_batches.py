"""Training sequences are what the engine feeds at inference; labels sit exactly on what the model must learn."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from omnimamba import OmniMambaConfig
from omnimamba.generation import ChatStep
from omnimamba.config import EOS_ID, PAD_ID
from omnimamba.model.vision import normalize_pixels, preprocess_image
from omnimamba.sampling import SamplingParams
from omnimamba.tokenizer import OmniTokenizer
from omnimamba.train.batches import IGNORE, BatchBuilder
from omnimamba.train.records import ChatRecord, DataError, T2IRecord, TextRecord

CFG = OmniMambaConfig.tiny()
TURNS = (("What colour is the square?", "It is red."), ("And its place?", "On the left."))


@pytest.fixture
def builder(tokenizer) -> BatchBuilder:
    return BatchBuilder(tokenizer, CFG, caption_dropout=0.1)


def test_two_turn_chat_equals_what_the_engine_feeds(tiny_engine, builder, tokenizer, monkeypatch):
    """The engine's session history after two turns (every id it fed, plus the last answer's pending EOS) is
    the training sequence; the answers are forced so that both sides talk about the same conversation."""
    answers = iter([tokenizer.encode(" " + a) + [EOS_ID] for _, a in TURNS])

    def forced_answer(decoder, state, embeds, params, max_new_tokens, generator=None):
        tokens = next(answers)
        for i, token in enumerate(tokens):
            yield ChatStep(token, "eos" if i == len(tokens) - 1 else None)

    monkeypatch.setattr("omnimamba.streams.chat_tokens", forced_answer)
    session_id = tiny_engine.new_session(Image.new("RGB", (32, 32), (200, 30, 30)))
    for question, _ in TURNS:
        list(tiny_engine.chat(session_id, question, SamplingParams()))
    session = tiny_engine.sessions[session_id]
    ids, labels = builder.chat_ids(TURNS)
    assert ids == session.history + session.pending
    assert ids[:len(tokenizer.chat_turn(TURNS[0][0]))] == tokenizer.chat_turn(TURNS[0][0])  # the engine's template


def test_labels_are_exactly_the_answers_and_their_eos(builder, tokenizer):
    records = [ChatRecord(TURNS, Image.new("RGB", (9, 9)), "a"), ChatRecord(TURNS[:1], None, "b")]
    batch = builder.mmu(records)
    q1, a1 = tokenizer.chat_turn(TURNS[0][0]), tokenizer.encode(" " + TURNS[0][1]) + [EOS_ID]
    q2, a2 = tokenizer.chat_turn(TURNS[1][0]), tokenizer.encode(" " + TURNS[1][1]) + [EOS_ID]
    n = len(q1 + a1 + q2 + a2)
    assert batch.text_ids.shape == batch.labels.shape == (2, n)
    assert batch.labels[0].tolist() == [IGNORE] * len(q1) + a1 + [IGNORE] * len(q2) + a2
    short = len(q1 + a1)
    assert batch.text_ids[1].tolist() == q1 + a1 + [PAD_ID] * (n - short)  # right-padded with [PAD]
    assert batch.labels[1].tolist() == [IGNORE] * len(q1) + a1 + [IGNORE] * (n - short)
    assert batch.has_image.tolist() == [True, False]
    engine_pixels = preprocess_image(records[0].image, CFG.vision)  # the engine's image transform
    assert batch.images.dtype == torch.uint8 and batch.images.shape[0] == 1  # only the row with an image
    trained_pixels = normalize_pixels(batch.images, CFG.vision)  # what the loss feeds the towers
    assert all(torch.equal(trained_pixels[k], engine_pixels[k][None]) for k in ("dino", "siglip"))
    assert batch.image_block == 4 + CFG.vision.num_patches  # image positions are never labelled
    assert batch.num_tokens == 2 * (batch.image_block + n)


def test_chat_is_cut_at_the_position_table(tokenizer):
    builder = BatchBuilder(tokenizer, CFG)
    long_turns = (("describe " * 100, "word " * 100),)
    ids, labels = builder.chat_ids(long_turns)
    assert len(ids) == len(labels) == CFG.mmu_positions - 4 - CFG.vision.num_patches


def test_t2i_prefixes_are_the_engines_conditional_and_unconditional_ones(tiny_engine, builder, monkeypatch):
    fed = {}

    def capture(decoder, prefix_ids, params, guidance_scale, uncond_ids, *rest):
        fed.update(prefix=prefix_ids[0].tolist(), uncond=uncond_ids[0].tolist())
        yield from ()

    monkeypatch.setattr("omnimamba.streams.image_tokens", capture)
    prompt = "a red square on the left of a very long caption that the tiny model must cut"
    list(tiny_engine.text_to_image(prompt, guidance_scale=3.0))
    assert builder.caption_prefix(prompt, dropped=False) == fed["prefix"]
    assert builder.caption_prefix(prompt, dropped=True) == fed["uncond"]


def test_t2i_prefix_is_the_inference_prefix_and_dropout_the_unconditional_side(builder, tokenizer):
    codes = tuple(range(CFG.num_image_tokens))
    records = [T2IRecord("a red square", "a", codes=codes), T2IRecord("a blue square", "b", codes=codes)]
    batch = builder.t2i(records, dropped=[False, True])
    assert batch.prefix_ids[0].tolist() == tokenizer.caption("a red square", CFG.caption_len).ids
    assert batch.prefix_ids[1].tolist() == OmniTokenizer.unconditional_caption(CFG.caption_len)
    assert batch.image_ids.tolist() == [list(codes)] * 2  # the targets are the codes themselves
    assert batch.num_tokens == 2 * (CFG.t2i_prefix_len + CFG.num_image_tokens)
    with pytest.raises(DataError, match="run `python -m omnimamba prepare`"):
        builder.t2i([T2IRecord("raw", "x.jsonl:4", image=Image.new("RGB", (4, 4)))], [False])


def test_text_labels_every_token_but_padding(builder, tokenizer):
    batch = builder.text([TextRecord("a b c d", "a"), TextRecord("a", "b")])
    long, short = tokenizer.encode("a b c d") + [EOS_ID], tokenizer.encode("a") + [EOS_ID]
    assert batch.ids.tolist() == [long, short + [PAD_ID] * (len(long) - len(short))]
    assert batch.labels.tolist() == [long, short + [IGNORE] * (len(long) - len(short))]


def test_batches_move_and_pin_field_by_field(builder):
    batch = builder.mmu([ChatRecord(TURNS, Image.new("RGB", (9, 9)), "a")])
    moved = batch.to("meta")
    assert moved.text_ids.device.type == moved.images.device.type == "meta"
    assert moved.image_block == batch.image_block and batch.text_ids.device.type == "cpu"
    assert torch.equal(batch.to("cpu").labels, batch.labels)
