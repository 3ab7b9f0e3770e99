"""Sampling as pure functions of logits: no host syncs, no in-place edits of the caller's tensors.

The official setting is greedy (top_k=1). Otherwise the official order is kept (reference §8): keep the top-k
logits, divide by the temperature, keep the smallest set of tokens whose probability reaches top_p, draw.
The draw is an exponential race (argmax of p / E with E ~ Exp(1)), so the randomness is an input tensor that
a per-request torch.Generator fills: two requests never share a random stream, and the same seed gives the
same tokens. All parameters are tensors, so one captured CUDA graph serves every setting.
"""
from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_k: int = 1  # 1 = greedy, the official setting; 0 = no top-k limit
    top_p: float = 0.0  # 0 (or 1) = off
    seed: int | None = None

    def __post_init__(self) -> None:
        check_number("temperature", self.temperature, 0.0, 10.0)
        check_whole("top_k", self.top_k, 0, 1_000_000, "(1 = greedy, 0 = off)")
        check_number("top_p", self.top_p, 0.0, 1.0, "(0 = off)")
        if self.seed is not None:
            check_whole("seed", self.seed, 0, 2**63 - 1)

    @property
    def greedy(self) -> bool:
        return self.top_k == 1 or self.temperature == 0.0


@dataclass(frozen=True)
class ImageDefaults:
    """A model's suggested text-to-image settings, carried in a trained checkpoint's metadata: the official
    model's are greedy without guidance; a small model's greedy image is mostly its background (the likeliest
    code everywhere), so the shapes model suggests sampling with guidance."""
    temperature: float = 1.0
    top_k: int = 1
    top_p: float = 0.0
    guidance_scale: float = 1.0

    def __post_init__(self) -> None:
        SamplingParams(self.temperature, self.top_k, self.top_p)  # the same checks as a request's settings
        check_number("guidance_scale", self.guidance_scale, 0.0, 20.0, "(1 = off)")

    @classmethod
    def from_json(cls, text: str) -> "ImageDefaults":
        """From a checkpoint's metadata; a ValueError names what is wrong."""
        try:
            fields = json.loads(text)
            return cls(**fields)
        except (json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"image defaults must be a JSON object with temperature, top_k, top_p and "
                             f"guidance_scale, got {text[:200]!r} ({exc})") from None


def check_whole(name: str, value: object, low: int, high: int, hint: str = "") -> int:
    """`value` as an int in [low, high]; bools, floats (even 2.0) and NaN are refused with a ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number in {low}..{high}{' ' + hint if hint else ''}, "
                         f"got {value!r}")
    return int(value)


def check_number(name: str, value: object, low: float, high: float, hint: str = "") -> float:
    """`value` as a float in [low, high]; bools, NaN and non-numbers are refused with a ValueError."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value)
            or not low <= value <= high):
        raise ValueError(f"{name} must be a number in [{low:g}, {high:g}]{' ' + hint if hint else ''}, "
                         f"got {value!r}")
    return float(value)


def greedy_tokens(logits: Tensor) -> Tensor:
    return logits.argmax(dim=-1)


def sample_tokens(logits: Tensor, temperature: Tensor, top_k: Tensor, top_p: Tensor, noise: Tensor) -> Tensor:
    """logits (b, V) fp32; temperature (b, 1) > 0; top_k (b, 1) long, 0 = off; top_p (b, 1), 0 or 1 = off;
    noise (b, V) ~ Exp(1). Returns tokens (b,)."""
    vocab = logits.shape[-1]
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (b, V)
    rank = torch.arange(vocab, device=logits.device)
    keep = (rank[None, :] < top_k) | (top_k <= 0)
    scaled = (sorted_logits / temperature).masked_fill(~keep, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the strictly more likely tokens
    top_p_on = (top_p > 0) & (top_p < 1)
    keep = keep & ((mass_before < top_p) | ~top_p_on)
    probs = torch.softmax(scaled.masked_fill(~keep, float("-inf")), dim=-1)
    choice = (probs / noise).argmax(dim=-1, keepdim=True)  # exponential race = one categorical draw
    return order.gather(-1, choice).squeeze(-1)


def guided_logits(cond: Tensor, uncond: Tensor, scale: Tensor | float) -> Tensor:
    """Classifier-free guidance: uncond + scale * (cond - uncond); scale 1 is the conditional alone."""
    return uncond + scale * (cond - uncond)
