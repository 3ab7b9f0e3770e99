"""`prepare`: VQ codes in shards that read back exactly, and a second run that redoes only what is missing."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors import safe_open

from omnimamba.train import prepare
from omnimamba.train.data import open_source
from omnimamba.train.prepare import CodeShards, prepare_t2i, write_prepared
from omnimamba.train.records import DataError, t2i_pixels
from omnimamba.train.synthetic import scene_image

SCENES = [("red", "left"), ("blue", "top"), ("green", "right"), ("yellow", "bottom"), ("purple", "left")]


@pytest.fixture
def jsonl(tmp_path):
    (tmp_path / "imgs").mkdir()
    lines = []
    for i, (colour, place) in enumerate(SCENES):
        scene_image(colour, place, 80 + 8 * i).save(tmp_path / "imgs" / f"{i}.png")  # sizes differ: crop to 64
        lines.append(json.dumps({"image": f"imgs/{i}.png", "caption": f"a {colour} square on the {place}"}))
    lines.append(json.dumps({"caption": "given codes", "codes": list(range(64))}))
    path = tmp_path / "t2i.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_shards_hold_the_vq_codes_and_captions(jsonl, tmp_path, tiny_model):
    out = prepare_t2i(jsonl, tmp_path / "out", tiny_model, batch_size=2, shard_size=4)
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "shard-00000.safetensors",
                                                     "shard-00001.safetensors"]
    shards = CodeShards(out, tiny_model.config)
    assert len(shards) == 6
    size = tiny_model.config.image_size
    with torch.no_grad():
        pixels = torch.stack([t2i_pixels(Image.open(jsonl.parent / "imgs" / f"{i}.png").convert("RGB"), size)
                              for i in range(len(SCENES))])
        expected = tiny_model.vq.encode_codes(pixels)
    for i, (colour, place) in enumerate(SCENES):
        assert shards[i].caption == f"a {colour} square on the {place}"
        assert shards[i].codes == tuple(expected[i].tolist())
    assert shards[5].codes == tuple(range(64))  # records that carry codes keep them
    assert open_source("t2i", str(out), tiny_model.config)[4].caption == "a purple square on the left"
    with pytest.raises(IndexError):
        shards[6]


def test_a_second_run_redoes_only_missing_shards(jsonl, tmp_path, tiny_model, monkeypatch):
    out = prepare_t2i(jsonl, tmp_path / "out", tiny_model, batch_size=4, shard_size=2)
    first = read_shard(out / "shard-00001.safetensors")
    (out / "shard-00001.safetensors").unlink()
    (out / "shard-00002.safetensors.tmp").write_bytes(b"interrupted")  # a half-written shard is not a shard
    encoded = []
    real = prepare._encode
    monkeypatch.setattr(prepare, "_encode", lambda records, *a: encoded.append(len(records)) or real(records, *a))
    prepare_t2i(jsonl, out, tiny_model, batch_size=4, shard_size=2)
    assert encoded == [2]  # only the missing shard
    again = read_shard(out / "shard-00001.safetensors")
    assert torch.equal(again[0], first[0]) and again[1] == first[1]
    assert len(CodeShards(out)) == 6


def read_shard(path) -> tuple[torch.Tensor, dict]:
    with safe_open(str(path), "pt") as f:
        return f.get_tensor("codes"), f.metadata()


def test_a_folder_of_other_data_is_refused(jsonl, tmp_path, tiny_model):
    prepare_t2i(jsonl, tmp_path / "out", tiny_model, batch_size=4, shard_size=4)
    with pytest.raises(DataError, match="holds shards of other data"):
        prepare_t2i(jsonl, tmp_path / "out", tiny_model, batch_size=4, shard_size=3)
    with pytest.raises(DataError, match="no readable index.json"):
        CodeShards(tmp_path)


def test_shards_cross_into_worker_processes(jsonl, tmp_path, tiny_model):
    import pickle

    shards = CodeShards(prepare_t2i(jsonl, tmp_path / "out", tiny_model, shard_size=4))
    before = shards[1]
    assert pickle.loads(pickle.dumps(shards))[1] == before  # open handles are not pickled; reopened on use


def test_codes_encoded_elsewhere_are_written_as_a_prepared_folder(tmp_path):
    from omnimamba import OmniMambaConfig

    config = OmniMambaConfig.tiny()
    codes = torch.randint(0, config.image_vocab_size, (5, config.num_image_tokens))
    captions = [f"caption {i}" for i in range(5)]
    write_prepared(tmp_path / "out", codes, captions, "made-for-test", config, source="test", shard_size=2)
    shards = CodeShards(tmp_path / "out", config)
    assert len(shards) == 5 and shards.fingerprint == "made-for-test" and len(shards.files) == 3
    assert [(r.caption, r.codes) for r in shards] == [(c, tuple(k.tolist())) for c, k in zip(captions, codes)]
