"""A table stored with its shared row once loads back exactly, and a damaged one is refused by name."""
from __future__ import annotations

import pytest
import torch

from omnimamba import packed_rows
from omnimamba.checkpoint import TIED_KEYS, CheckpointError
from omnimamba.config import OmniMambaConfig
from omnimamba.model.init import random_model

TABLE = TIED_KEYS["llm_backbone.mamba.lm_head.weight"]


def shared_table(n: int = 50, d: int = 4, used: tuple[int, ...] = (0, 7, 49)) -> torch.Tensor:
    table = torch.full((n, d), 0.25)
    table[list(used)] = torch.randn(len(used), d)
    return table


def test_pack_keeps_the_rows_that_differ_and_unpack_rebuilds_the_table():
    table = shared_table()
    ids, rows = packed_rows.pack(table)
    assert ids.tolist() == [0, 7, 49] and rows.shape == (4, 4) and torch.equal(rows[-1], torch.full((4,), 0.25))
    sd = packed_rows.unpack({"t" + packed_rows.KEPT_IDS: ids, "t" + packed_rows.KEPT_ROWS: rows, "other": rows},
                            {"t": table.shape})
    assert torch.equal(sd["t"], table) and set(sd) == {"t", "other"}


def test_rows_within_the_tolerance_count_as_shared():
    table = shared_table()
    table[3] += 1e-4
    assert packed_rows.pack(table)[0].tolist() == [0, 3, 7, 49]
    assert packed_rows.pack(table, atol=1e-3)[0].tolist() == [0, 7, 49]


def test_a_model_loads_a_packed_state_dict_exactly():
    model = random_model(OmniMambaConfig.tiny())
    with torch.no_grad():
        model.backbone.embedding.weight[10:] = 0.5  # rows past 10 share one value
    sd = {k: v.clone() for k, v in model.state_dict().items() if k not in TIED_KEYS}
    kept = packed_rows.pack_into(sd, TABLE)
    assert kept == 10 and TABLE not in sd
    fresh = random_model(OmniMambaConfig.tiny(), seed=1)
    fresh.load_official_state_dict(sd)
    assert torch.equal(fresh.backbone.embedding.weight, model.backbone.embedding.weight)
    assert torch.equal(fresh.mamba.lm_head.weight, model.backbone.embedding.weight), "the head stays tied"


@pytest.mark.parametrize("damage, message", [
    (lambda ids, rows: (ids + 10_000_000, rows), "within 0.."),
    (lambda ids, rows: (ids.flip(0), rows), "ascending"),
    (lambda ids, rows: (ids, rows[:-1]), "rows of width"),
    (lambda ids, rows: (ids.float(), rows), "int64 ids"),
])
def test_a_damaged_packed_table_is_refused_by_name(damage, message):
    model = random_model(OmniMambaConfig.tiny())
    sd = {k: v.clone() for k, v in model.state_dict().items() if k not in TIED_KEYS}
    packed_rows.pack_into(sd, TABLE)
    sd[TABLE + packed_rows.KEPT_IDS], sd[TABLE + packed_rows.KEPT_ROWS] = damage(
        sd[TABLE + packed_rows.KEPT_IDS], sd[TABLE + packed_rows.KEPT_ROWS])
    with pytest.raises(CheckpointError, match=message) as err:
        random_model(OmniMambaConfig.tiny()).load_official_state_dict(sd)
    assert TABLE in str(err.value)
