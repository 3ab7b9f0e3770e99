"""The one timing kit of the benchmarks: synchronised wall time on any device, peak memory, CUDA-graph
replays, generation timed the same way for every side, the copy bandwidth that bounds a decode step, the
bytes such a step must read, and the machine's description (GPU, versions) that every result carries."""
from __future__ import annotations

import time
from typing import Callable

import torch

from ..generation import StaticGraph
from ..model import OmniMamba


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds of one synchronised call."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def median_time(fn: Callable[[], object], repeat: int = 5, warmup: int = 1,
                device: torch.device = torch.device("cuda")) -> float:
    """Median seconds of fn() over `repeat` synchronised runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    return sorted(timed(fn, device) for _ in range(repeat))[repeat // 2]


def generation_timing(generate: Callable[[int], object], new_tokens: int, repeat: int = 5,
                      device: torch.device = torch.device("cuda")) -> dict:
    """How every side's generation is timed: `generate(n)` produces n new tokens from the same prompt.
    T(1) (prefill + first token) and T(N) each get one untimed call of that exact shape, then the median of
    `repeat` synchronised calls; decode ms/step = (T(N) - T(1)) / (N - 1); peak memory is T(N)'s."""
    first = median_time(lambda: generate(1), repeat, warmup=1, device=device)
    generate(new_tokens)  # warm-up of the long shape, outside the peak-memory window
    reset_peak(device)
    full = median_time(lambda: generate(new_tokens), repeat, warmup=0, device=device)
    return {"first_token_s": first, "s": full, "new_tokens": new_tokens,
            "decode_ms": 1000 * (full - first) / (new_tokens - 1), "peak_gib": peak_gib(device)}


def graph_us(fn: Callable[[], object], calls: int = 100) -> float:
    """Microseconds per call of fn, as `calls` back-to-back calls replayed from one CUDA graph."""
    recorded = StaticGraph(lambda: [fn() for _ in range(calls)], [], torch.cuda.graph_pool_handle())
    return 1e6 * median_time(recorded) / calls


def copy_bandwidth_gbs(gib: float = 2.0) -> float:
    """Device-to-device copy, bytes read + written per second."""
    src = torch.empty(int(gib * 2**30) // 2, dtype=torch.bfloat16, device="cuda").normal_()
    dst = torch.empty_like(src)
    seconds = median_time(lambda: dst.copy_(src), repeat=10, warmup=2)
    return 2 * src.numel() * src.element_size() / seconds / 1e9


def step_bytes(model: OmniMamba, task: str) -> int:
    """Bytes a batch-1 decode step must read: every layer's merged in_proj, conv, norms, out_proj, the head.
    Works on a model on the meta device (sizes only)."""
    total = 0
    for layer in model.backbone.layers:
        m = layer.mixer
        tensors = [m.conv1d.weight, m.conv1d.bias, m.norm.weight, m.dt_bias, m.A_log, m.D, layer.norm.weight]
        total += sum(t.numel() * t.element_size() for t in tensors)
        total += m.decode_in_weight(task).nbytes + m.decode_out_weight().nbytes  # 16-bit, or 8-bit rows + scales
    head = model.mamba.head_weight(task)
    return total + head.numel() * head.element_size()


def versions() -> dict:
    """Versions of everything a figure depends on (None where a package is absent)."""
    import importlib.metadata as md

    out = {"torch": torch.__version__, "cuda": torch.version.cuda}
    for name in ("triton", "transformers", "mamba_ssm", "causal_conv1d", "timm"):
        try:
            out[name] = md.version(name.replace("_", "-"))
        except md.PackageNotFoundError:
            out[name] = None
    return out


def environment(device: torch.device = torch.device("cuda")) -> dict:
    """The GPU, its memory, the versions and the device copy bandwidth, measured now (bytes read + written)."""
    if device.type != "cuda":
        return {"gpu": "CPU", "gpu_memory_gib": None, "multiprocessors": None, "versions": versions(),
                "copy_gbs": None}
    props = torch.cuda.get_device_properties(device)
    return {"gpu": props.name, "gpu_memory_gib": props.total_memory / 2**30,
            "multiprocessors": props.multi_processor_count, "versions": versions(),
            "copy_gbs": copy_bandwidth_gbs()}
