"""Sequence kernels (prefill, teacher forcing): one launch each where PyTorch would need several (launches,
not FLOPs, bound a 760-token prefill). Each falls back to its twin in `ssd.py`.
Training: all are differentiable. mamba_ssm's scan and causal-conv1d have their own backwards; where autograd
records, ours run with their Triton backwards (`sequence_backward.py`, wrapped by `autograd.with_backward`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..ssd import add_rms_norm_ref, causal_conv_ref, gated_rms_norm_ref, ssd_scan_ref
from .autograd import records_grad, with_backward
from .dispatch import causal_conv1d_fn, mamba_scan, on_cuda, tl, triton, use_triton
from .sequence_backward import add_rms_norm_backward, causal_conv_backward, gated_rms_norm_backward


def ssd_scan(x: Tensor, dt_raw: Tensor, dt_bias: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
             chunk_size: int, initial_state: Tensor | None) -> tuple[Tensor, Tensor]:
    """x (b, l, h, p); dt_raw (b, l, h) before bias and softplus; B, C (b, l, n). Returns y, final state (fp32)."""
    scan = mamba_scan() if on_cuda(x) else None
    if scan is not None:  # differentiable: mamba_ssm's chunked scan has its own backward
        y, final = scan(x, dt_raw, A, B[:, :, None], C[:, :, None], chunk_size, D=D, dt_bias=dt_bias,
                        dt_softplus=True, initial_states=initial_state, return_final_states=True)
        return y, final.float()
    dt = F.softplus(dt_raw.float() + dt_bias.float())
    return ssd_scan_ref(x, dt, A, B, C, D, chunk_size, initial_state)


def causal_conv(xBC: Tensor, weight: Tensor, bias: Tensor, context: Tensor) -> Tensor:
    """SiLU(depthwise causal conv) of xBC (b, l, c) continuing `context` (b, c, w - 1)."""
    if on_cuda(xBC) and causal_conv1d_fn is not None:  # causal-conv1d has its own backward
        # channel-last input (stride 1 over channels) is what causal-conv1d needs to accept initial states
        out = causal_conv1d_fn(xBC.transpose(1, 2), weight, bias, initial_states=context.to(xBC.dtype).contiguous(),
                               activation="silu")
        return out.transpose(1, 2)
    if use_triton(xBC) and weight.shape[1] == 4 and not records_grad(context):  # a context never trains
        assert xBC.stride(-1) == 1 and weight.is_contiguous()
        if records_grad(xBC, weight, bias):
            return with_backward(_causal_conv_triton, causal_conv_backward, xBC, weight, bias, context)
        return _causal_conv_triton(xBC, weight, bias, context)
    return causal_conv_ref(xBC, weight, bias, context)


def _causal_conv_triton(xBC: Tensor, weight: Tensor, bias: Tensor, context: Tensor) -> Tensor:
    b, l, c = xBC.shape
    out = torch.empty(b, l, c, device=xBC.device, dtype=xBC.dtype)
    ctx = context.to(xBC.dtype).contiguous()
    grid = (b, triton.cdiv(l, 16), triton.cdiv(c, 256))
    _causal_conv_kernel[grid](xBC, ctx, weight, bias, out, l, c, xBC.stride(0), xBC.stride(1), BLOCK_L=16, BLOCK_C=256)
    return out


def add_rms_norm(hidden: Tensor, residual: Tensor | None, weight: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Sequence rows: r = residual + hidden (fp32; hidden alone for the first block); returns
    (RMSNorm(r) * weight in hidden's dtype, r)."""
    if use_triton(hidden) and hidden.is_contiguous():
        if records_grad(hidden, residual, weight):
            return with_backward(_add_rms_norm_triton, add_rms_norm_backward, hidden, residual, weight, eps=eps)
        return _add_rms_norm_triton(hidden, residual, weight, eps)
    return add_rms_norm_ref(hidden, residual, weight, eps)


