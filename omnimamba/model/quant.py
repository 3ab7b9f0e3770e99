"""8-bit decode weights (opt-in): each matrix the decode step streams stored as int8 rows with one fp32 scale
per row (output channel), w ~ q * scale. A batch-1 step is bound by reading its weights, so half the bytes is
the point; the prefill and training keep the 16-bit weights.

Symmetric per-row quantization, scale = max |w_row| / 127: no calibration data, and every row's error is
bounded by half a step of its own scale.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Int8Weight(NamedTuple):
    q: Tensor  # (n, k) int8
    scale: Tensor  # (n,) fp32
    dtype: torch.dtype  # the model's dtype: what the product returns

    @classmethod
    def quantize(cls, weight: Tensor) -> "Int8Weight":
        w = weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
        return cls(q, scale, weight.dtype)

    def dequantize(self) -> Tensor:
        """fp32 (n, k): the values the 8-bit products multiply by."""
        return self.q.float() * self.scale.float()[:, None]

    @property
    def nbytes(self) -> int:
        return self.q.nbytes + self.scale.nbytes


def linear(x: Tensor, weight: "Tensor | Int8Weight") -> Tensor:
    """x @ weight.T for a 16/32-bit weight (in x's dtype) or an 8-bit one (in fp32: its rows, then the scales)."""
    if isinstance(weight, Int8Weight):
        return F.linear(x.float(), weight.q.float()) * weight.scale.float()
    return F.linear(x, weight)


class Int8Rows(nn.Module):
    """An `Int8Weight` held as buffers: derived from the model's weights, never saved (not in the state_dict),
    moved by `.to()`. Quantize after choosing the model's dtype: `.to(dtype)` would round the scales too."""

    def __init__(self, weight: Tensor):
        super().__init__()
        w = Int8Weight.quantize(weight)
        self.register_buffer("q", w.q, persistent=False)
        self.register_buffer("scale", w.scale, persistent=False)

    def weight(self, dtype: torch.dtype) -> Int8Weight:
        return Int8Weight(self.q, self.scale, dtype)
