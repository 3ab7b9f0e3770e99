"""Which implementation runs: the optional packages, the reference switch and `backends()`.

Each kernel asks `on_cuda(t)` (the CUDA-only packages may run) or `use_triton(t)` (our Triton kernels may run:
on a GPU, or on CPU tensors under Triton's interpreter, TRITON_INTERPRET=1, which is how the CPU tests check
them). Nothing here is read from the environment at import: the interpreter flag is read when a CPU tensor
asks, and the only state is the `reference_only()` switch.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
from typing import Callable, Iterator

import torch
from torch import Tensor

log = logging.getLogger(__name__)

try:
    from causal_conv1d import causal_conv1d_fn
except Exception as exc:  # any import failure (missing package, missing compiled module) means: use ours
    causal_conv1d_fn = None
    log.debug("causal-conv1d unavailable: %s", exc)

try:
    import triton
    import triton.language as tl
except Exception as exc:
    triton = tl = None
    log.debug("triton unavailable: %s", exc)

_force_reference = False


@functools.cache
def mamba_scan() -> Callable | None:
    """mamba_ssm's chunked scan, imported on first use: importing mamba_ssm pulls in transformers (seconds of
    start-up) and only the GPU sequence path needs it. None when it is not installed or does not import."""
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except Exception as exc:  # any import failure (missing package, missing compiled module) means: use the twin
        log.info("mamba_ssm scan unavailable (%s); using the PyTorch reference scan", exc)
        return None
    if "state_dtype" in inspect.signature(mamba_chunk_scan_combined).parameters:
        return functools.partial(mamba_chunk_scan_combined, state_dtype=torch.float32)
    return mamba_chunk_scan_combined


@contextlib.contextmanager
def reference_only() -> Iterator[None]:
    """Run every kernel's PyTorch twin inside this block (for fast-vs-reference comparisons)."""
    global _force_reference
    saved, _force_reference = _force_reference, True
    try:
        yield
    finally:
        _force_reference = saved


def interpreting() -> bool:
    """Triton's CPU interpreter is on (TRITON_INTERPRET=1 must be set before triton is imported)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def on_cuda(t: Tensor) -> bool:
    """The fast paths may run for `t`: it lives on a GPU and no `reference_only()` block is open."""
    if t.is_cuda and not _force_reference:
        _announce(t.device)
        return True
    return False


def use_triton(t: Tensor) -> bool:
    return triton is not None and not _force_reference and (on_cuda(t) or interpreting())


@functools.cache
def _announce(device: torch.device) -> None:
    """One log line, the first time a kernel runs on a GPU, saying which implementation each piece uses."""
    log.info("kernels on %s: %s", device, describe_backends(device))


def backends(device: torch.device | str = "cuda") -> dict[str, str]:
    """Which implementation each kernel uses on `device`."""
    cuda = torch.device(device).type == "cuda" and not _force_reference
    return {
        "scan": "mamba_ssm triton" if cuda and mamba_scan() else "pytorch reference",
        "conv": "causal-conv1d" if cuda and causal_conv1d_fn else "pytorch conv1d",
        "decode": "omnimamba triton (fused)" if cuda and triton else "pytorch reference",
    }


def describe_backends(device: torch.device | str = "cuda") -> str:
    return ", ".join(f"{k}: {v}" for k, v in backends(device).items())
