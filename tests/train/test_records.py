"""The documented JSONL formats: what is accepted, and errors that name file:line and the problem."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from omnimamba import OmniMambaConfig
from omnimamba.images import ImageFileError, open_image
from omnimamba.train.records import (ChatRecord, DataError, T2IRecord, TextRecord, load_image, load_items,
                                     load_jsonl, t2i_pixels)

CHAT = {"conversations": [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A cat."}]}


def write_jsonl(path, lines) -> str:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return str(path)


def test_chat_records_resolve_images_next_to_the_file_and_drop_the_image_placeholder(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "a.png")
    two_turns = {"image": None, "conversations": CHAT["conversations"] + [
        {"from": "human", "value": "Sure?"}, {"from": "gpt", "value": "Yes."}]}
    path = write_jsonl(tmp_path / "chat.jsonl", [{"image": "imgs/a.png", **CHAT}, "", two_turns])
    first, second = load_jsonl(path, "mmu")
    assert first == ChatRecord((("What is it?", "A cat."),), tmp_path / "imgs" / "a.png", f"{path}:1")
    assert second.image is None and second.turns == (("What is it?", "A cat."), ("Sure?", "Yes."))
    assert second.where == f"{path}:3"  # blank lines are skipped but still counted


def test_text_to_image_and_plain_text_records(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    t2i = load_jsonl(write_jsonl(tmp_path / "t.jsonl", [{"image": "a.png", "caption": " a cat "},
                                                        {"caption": "codes", "codes": [1] * 64}]),
                     "t2i", OmniMambaConfig.tiny())
    assert t2i[0] == T2IRecord("a cat", f"{tmp_path}/t.jsonl:1", image=tmp_path / "a.png")
    assert t2i[1].codes == (1,) * 64 and t2i[1].image is None
    assert load_items([{"text": "hello"}], "text") == [TextRecord("hello", "records[0]")]


@pytest.mark.parametrize("line, task, message", [
    ('{"conversations": [', "mmu", "not valid JSON"),
    ('[1, 2]', "mmu", "expected a JSON object, found list"),
    ('{"image": "x.png"}', "mmu", "exactly one of \"conversations\""),
    ('{"caption": "a", "text": "b"}', "t2i", "found more than one of them"),
    ('{"caption": "a cat", "codes": [1]}', "mmu", "a t2i record in the mmu data"),
    ('{"conversations": []}', "mmu", "non-empty list"),
    ('{"conversations": [{"from": "human", "value": "q"}]}', "mmu", "even number of turns"),
    ('{"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]}', "mmu",
     "turn 0 must come from 'human', found 'gpt'"),
    ('{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": " "}]}', "mmu",
     "turn 1 \"value\" must be non-empty text"),
    ('{"conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "a"}]}', "mmu",
     "only the <image> placeholder"),
    ('{"image": "missing.png", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}',
     "mmu", "image 'missing.png' not found"),
    ('{"image": 3, "caption": "a"}', "t2i", "\"image\" must be a file path"),
    ('{"caption": "a"}', "t2i", "needs \"image\" (a file) or \"codes\""),
    ('{"caption": "a", "codes": [1, 2]}', "t2i", "must be 64 ids in [0, 64)"),
    ('{"caption": "a", "codes": [64] + [0]}', "t2i", "not valid JSON"),
    ('{"text": ""}', "text", "\"text\" must be non-empty text"),
])
def test_errors_name_file_line_and_problem(tmp_path, line, task, message):
    path = write_jsonl(tmp_path / "data.jsonl", ['{"text": "fine"}' if task == "text" else "", line])
    with pytest.raises(DataError) as err:
        load_jsonl(path, task, OmniMambaConfig.tiny())
    assert f"{path}:2: " in str(err.value) and message in str(err.value)


def test_all_problems_are_reported_at_once_and_an_empty_file_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ['{"text": ""}', '{"text": "ok"}', "nope"])
    with pytest.raises(DataError, match=r"2 problem\(s\)") as err:
        load_jsonl(path, "text")
    assert f"{path}:1:" in str(err.value) and f"{path}:3:" in str(err.value)
    with pytest.raises(DataError, match=r"20 problem\(s\) .* \(the first ones"):
        load_jsonl(write_jsonl(tmp_path / "many.jsonl", ["nope"] * 25), "text")
    with pytest.raises(DataError, match="holds no records"):
        load_jsonl(write_jsonl(tmp_path / "e.jsonl", [""]), "text")
    with pytest.raises(DataError, match="cannot read"):
        load_jsonl(tmp_path / "absent.jsonl", "text")


def test_images_are_loaded_upright_following_exif(tmp_path):
    image = Image.new("RGB", (4, 2), (255, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: stored rotated, shown turned 90 degrees clockwise
    image.save(tmp_path / "phone.png", exif=exif)
    assert open_image(tmp_path / "phone.png").size == (2, 4)
    assert load_image(tmp_path / "phone.png", "x").size == (2, 4)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"rec:7: .*bad.png: not a readable image"):
        load_image(tmp_path / "bad.png", "rec:7")
    with pytest.raises(ImageFileError, match="over the limit"):
        open_image(tmp_path / "phone.png", max_pixels=7)


def test_t2i_pixels_crop_the_centre_to_the_vq_size():
    image = Image.new("RGB", (40, 20), (255, 255, 255))
    image.paste((0, 0, 0), (0, 0, 6, 20))  # a black left strip: outside the centre crop
    pixels = t2i_pixels(image, 16)
    assert pixels.shape == (3, 16, 16)
    assert pixels.min() > 0.99 and pixels.max() <= 1.0  # all white, in [-1, 1]