def _add_rms_norm_triton(hidden: Tensor, residual: Tensor | None, weight: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    d = hidden.shape[-1]
    r = torch.empty(hidden.shape, device=hidden.device, dtype=torch.float32)
    normed = torch.empty_like(hidden)
    _add_rms_norm_kernel[(hidden.numel() // d,)](hidden, residual if residual is not None else r, r, weight, normed,
                                                 d, d, eps, HAS_RIN=residual is not None, WRITE_ROUT=True,
                                                 BLOCK=triton.next_power_of_2(d))
    return normed, r


def gated_rms_norm(y: Tensor, z: Tensor, weight: Tensor, eps: float, out_dtype: torch.dtype) -> Tensor:
    """RMSNorm(y * SiLU(z)) * weight for every row; y (..., d) contiguous, z (..., d) rows may be strided."""
    if use_triton(y) and y.is_contiguous() and z.stride(-1) == 1:
        if records_grad(y, z, weight):
            return with_backward(_gated_rms_norm_triton, gated_rms_norm_backward, y, z, weight, eps=eps,
                                 out_dtype=out_dtype)
        return _gated_rms_norm_triton(y, z, weight, eps, out_dtype)
    return gated_rms_norm_ref(y, z, weight, eps).to(out_dtype)


def _gated_rms_norm_triton(y: Tensor, z: Tensor, weight: Tensor, eps: float, out_dtype: torch.dtype) -> Tensor:
    d = y.shape[-1]
    out = torch.empty(y.shape, device=y.device, dtype=out_dtype)
    z_rows = z.reshape(-1, z.shape[-1]) if z.dim() == 2 else z.flatten(0, -2)
    _gated_rms_norm_kernel[(y.numel() // d,)](y, z_rows, weight, out, d, z_rows.stride(0), eps,
                                              BLOCK=triton.next_power_of_2(d))
    return out


if triton is not None:

    @triton.jit
    def _causal_conv_kernel(x_ptr, ctx_ptr, w_ptr, bias_ptr, out_ptr, L, C, stride_xb, stride_xl,
                            BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr):
        """out[t] = SiLU(bias + sum_k w[k] * in[t - 3 + k]); in[-3..-1] come from ctx (b, C, 3)."""
        b, lb, cb = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        t = lb * BLOCK_L + tl.arange(0, BLOCK_L)
        c = cb * BLOCK_C + tl.arange(0, BLOCK_C)
        cmask = c < C
        acc = tl.zeros((BLOCK_L, BLOCK_C), dtype=tl.float32) + tl.load(bias_ptr + c, mask=cmask, other=0.0).to(
            tl.float32)[None, :]
        for k in tl.static_range(4):
            src = t - 3 + k  # input position, negative = from the context
            m = (src >= 0)[:, None] & (t < L)[:, None] & cmask[None, :]
            v = tl.load(x_ptr + b * stride_xb + src[:, None] * stride_xl + c[None, :], mask=m, other=0.0)
            mc = (src < 0)[:, None] & (t < L)[:, None] & cmask[None, :]
            v += tl.load(ctx_ptr + b * C * 3 + c[None, :] * 3 + (src + 3)[:, None], mask=mc, other=0.0)
            acc += v.to(tl.float32) * tl.load(w_ptr + c * 4 + k, mask=cmask, other=0.0).to(tl.float32)[None, :]
        out = acc * tl.sigmoid(acc)
        tl.store(out_ptr + b * L * C + t[:, None] * C + c[None, :], out.to(out_ptr.dtype.element_ty),
                 mask=(t < L)[:, None] & cmask[None, :])

    @triton.jit
    def _gated_rms_norm_kernel(y_ptr, z_ptr, w_ptr, out_ptr, N, stride_z, eps, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        mask = offs < N
        z = tl.load(z_ptr + row * stride_z + offs, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(y_ptr + row * N + offs, mask=mask, other=0.0).to(tl.float32) * z * tl.sigmoid(z)
        rstd = 1.0 / tl.sqrt(tl.sum(g * g, axis=0) / N + eps)
        w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(out_ptr + row * N + offs, (g * rstd * w).to(out_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _add_rms_norm_kernel(h_ptr, rin_ptr, rout_ptr, w_ptr, out_ptr, N, stride_h, eps,
                             HAS_RIN: tl.constexpr, WRITE_ROUT: tl.constexpr, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        mask = offs < N
        r = tl.load(h_ptr + row * stride_h + offs, mask=mask, other=0.0).to(tl.float32)
        if HAS_RIN:
            r += tl.load(rin_ptr + row * N + offs, mask=mask, other=0.0)
        if WRITE_ROUT:
            tl.store(rout_ptr + row * N + offs, r, mask=mask)
        rstd = 1.0 / tl.sqrt(tl.sum(r * r, axis=0) / N + eps)
        w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(out_ptr + row * N + offs, (r * rstd * w).to(out_ptr.dtype.element_ty), mask=mask)
