"""Decode weights in fewer bytes (opt-in). A batch-1 step is bound by reading its weights, so fewer bytes is the
point; the prefill and training keep the model's weights.
  8-bit (GPU and CPU): each matrix the decode step streams as int8 rows with one fp32 scale per row (output
  channel), w ~ q * scale.
  bf16 copies of an fp32 model (CPU): each product's input rounded to bf16, as a bf16 model's are; exact weights
  for a model trained in bf16 (the shapes model), and half the bytes the CPU streams from memory each step.

The 8-bit rows: symmetric per-row quantization, scale = max |w_row| / 127: no calibration data, and every row's
error is bounded by half a step of its own scale.
"""
from __future__ import annotations

from typing import NamedTuple, Union

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


class Bf16Weight(NamedTuple):
    w: Tensor  # (n, k) bf16
    dtype: torch.dtype  # the model's dtype: what the product returns

    @property
    def nbytes(self) -> int:
        return self.w.nbytes


DecodeWeight = Union[Tensor, Int8Weight, Bf16Weight]


def linear(x: Tensor, weight: DecodeWeight) -> Tensor:
    """x @ weight.T for a 16/32-bit weight (in x's dtype), an 8-bit one (in fp32: its rows, then the scales) or
    a bf16 copy (in fp32, from x rounded to bf16)."""
    if isinstance(weight, Int8Weight):
        return F.linear(x.float(), weight.q.float()) * weight.scale.float()
    if isinstance(weight, Bf16Weight):
        return F.linear(x.to(torch.bfloat16), weight.w).float()
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


class Bf16Rows(nn.Module):
    """A `Bf16Weight` held as a buffer (derived, never saved); for an fp32 model on the CPU."""

    def __init__(self, weight: Tensor):
        super().__init__()
        self.register_buffer("w", weight.detach().to(torch.bfloat16), persistent=False)

    def weight(self, dtype: torch.dtype) -> Bf16Weight:
        return Bf16Weight(self.w, dtype)


DECODE_COPIES = {"int8": Int8Rows, "bf16": Bf16Rows}  # kind -> the module that holds one matrix's copy
