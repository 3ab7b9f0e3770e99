"""Per-request numbers: time to first token, decode speed, total time, VRAM. The same numbers feed the app's
live panel and the benchmark. Clocks are read after a device sync, so they time the GPU work, not its launch;
with batching the clocks are read when the request's tokens reach it (no sync: that would stall the batch)."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch

GIB = 1024**3
# how often a request's VRAM figures are read (and always at its end): torch.cuda.memory_allocated() builds and
# sorts the allocator's whole statistics table in Python each call, and a snapshot is taken per chat token of
# every request, holding the interpreter lock that the batching scheduler needs between steps
VRAM_EVERY_S = 0.25


@dataclass
class RequestMetrics:
    task: str
    device: str  # "NVIDIA H100 80GB HBM3" or "CPU"
    dtype: str
    backend: str  # which kernels ran (see omnimamba.model.kernels.backends)
    tokens: int = 0  # generated tokens, all sequences of the batch together
    steps: int = 0  # decode steps after the first token
    ttft_s: float | None = None  # time to first token: vision + prefill + first sample
    decode_tokens_per_s: float | None = None
    ms_per_step: float | None = None
    total_s: float = 0.0
    peak_vram_gib: float | None = None  # during this request (weights included)
    vram_in_use_gib: float | None = None
    vram_total_gib: float | None = None
    done: bool = False
    stop_reason: str | None = None

    def as_dict(self) -> dict:
        return dict(vars(self))  # the fields, flat (dataclasses.asdict would deep-copy each one)


class RequestMeter:
    """Start it at the request's start; call `first_token`, `tokens` as they come; read `snapshot()` any time."""

    def __init__(self, task: str, device: torch.device, dtype: torch.dtype, backend: str, sync: bool = True):
        self.device = device
        self.cuda = device.type == "cuda"
        self.sync = sync and self.cuda
        name = torch.cuda.get_device_name(device) if self.cuda else "CPU"
        self.m = RequestMetrics(task=task, device=name, dtype=str(dtype).removeprefix("torch."), backend=backend)
        if self.cuda:
            self.m.vram_total_gib = torch.cuda.get_device_properties(device).total_memory / GIB
        self.vram_read_at: float | None = None
        if self.sync:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        self.t0 = time.perf_counter()
        self.t_first: float | None = None
        self.first_count = 0

    def _now(self) -> float:
        if self.sync:
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def first_token(self, count: int = 1) -> None:
        self.t_first = self._now()
        self.m.ttft_s = self.t_first - self.t0
        self.m.tokens = self.first_count = count

    def tokens(self, count: int, steps: int = 1) -> None:
        """`count` more tokens arrived in `steps` decode steps (sync + clock read)."""
        self.m.tokens += count
        self.m.steps += steps
        now = self._now()
        if self.t_first is not None and self.m.steps:
            elapsed = now - self.t_first
            self.m.decode_tokens_per_s = (self.m.tokens - self.first_count) / max(elapsed, 1e-9)
            self.m.ms_per_step = 1000 * elapsed / self.m.steps

    def snapshot(self, done: bool = False, stop_reason: str | None = None) -> RequestMetrics:
        now = self._now()
        self.m.total_s = now - self.t0
        self.m.done, self.m.stop_reason = done, stop_reason or self.m.stop_reason
        if self.cuda and (done or self.vram_read_at is None or now - self.vram_read_at >= VRAM_EVERY_S):
            stats = torch.cuda.memory_stats_as_nested_dict(self.device)  # one read ({} before CUDA starts)
            allocated = stats.get("allocated_bytes", {}).get("all", {})
            self.m.peak_vram_gib = allocated.get("peak", 0) / GIB
            self.m.vram_in_use_gib = allocated.get("current", 0) / GIB
            self.vram_read_at = now
        return copy.copy(self.m)  # shallow (every field is a number or a string): runs per token per request
