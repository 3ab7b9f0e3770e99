"""Triton backward kernels of our sequence kernels (training through the fast path).

Each takes the forward's arguments and `grads`, the output gradients, and returns the input gradients of its PyTorch twin
in `ssd.py`: the forward is recomputed per row (cheap, memory-bound) rather than saved. Per-channel weight
gradients are summed per program into fp32 partials, then over programs with one `sum`.
  * `add_rms_norm_backward`    r = residual + hidden; normed = RMSNorm(r) * weight   (grads of normed and r)
  * `gated_rms_norm_backward`  out = RMSNorm(y * SiLU(z)) * weight
  * `causal_conv_backward`     out = SiLU(bias + depthwise causal conv, width 4), context without gradient
Tests: tests/model/test_gradients.py runs them in Triton's interpreter against the twins' autograd.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .dispatch import tl, triton  # None without Triton: the dispatchers then never come here

_MAX_PROGRAMS = 1024  # row programs of the norm backwards (each loops over its rows, keeping one dw partial)


def _row_programs(rows: int) -> tuple[int, int]:
    per = triton.cdiv(rows, min(rows, _MAX_PROGRAMS))
    return triton.cdiv(rows, per), per


def _warps(d: int) -> int:
    """A row's ~10 live fp32 vectors fit in registers: more threads per row for d_model and d_inner rows."""
    return 8 if d >= 2048 else 4


