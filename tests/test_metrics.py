"""Request metrics: the VRAM figures are read from the allocator at most every VRAM_EVERY_S and at the end, since
each read costs Python time per token of every request (the batching scheduler waits for the interpreter)."""
from __future__ import annotations

import torch

from omnimamba import metrics


def test_vram_is_read_once_per_interval_and_at_the_end(monkeypatch):
    reads = []

    def stats(device):
        reads.append(device)
        return {"allocated_bytes": {"all": {"current": 3 * metrics.GIB, "peak": 5 * metrics.GIB}}}

    class Props:
        total_memory = 80 * metrics.GIB

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "a GPU")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Props)
    monkeypatch.setattr(torch.cuda, "memory_stats_as_nested_dict", stats)
    meter = metrics.RequestMeter("mmu", torch.device("cuda"), torch.bfloat16, "test", sync=False)
    meter.first_token()
    first = meter.snapshot()
    assert (first.peak_vram_gib, first.vram_in_use_gib, first.vram_total_gib) == (5, 3, 80) and len(reads) == 1
    for _ in range(200):  # a fast stream of tokens within one interval: no further reads
        meter.tokens(1)
        assert meter.snapshot().peak_vram_gib == 5
    assert len(reads) == 1
    meter.vram_read_at -= metrics.VRAM_EVERY_S  # the interval has passed
    meter.snapshot()
    assert len(reads) == 2
    assert meter.snapshot(done=True).done and len(reads) == 3  # the last snapshot always reads


def test_no_vram_figures_on_the_cpu():
    meter = metrics.RequestMeter("t2i", torch.device("cpu"), torch.float32, "test")
    meter.first_token()
    snap = meter.snapshot(done=True)
    assert snap.device == "CPU" and snap.peak_vram_gib is None and snap.vram_total_gib is None and snap.total_s >= 0
