"""How the fast kernels meet autograd: sequence kernels train, decode kernels refuse.

* `with_backward(fast, backward, ...)`: a Triton sequence kernel, which autograd cannot see through, with its
  Triton backward (`sequence_backward.py`), which recomputes from the saved inputs.
* `refuse_grad(kernel, ...)`: decode kernels and CUDA graphs have no backward; run where autograd records,
  they would hand back outputs cut from the parameters and the loss would silently train nothing.
Both cost one `torch.is_grad_enabled()` check when autograd is off (inference).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

Outputs = Tensor | tuple[Tensor, ...]


def records_grad(*tensors: Tensor | None) -> bool:
    """True when autograd would record an op on these tensors (the training path)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def refuse_grad(kernel: str, *tensors: Tensor | None) -> None:
    """Raise if autograd is recording through an inference-only kernel instead of detaching silently."""
    if records_grad(*tensors):
        raise RuntimeError(
            f"{kernel} is an inference-only kernel with no backward, but it was called while autograd records "
            "(an input requires grad), so its output would carry no gradient. Decode under torch.no_grad() or "
            "torch.inference_mode(); train through the teacher-forced forwards (forward_mmu / forward_t2i).")


class _FastKernel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fast: Callable[..., Outputs], backward: Callable[..., tuple], static: dict,
                *tensors: Tensor | None) -> Outputs:
        ctx.backward_fn, ctx.static = backward, static
        ctx.save_for_backward(*tensors)
        return fast(*tensors, **static)

    @staticmethod
    def backward(ctx, *grads: Tensor) -> tuple[Tensor | None, ...]:
        found = ctx.backward_fn(*ctx.saved_tensors, **ctx.static, grads=grads)
        return (None, None, None, *(g if need else None for g, need in zip(found, ctx.needs_input_grad[3:])))


def with_backward(fast: Callable[..., Outputs], backward: Callable[..., tuple], *tensors: Tensor | None,
                  **static: object) -> Outputs:
    """fast(*tensors, **static) made differentiable: backward(*tensors, **static, grads=output grads) returns
    one gradient (or None) per tensor. `static` holds the non-tensor arguments (eps, dtypes). Only the
    inputs are saved: the backward recomputes what it needs, like activation checkpointing of that one op."""
    return _FastKernel.apply(fast, backward, static, *tensors)
