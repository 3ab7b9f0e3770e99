"""A table stored with its one repeated row once: how the shapes model's text table fits its 40 MB file.

The shapes world uses a few hundred of the 50,288 GPT-NeoX ids. Its recipe starts every other row of the tied
text table at one shared value; those rows never appear as inputs, and as outputs they all get the same
gradient (the softmax gives identical rows identical probabilities), so they stay one value. A file may then
hold, instead of KEY (n, d):
    KEY + KEPT_IDS   (k,) int64, the ids whose rows differ from the shared one, ascending
    KEY + KEPT_ROWS  (k + 1, d), their rows, then the shared row last
`unpack` rebuilds KEY at the shape the model expects, before the strict key check; `pack` writes the pair.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

KEPT_IDS, KEPT_ROWS = ".kept_ids", ".kept_rows"


class PackedRowsError(ValueError):
    """A packed table that cannot be rebuilt; the message names the key."""


def pack(table: Tensor, atol: float = 0.0) -> tuple[Tensor, Tensor]:
    """(kept_ids, kept_rows) of `table`: the shared row is its most frequent one; rows within `atol` of it (max
    absolute difference) count as shared."""
    unique, counts = torch.unique(table, dim=0, return_counts=True)
    shared = unique[counts.argmax()]
    differs = (table - shared).abs().amax(dim=1) > atol
    kept_ids = differs.nonzero().flatten()
    return kept_ids, torch.cat([table[kept_ids], shared[None]])


def pack_into(sd: dict[str, Tensor], key: str, atol: float = 0.0) -> int:
    """Replace sd[key] by its packed pair in place; returns how many rows are kept apart from the shared one."""
    kept_ids, kept_rows = pack(sd.pop(key), atol)
    sd[key + KEPT_IDS], sd[key + KEPT_ROWS] = kept_ids, kept_rows
    return len(kept_ids)


def unpack(sd: Mapping[str, Tensor], expected: Mapping[str, torch.Size]) -> dict[str, Tensor]:
    """`sd` with every packed pair rebuilt into the full table of the shape in `expected`; other keys as they are.
    A pair whose table the model does not have is left alone (the strict check then reports both keys)."""
    out = dict(sd)
    for ids_key in [k for k in sd if k.endswith(KEPT_IDS)]:
        key = ids_key[:-len(KEPT_IDS)]
        rows_key = key + KEPT_ROWS
        if key not in expected or rows_key not in out:
            continue
        out[key] = _rebuild(key, out.pop(ids_key), out.pop(rows_key), tuple(expected[key]))
    return out


def _rebuild(key: str, ids: Tensor, rows: Tensor, shape: tuple[int, ...]) -> Tensor:
    n = shape[0]
    if ids.dtype != torch.int64 or ids.dim() != 1 or not rows.is_floating_point() or rows.dim() != 2:
        raise PackedRowsError(f"{key}: a packed table needs int64 ids (k,) and float rows (k + 1, d); found "
                              f"{ids.dtype} {list(ids.shape)} and {rows.dtype} {list(rows.shape)}")
    if rows.shape != (len(ids) + 1, shape[1]):
        raise PackedRowsError(f"{key}: {len(ids)} kept ids need {len(ids) + 1} rows of width {shape[1]} (the shared "
                              f"row last), found {list(rows.shape)}")
    if len(ids) and (ids.min() < 0 or ids.max() >= n or (ids[1:] <= ids[:-1]).any()):
        raise PackedRowsError(f"{key}: kept ids must be ascending, unique and within 0..{n - 1}")
    table = rows[-1].expand(n, -1).clone()
    table[ids] = rows[:-1]
    return table
