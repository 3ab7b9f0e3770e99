"""Which samples each micro-batch holds: a function of (seed, position) only, whatever the worker or process
count, so a resumed run continues exactly where it stopped."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from omnimamba import OmniMambaConfig
from omnimamba.config import PAD_ID
from omnimamba.train.batches import BatchBuilder
from omnimamba.train.data import StepDataset, make_loader, open_sources
from omnimamba.train.records import DataError
from omnimamba.train.synthetic import COLOURS, PLACES, scene_codes

CFG = OmniMambaConfig.tiny()
TASKS = ("mmu", "t2i", "text")


@pytest.fixture(scope="module")
def sources():
    return open_sources({t: "synthetic" for t in TASKS}, CFG, TASKS)


def dataset(sources, tokenizer, micro=None, rank=0, world_size=1, length=12, dropout=0.3) -> StepDataset:
    builder = BatchBuilder(tokenizer, CFG, caption_dropout=dropout)
    return StepDataset(sources, micro or {"mmu": 2, "t2i": 4, "text": 2}, builder, seed=7, rank=rank,
                       world_size=world_size, length=length)


def as_tensors(batches: dict) -> dict:
    """Every tensor of a {task: batch} item, flattened to name -> tensor."""
    out = {}
    for task, batch in batches.items():
        for field in dataclasses.fields(batch):
            value = getattr(batch, field.name)
            for key, tensor in (value.items() if isinstance(value, dict) else [("", value)]):
                if isinstance(tensor, torch.Tensor):
                    out[f"{task}.{field.name}.{key}"] = tensor
    return out


def assert_same(a: dict, b: dict) -> None:
    ta, tb = as_tensors(a), as_tensors(b)
    assert ta.keys() == tb.keys()
    for name in ta:
        assert torch.equal(ta[name], tb[name]), name


def test_two_workers_give_the_batches_of_none(sources, tokenizer):
    data = dataset(sources, tokenizer)
    serial = list(make_loader(data, start=0, num_workers=0))
    parallel = list(make_loader(data, start=0, num_workers=2))
    assert len(serial) == len(parallel) == len(data)
    for a, b in zip(serial, parallel):
        assert_same(a, b)


def test_resuming_at_position_k_continues_the_same_stream(sources, tokenizer):
    full = list(make_loader(dataset(sources, tokenizer)))
    resumed = list(make_loader(dataset(sources, tokenizer), start=5))  # a fresh dataset, as after a restart
    assert len(resumed) == len(full) - 5
    for a, b in zip(full[5:], resumed):
        assert_same(a, b)
    assert not torch.equal(full[0]["t2i"].image_ids, full[1]["t2i"].image_ids)  # positions differ


def test_processes_split_the_samples_of_one_process(sources, tokenizer):
    one = dataset(sources, tokenizer, micro={"t2i": 4, "mmu": 2})
    ranks = [dataset(sources, tokenizer, micro={"t2i": 2, "mmu": 1}, rank=r, world_size=2) for r in range(2)]
    for p in range(4):
        parts = [r[p] for r in ranks]
        assert torch.equal(one[p]["t2i"].prefix_ids, torch.cat([b["t2i"].prefix_ids for b in parts]))
        assert torch.equal(one[p]["t2i"].image_ids, torch.cat([b["t2i"].image_ids for b in parts]))
        assert unpadded(one[p]["mmu"].text_ids) == sum((unpadded(b["mmu"].text_ids) for b in parts), [])


def unpadded(ids: torch.Tensor) -> list[list[int]]:
    return [[i for i in row if i != PAD_ID] for row in ids.tolist()]


def test_each_epoch_visits_every_record_once_in_a_new_order(sources, tokenizer):
    data = dataset(sources, tokenizer)
    n = len(sources["t2i"])
    first = [data.record_index("t2i", g) for g in range(n)]
    second = [data.record_index("t2i", g) for g in range(n, 2 * n)]
    assert sorted(first) == sorted(second) == list(range(n)) and first != second


def test_caption_dropout_rate_and_seed(sources, tokenizer):
    data = dataset(sources, tokenizer, dropout=0.25)
    drops = [data.caption_dropped(g) for g in range(4000)]
    assert 0.22 < sum(drops) / len(drops) < 0.28
    assert not any(dataset(sources, tokenizer, dropout=0.0).caption_dropped(g) for g in range(200))


def test_synthetic_t2i_codes_follow_the_caption(sources):
    record = next(r for r in sources["t2i"] if r.caption == "a blue square on the left")
    assert record.codes == tuple(scene_codes("blue", "left", CFG.image_grid, CFG.image_vocab_size))
    assert len(sources["t2i"]) == len(COLOURS) * len(PLACES)
    assert any(r.image is None for r in sources["mmu"])  # text-only chats are part of the mix


def test_sources_say_what_is_missing(tmp_path, tokenizer):
    with pytest.raises(DataError, match=r"no data for task\(s\) \['t2i'\]"):
        open_sources({"mmu": "synthetic"}, CFG, ("mmu", "t2i"))
    with pytest.raises(DataError, match="does not exist"):
        open_sources({"text": str(tmp_path / "nope.jsonl")}, CFG, ("text",))
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "t.jsonl").write_text('{"image": "a.png", "caption": "a cat"}\n')
    with pytest.raises(DataError, match="1 of 1 text-to-image records .* are raw images; .* prepare"):
        open_sources({"t2i": str(tmp_path / "t.jsonl")}, CFG, ("t2i",))
    with pytest.raises(DataError, match="is a folder"):
        open_sources({"mmu": str(tmp_path)}, CFG, ("mmu",))