def add_rms_norm_backward(hidden: Tensor, residual: Tensor | None, weight: Tensor, eps: float,
                          grads: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor | None, Tensor]:
    """Gradients of (hidden, residual, weight) given those of (normed, r)."""
    d_normed, d_r = grads
    d = hidden.shape[-1]
    programs, per = _row_programs(hidden.numel() // d)
    d_hidden = torch.empty_like(hidden)
    d_residual = torch.empty_like(residual) if residual is not None else None
    partial = torch.empty(programs, d, device=hidden.device, dtype=torch.float32)
    _add_rms_norm_bwd_kernel[(programs,)](
        hidden, residual if residual is not None else hidden, weight, d_normed.contiguous(), d_r.contiguous(),
        d_hidden, d_residual if residual is not None else d_hidden, partial, hidden.numel() // d, d, eps, per,
        HAS_RIN=residual is not None, BLOCK=triton.next_power_of_2(d), num_warps=_warps(d))
    return d_hidden, d_residual, partial.sum(0).to(weight.dtype)


def gated_rms_norm_backward(y: Tensor, z: Tensor, weight: Tensor, eps: float, out_dtype: torch.dtype,
                            grads: tuple[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of (y, z, weight) given that of the output; z's rows may be strided (stride 1 within a row)."""
    (d_out,) = grads
    d = y.shape[-1]
    rows = y.numel() // d
    programs, per = _row_programs(rows)
    z_rows = z.reshape(-1, d) if z.dim() == 2 else z.flatten(0, -2)
    d_y, d_z = torch.empty_like(y), torch.empty(z.shape, device=z.device, dtype=z.dtype)
    partial = torch.empty(programs, d, device=y.device, dtype=torch.float32)
    _gated_rms_norm_bwd_kernel[(programs,)](y, z_rows, weight, d_out.contiguous(), d_y, d_z, partial, rows, d,
                                            z_rows.stride(0), eps, per, BLOCK=triton.next_power_of_2(d),
                                            num_warps=_warps(d))
    return d_y, d_z, partial.sum(0).to(weight.dtype)


def causal_conv_backward(xBC: Tensor, weight: Tensor, bias: Tensor, context: Tensor,
                         grads: tuple[Tensor]) -> tuple[Tensor, Tensor, Tensor, None]:
    """Gradients of (xBC, weight, bias, context) given that of the output (width 4; the context gets none)."""
    (d_out,) = grads
    b, l, c = xBC.shape
    ctx = context.to(xBC.dtype).contiguous()
    d_act = torch.empty(b, l, c, device=xBC.device, dtype=torch.float32)  # gradient before the SiLU
    grid = (b, triton.cdiv(l, 32), triton.cdiv(c, 128))
    partial_w = torch.empty(b * grid[1], c, 4, device=xBC.device, dtype=torch.float32)
    partial_b = torch.empty(b * grid[1], c, device=xBC.device, dtype=torch.float32)
    _causal_conv_bwd_act_kernel[grid](xBC, ctx, weight, bias, d_out.contiguous(), d_act, partial_w, partial_b, l, c,
                                      xBC.stride(0), xBC.stride(1), BLOCK_L=32, BLOCK_C=128)
    d_x = torch.empty(b, l, c, device=xBC.device, dtype=xBC.dtype)
    _causal_conv_bwd_x_kernel[grid](d_act, weight, d_x, l, c, BLOCK_L=32, BLOCK_C=128)
    return d_x, partial_w.sum(0).to(weight.dtype), partial_b.sum(0).to(bias.dtype), None


if triton is not None:

    @triton.jit
    def _rms_norm_bwd_row(v, dn, w, N, eps):
        """One row of n = RMSNorm(v) * w backwards (fp32 vectors, masked lanes 0): (dv, the row's share of dw)."""
        rstd = 1.0 / tl.sqrt(tl.sum(v * v, axis=0) / N + eps)
        vhat = v * rstd
        dvhat = dn * w
        return rstd * (dvhat - vhat * (tl.sum(dvhat * vhat, axis=0) / N)), dn * vhat

    @triton.jit
    def _add_rms_norm_bwd_kernel(h_ptr, rin_ptr, w_ptr, dn_ptr, dr_ptr, dh_ptr, drin_ptr, dw_ptr, M, N, eps,
                                 rows_per_program, HAS_RIN: tl.constexpr, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        w = tl.load(w_ptr + offs, mask=offs < N, other=0.0).to(tl.float32)
        dw = tl.zeros((BLOCK,), dtype=tl.float32)
        for i in range(0, rows_per_program):
            row = pid * rows_per_program + i
            mask = (offs < N) & (row < M)
            r = tl.load(h_ptr + row * N + offs, mask=mask, other=0.0).to(tl.float32)
            if HAS_RIN:
                r += tl.load(rin_ptr + row * N + offs, mask=mask, other=0.0)
            dn = tl.load(dn_ptr + row * N + offs, mask=mask, other=0.0).to(tl.float32)
            dr, dw_row = _rms_norm_bwd_row(r, dn, w, N, eps)
            dw += dw_row
            dr += tl.load(dr_ptr + row * N + offs, mask=mask, other=0.0)
            tl.store(dh_ptr + row * N + offs, dr.to(dh_ptr.dtype.element_ty), mask=mask)
            if HAS_RIN:
                tl.store(drin_ptr + row * N + offs, dr, mask=mask)
        tl.store(dw_ptr + pid * N + offs, dw, mask=offs < N)

    @triton.jit
    def _gated_rms_norm_bwd_kernel(y_ptr, z_ptr, w_ptr, do_ptr, dy_ptr, dz_ptr, dw_ptr, M, N, stride_z, eps,
                                   rows_per_program, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        w = tl.load(w_ptr + offs, mask=offs < N, other=0.0).to(tl.float32)
        dw = tl.zeros((BLOCK,), dtype=tl.float32)
        for i in range(0, rows_per_program):
            row = pid * rows_per_program + i
            mask = (offs < N) & (row < M)
            z = tl.load(z_ptr + row * stride_z + offs, mask=mask, other=0.0).to(tl.float32)
            y = tl.load(y_ptr + row * N + offs, mask=mask, other=0.0).to(tl.float32)
            sz = tl.sigmoid(z)
            g = y * z * sz
            do = tl.load(do_ptr + row * N + offs, mask=mask, other=0.0).to(tl.float32)
            dg, dw_row = _rms_norm_bwd_row(g, do, w, N, eps)
            dw += dw_row
            tl.store(dy_ptr + row * N + offs, (dg * z * sz).to(dy_ptr.dtype.element_ty), mask=mask)
            dz = dg * y * sz * (1.0 + z * (1.0 - sz))  # d SiLU(z) / dz = s (1 + z (1 - s))
            tl.store(dz_ptr + row * N + offs, dz.to(dz_ptr.dtype.element_ty), mask=mask)
        tl.store(dw_ptr + pid * N + offs, dw, mask=offs < N)

    @triton.jit
    def _conv_input(x_ptr, ctx_ptr, b, t, c, k: tl.constexpr, L, C, stride_xb, stride_xl):
        """Tap k's input for output positions t: x[t - 3 + k], from the context (b, C, 3) before the start."""
        src = t - 3 + k
        m = (src >= 0)[:, None] & (t < L)[:, None] & (c < C)[None, :]
        v = tl.load(x_ptr + b * stride_xb + src[:, None] * stride_xl + c[None, :], mask=m, other=0.0)
        mc = (src < 0)[:, None] & (t < L)[:, None] & (c < C)[None, :]
        v += tl.load(ctx_ptr + b * C * 3 + c[None, :] * 3 + (src + 3)[:, None], mask=mc, other=0.0)
        return v.to(tl.float32)

    @triton.jit
    def _causal_conv_bwd_act_kernel(x_ptr, ctx_ptr, w_ptr, bias_ptr, do_ptr, da_ptr, dw_ptr, db_ptr, L, C,
                                    stride_xb, stride_xl, BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr):
        """d_act = d_out * SiLU'(pre-activation), and this tile's sums for the weight and bias gradients."""
        b, lb, cb = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        t = lb * BLOCK_L + tl.arange(0, BLOCK_L)
        c = cb * BLOCK_C + tl.arange(0, BLOCK_C)
        cmask = c < C
        tile = (t < L)[:, None] & cmask[None, :]
        acc = tl.zeros((BLOCK_L, BLOCK_C), dtype=tl.float32) + tl.load(bias_ptr + c, mask=cmask, other=0.0).to(
            tl.float32)[None, :]
        for k in tl.static_range(4):
            w_k = tl.load(w_ptr + c * 4 + k, mask=cmask, other=0.0).to(tl.float32)
            acc += _conv_input(x_ptr, ctx_ptr, b, t, c, k, L, C, stride_xb, stride_xl) * w_k[None, :]
        s = tl.sigmoid(acc)
        do = tl.load(do_ptr + b * L * C + t[:, None] * C + c[None, :], mask=tile, other=0.0).to(tl.float32)
        da = tl.where(tile, do * s * (1.0 + acc * (1.0 - s)), 0.0)
        tl.store(da_ptr + b * L * C + t[:, None] * C + c[None, :], da, mask=tile)
        part = b * tl.num_programs(1) + lb
        for k in tl.static_range(4):
            dw_k = tl.sum(da * _conv_input(x_ptr, ctx_ptr, b, t, c, k, L, C, stride_xb, stride_xl), axis=0)
            tl.store(dw_ptr + part * C * 4 + c * 4 + k, dw_k, mask=cmask)
        tl.store(db_ptr + part * C + c, tl.sum(da, axis=0), mask=cmask)

    @triton.jit
    def _causal_conv_bwd_x_kernel(da_ptr, w_ptr, dx_ptr, L, C, BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr):
        """dx[s] = sum_k w[k] * d_act[s + 3 - k]: input s feeds outputs s .. s + 3."""
        b, lb, cb = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        s = lb * BLOCK_L + tl.arange(0, BLOCK_L)
        c = cb * BLOCK_C + tl.arange(0, BLOCK_C)
        cmask = c < C
        acc = tl.zeros((BLOCK_L, BLOCK_C), dtype=tl.float32)
        for k in tl.static_range(4):
            t = s + 3 - k
            m = (t < L)[:, None] & cmask[None, :]
            da = tl.load(da_ptr + b * L * C + t[:, None] * C + c[None, :], mask=m, other=0.0)
            acc += da * tl.load(w_ptr + c * 4 + k, mask=cmask, other=0.0).to(tl.float32)[None, :]
        tl.store(dx_ptr + b * L * C + s[:, None] * C + c[None, :], acc.to(dx_ptr.dtype.element_ty),
                 mask=(s < L)[:, None] & cmask[None, :])
