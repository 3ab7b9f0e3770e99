"""Decode kernels (one token per row, the latency-critical path; ours, Triton, fused so a layer costs three):

  * `norm_linear`        residual add + RMSNorm + matrix-vector product (in_proj, and norm_f + head).
  * `ssm_step`           conv update + SiLU + dt softplus + state update + D skip + SiLU(z) gate.
  * `gated_norm_linear`  RMSNorm of the gated output + out_proj, and the shift of the B/C conv lanes.

How the step multiplies by its weights (16-bit weights on CUDA) is the caller's `gemv` argument:
  "fused":  our Triton matrix-vector kernels with the norm folded in: 3 kernels per layer; on Hopper and
            later each starts before the previous one ends (programmatic dependent launch, below)
  "fused-serial": the same kernels, each starting after the previous one ends (the comparison point)
  "cublas": norm kernels + cuBLAS GEMV: 5 kernels per layer
  "auto":   fused for one row (1.11 vs 1.57 ms/token on H200), and for two where the kernels overlap (1.56
            vs 1.64 ms); cuBLAS from there on (the fused kernel re-reads its weight tile per row: 4.4 vs 2.1 ms
            at 8 rows on H200; without overlap 2.11 vs 1.94 ms at 2 rows on H100). Tried and dropped: a rows
            kernel streaming each weight tile once for all rows on tensor cores (norm kernel first): 1.74 /
            1.96 / 2.26 / 2.91 ms a step at 2 / 4 / 8 / 16 rows against cuBLAS's 1.63 / 1.78 / 2.05 / 2.59
            (H200, one run; `bench.tasks --decode-only`, "batched image steps")
fp32 weights (the official numerics) always use cuBLAS; 8-bit weights (`quant.Int8Weight`) always use the fused
kernels, at any row count. Each falls back to its twin in `ssd.py`.

Programmatic dependent launch (PDL): a batch-1 step is ~150 short kernels, and between two of them the GPU
drains one and ramps the next up with its memory pipes idle. With PDL a kernel is launched while its
predecessor still runs; it loads what no earlier kernel of the step writes (its weights; the layer's own
states, last written by the previous step) and then waits (`gdc_wait`) for the predecessor to finish before it
reads its input or writes anything. Every write happens after that wait, so the order of effects is the
serial one; only the weight reads move earlier.

None has a backward: each refuses to run where autograd records (`autograd.refuse_grad`).
"""
from __future__ import annotations

import functools
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..quant import Bf16Weight, DecodeWeight, Int8Weight
from ..ssd import gated_norm_linear_ref, norm_linear_ref, ssm_step_ref
from .autograd import refuse_grad
from .dispatch import interpreting, tl, triton, use_triton
from .sequence import _add_rms_norm_kernel

try:  # grid dependency control, for programmatic dependent launch (Triton >= 3.3)
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait
except Exception:  # no Triton, or an older one: every kernel waits for the previous one to end
    gdc_launch_dependents = gdc_wait = None

Gemv = Literal["auto", "fused", "fused-serial", "cublas"]
GEMV_MODES: tuple[str, ...] = ("auto", "fused", "fused-serial", "cublas")


def _fused_gemv(x: Tensor, weight: DecodeWeight, gemv: Gemv) -> bool:
    if gemv not in GEMV_MODES:
        raise ValueError(f"gemv mode {gemv!r} is not one of {GEMV_MODES}")
    # the fused kernels hold a whole input row in registers (tl.arange needs a power of two): the 1.3B's 2048
    # and 4096 qualify; another width (the shapes model's 384 and 768) takes the norm kernel and cuBLAS
    whole_row = x.shape[-1] == _next_power_of_2(x.shape[-1])
    if isinstance(weight, Int8Weight):
        if use_triton(x) and not whole_row:
            raise ValueError(f"8-bit decode weights need power-of-two layer widths; this model has "
                             f"{x.shape[-1]}: run it without int8 decoding")
        return use_triton(x)
    if not whole_row:
        return False
    # "auto": one row, or two where the kernels overlap (H200: 1.56 vs 1.64 ms a step with cuBLAS at two rows)
    rows = x.shape[0]
    auto_fused = rows == 1 or (rows == 2 and overlaps(x, gemv))
    wanted = gemv in ("fused", "fused-serial") or (gemv == "auto" and auto_fused)
    return wanted and use_triton(x) and weight.dtype in (torch.bfloat16, torch.float16)


def _next_power_of_2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def overlaps(x: Tensor, gemv: Gemv) -> bool:
    """Our decode kernels for `x` start before their predecessor ends (PDL, above): on Hopper or later, except
    in the two modes kept as they were ("fused-serial", "cublas")."""
    return (gemv in ("auto", "fused") and gdc_wait is not None and x.is_cuda and not interpreting()
            and _has_pdl(x.device))


def _launch(pdl: bool) -> dict:
    return {"launch_pdl": True} if pdl else {}


@functools.cache
def _has_pdl(device: torch.device) -> bool:
    return torch.cuda.get_device_capability(device)[0] >= 9  # Hopper (sm_90) and later


def _gemv_rows(k: int, weight: DecodeWeight) -> int:
    """Weight rows per program: a (rows x k) tile of 32 KB, loaded at once (16 K elements in bf16)."""
    return max(1, 32768 // (k * _matrix(weight).element_size()))


def _matrix(weight: DecodeWeight) -> Tensor:
    if isinstance(weight, Bf16Weight):
        return weight.w
    return weight.q if isinstance(weight, Int8Weight) else weight


def _scales(weight: DecodeWeight) -> Tensor:
    """The per-row scales of an 8-bit weight; for a 16-bit one any pointer (the kernel does not read it)."""
    return weight.scale if isinstance(weight, Int8Weight) else weight


def norm_linear(hidden: Tensor, residual_in: Tensor | None, residual_out: Tensor | None, norm_weight: Tensor,
                weight: DecodeWeight, eps: float, out_dtype: torch.dtype | None = None,
                gemv: Gemv = "auto") -> Tensor:
    """out = RMSNorm(residual_in + hidden) @ weight.T for one token per row.

    hidden (b, k) model dtype; residual_in (b, k) fp32 or None (first layer); residual_out (b, k) fp32 receives
    residual_in + hidden (a separate buffer: every program of the fused kernel reads the old residual);
    weight (n, k). The normed input is rounded to hidden's dtype before the product, as in the sequence path.
    """
    refuse_grad("norm_linear (decode)", hidden, residual_in, norm_weight, _matrix(weight))
    out_dtype = out_dtype or hidden.dtype
    b, k = hidden.shape
    if _fused_gemv(hidden, weight, gemv):
        matrix = _matrix(weight)
        assert hidden.stride(-1) == 1 and matrix.is_contiguous()
        n = matrix.shape[0]
        out = torch.empty(b, n, device=hidden.device, dtype=out_dtype)
        rows, pdl = _gemv_rows(k, weight), overlaps(hidden, gemv)
        _norm_gemv_kernel[(triton.cdiv(n, rows),)](
            hidden, residual_in if residual_in is not None else hidden,
            residual_out if residual_out is not None else hidden, norm_weight, matrix, _scales(weight), out, b, n,
            hidden.stride(0), eps, K=k, HAS_RIN=residual_in is not None, WRITE_ROUT=residual_out is not None,
            SCALED=isinstance(weight, Int8Weight), BLOCK_N=rows, PDL=pdl, num_warps=8, **_launch(pdl))
        return out
    if use_triton(hidden):
        normed = torch.empty_like(hidden)
        _add_rms_norm_kernel[(b,)](hidden, residual_in if residual_in is not None else hidden,
                                   residual_out if residual_out is not None else hidden, norm_weight, normed, k,
                                   hidden.stride(0), eps, HAS_RIN=residual_in is not None,
                                   WRITE_ROUT=residual_out is not None, BLOCK=triton.next_power_of_2(k))
        return F.linear(normed, weight).to(out_dtype)
    return norm_linear_ref(hidden, residual_in, residual_out, norm_weight, weight, eps, out_dtype)


def ssm_step(zxbcdt: Tensor, conv_state: Tensor, conv_weight: Tensor, conv_bias: Tensor, ssm_state: Tensor,
             dt_bias: Tensor, A_log: Tensor, D: Tensor, d_inner: int, d_state: int, headdim: int,
             gemv: Gemv = "auto") -> Tensor:
    """One decode step of the mixer core for zxbcdt (b, d_in_proj) = [z | x | B | C | dt].

    Updates ssm_state (b, h, p, n) fp32 and the x lanes of conv_state (b, c, w) in place. The B and C lanes
    are read by every head, so their shift is left to `gated_norm_linear`, which runs after all heads are done.
    Returns g = (S @ C + D x) * SiLU(z), (b, d_inner) fp32, before the output norm. `gemv` is the layer's
    mode: with the fused kernels this one overlaps its predecessor too.
    """
    refuse_grad("ssm_step (decode)", zxbcdt, conv_state, conv_weight, conv_bias, ssm_state, dt_bias, A_log, D)
    if use_triton(zxbcdt):
        assert zxbcdt.stride(-1) == 1 and conv_state.stride(-1) == 1 and conv_state.stride(-2) == conv_state.shape[-1]
        assert ssm_state[0].is_contiguous() and conv_weight.is_contiguous() and conv_state.shape[-1] == 4
        b, nheads = zxbcdt.shape[0], d_inner // headdim
        g = torch.empty(b, d_inner, device=zxbcdt.device, dtype=torch.float32)
        block_p = min(headdim, 16)
        grid = (b, nheads, headdim // block_p)
        pdl = overlaps(zxbcdt, gemv)
        _ssm_step_kernel[grid](zxbcdt, conv_state, conv_weight, conv_bias, ssm_state, dt_bias, A_log, D, g,
                               zxbcdt.stride(0), conv_state.stride(0), ssm_state.stride(0),
                               D_INNER=d_inner, NSTATE=d_state, HEADDIM=headdim, WIDTH=conv_state.shape[-1],
                               BLOCK_P=block_p, PDL=pdl, **_launch(pdl))
        return g
    return ssm_step_ref(zxbcdt, conv_state, conv_weight, conv_bias, ssm_state, dt_bias, A_log, D,
                        d_inner, d_state, headdim)


def gated_norm_linear(g: Tensor, norm_weight: Tensor, weight: DecodeWeight, eps: float, zxbcdt: Tensor,
                      conv_state: Tensor, d_inner: int, d_state: int, gemv: Gemv = "auto") -> Tensor:
    """out_proj(RMSNorm(g) * norm_weight) in weight's (the model's) dtype; also shifts the B/C lanes of
    conv_state, which every head of `ssm_step` has read by now."""
    refuse_grad("gated_norm_linear (decode)", g, norm_weight, _matrix(weight), zxbcdt, conv_state)
    b = g.shape[0]
    common = dict(D_INNER=d_inner, NSTATE=d_state, WIDTH=conv_state.shape[-1])
    if _fused_gemv(g, weight, gemv):
        matrix = _matrix(weight)
        n = matrix.shape[0]
        out = torch.empty(b, n, device=g.device, dtype=weight.dtype)
        rows, pdl = _gemv_rows(d_inner, weight), overlaps(g, gemv)
        _gated_gemv_kernel[(triton.cdiv(n, rows),)](g, norm_weight, matrix, _scales(weight), out, zxbcdt, conv_state,
                                                     b, n, eps, zxbcdt.stride(0), conv_state.stride(0),
                                                     SCALED=isinstance(weight, Int8Weight), BLOCK_N=rows,
                                                     PDL=pdl, num_warps=8, **common, **_launch(pdl))
        return out
    if use_triton(g):
        normed = torch.empty(g.shape, device=g.device, dtype=weight.dtype)
        _gated_norm_kernel[(b,)](g, norm_weight, normed, zxbcdt, conv_state, eps, zxbcdt.stride(0),
                                 conv_state.stride(0), BLOCK=triton.next_power_of_2(d_inner), **common)
        return F.linear(normed, weight)
    return gated_norm_linear_ref(g, norm_weight, weight, eps, zxbcdt, conv_state, d_inner, d_state)


if triton is not None:

    @triton.jit
    def _shift_lanes(cs, ch, new, WIDTH: tl.constexpr):
        """conv-state lanes `ch` (oldest first, width 4): drop the oldest input, append `new`. All reads happen
        before a barrier and all writes after it: lanes shorter than the block are held by several threads."""
        s1 = tl.load(cs + ch * WIDTH + 1)
        s2 = tl.load(cs + ch * WIDTH + 2)
        s3 = tl.load(cs + ch * WIDTH + 3)
        tl.debug_barrier()
        tl.store(cs + ch * WIDTH + 0, s1)
        tl.store(cs + ch * WIDTH + 1, s2)
        tl.store(cs + ch * WIDTH + 2, s3)
        tl.store(cs + ch * WIDTH + 3, new.to(cs.dtype.element_ty))

    @triton.jit
    def _conv4(cs_ptr, w_ptr, bias_ptr, ch, new):
        """Causal conv (width 4) of lanes `ch` for the new input `new` (fp32), from the old state."""
        acc = tl.load(bias_ptr + ch).to(tl.float32) + tl.load(w_ptr + ch * 4 + 3).to(tl.float32) * new
        for k in tl.static_range(3):  # old inputs 1..3 line up with taps 0..2
            acc += tl.load(w_ptr + ch * 4 + k).to(tl.float32) * tl.load(cs_ptr + ch * 4 + k + 1).to(tl.float32)
        return acc

    @triton.jit
    def _ssm_step_kernel(zx_ptr, cs_ptr, cw_ptr, cb_ptr, ss_ptr, dt_bias_ptr, A_log_ptr, D_ptr, g_ptr,
                         stride_zx, stride_cs, stride_ss,
                         D_INNER: tl.constexpr, NSTATE: tl.constexpr, HEADDIM: tl.constexpr,
                         WIDTH: tl.constexpr, BLOCK_P: tl.constexpr, PDL: tl.constexpr):
        b, h, pb = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        zx = zx_ptr + b * stride_zx  # row: z [0, D) | x [D, 2D) | B | C | dt
        cs = cs_ptr + b * stride_cs  # (conv_dim, WIDTH), conv lane c <-> zx lane D + c
        dtype = zx_ptr.dtype.element_ty
        p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
        ch_x = h * HEADDIM + p
        n = tl.arange(0, NSTATE)
        # the layer's SSM state: only this kernel writes it, in the previous step, so it is read before the wait
        s_ptrs = ss_ptr + b * stride_ss + h * HEADDIM * NSTATE + p[:, None] * NSTATE + n[None, :]
        S = tl.load(s_ptrs)
        if PDL:
            gdc_launch_dependents()
            gdc_wait()  # zx comes from the kernel before
        # conv: B and C lanes are shared by all heads (read-only here); this program owns lanes ch_x
        x_new = tl.load(zx + D_INNER + ch_x)
        xc = _conv4(cs, cw_ptr, cb_ptr, ch_x, x_new.to(tl.float32))
        Bc = _conv4(cs, cw_ptr, cb_ptr, D_INNER + n, tl.load(zx + 2 * D_INNER + n).to(tl.float32))
        Cc = _conv4(cs, cw_ptr, cb_ptr, D_INNER + NSTATE + n, tl.load(zx + 2 * D_INNER + NSTATE + n).to(tl.float32))
        _shift_lanes(cs, ch_x, x_new, WIDTH)
        x = (xc * tl.sigmoid(xc)).to(dtype).to(tl.float32)
        Bv = (Bc * tl.sigmoid(Bc)).to(dtype).to(tl.float32)
        Cv = (Cc * tl.sigmoid(Cc)).to(dtype).to(tl.float32)
        # dt = softplus(dt + bias), identity above 20 like torch's softplus
        dt = tl.load(zx + 2 * D_INNER + 2 * NSTATE + h).to(tl.float32) + tl.load(dt_bias_ptr + h).to(tl.float32)
        dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(dt)), dt)
        decay = tl.exp(-dt * tl.exp(tl.load(A_log_ptr + h).to(tl.float32)))
        S = S * decay + (dt * x)[:, None] * Bv[None, :]  # (BLOCK_P, NSTATE)
        tl.store(s_ptrs, S)
        y = tl.sum(S * Cv[None, :], axis=1) + tl.load(D_ptr + h).to(tl.float32) * x
        z = tl.load(zx + ch_x).to(tl.float32)
        tl.store(g_ptr + b * D_INNER + ch_x, y * z * tl.sigmoid(z))

    @triton.jit
    def _shift_bc_lanes(zx_ptr, cs_ptr, b, stride_zx, stride_cs, D_INNER: tl.constexpr, NSTATE: tl.constexpr,
                        WIDTH: tl.constexpr):
        ch = D_INNER + tl.arange(0, 2 * NSTATE)
        _shift_lanes(cs_ptr + b * stride_cs, ch, tl.load(zx_ptr + b * stride_zx + D_INNER + ch), WIDTH)

    @triton.jit
    def _gated_norm_kernel(g_ptr, w_ptr, out_ptr, zx_ptr, cs_ptr, eps, stride_zx, stride_cs,
                           D_INNER: tl.constexpr, NSTATE: tl.constexpr, WIDTH: tl.constexpr, BLOCK: tl.constexpr):
        b = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        mask = offs < D_INNER
        g = tl.load(g_ptr + b * D_INNER + offs, mask=mask, other=0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(g * g, axis=0) / D_INNER + eps)
        w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(out_ptr + b * D_INNER + offs, (g * rstd * w).to(out_ptr.dtype.element_ty), mask=mask)
        _shift_bc_lanes(zx_ptr, cs_ptr, b, stride_zx, stride_cs, D_INNER, NSTATE, WIDTH)

    @triton.jit
    def _norm_gemv_kernel(h_ptr, rin_ptr, rout_ptr, nw_ptr, w_ptr, scale_ptr, out_ptr, B, N, stride_h, eps,
                          K: tl.constexpr, HAS_RIN: tl.constexpr, WRITE_ROUT: tl.constexpr, SCALED: tl.constexpr,
                          BLOCK_N: tl.constexpr, PDL: tl.constexpr):
        """Each program: BLOCK_N full rows of the weight, loaded once, times every batch row's normed input.
        SCALED: int8 rows, each product times its row's scale."""
        pid = tl.program_id(0)
        rk = tl.arange(0, K)
        rn = pid * BLOCK_N + tl.arange(0, BLOCK_N)
        nmask = rn < N
        w = tl.load(w_ptr + rn[:, None] * K + rk[None, :], mask=nmask[:, None], other=0)  # (BLOCK_N, K)
        nw = tl.load(nw_ptr + rk).to(tl.float32)
        scale = tl.load(scale_ptr + rn, mask=nmask, other=0.0).to(tl.float32) if SCALED else 1.0
        if PDL:  # the weights are in flight; the input comes from the kernel before
            gdc_launch_dependents()
            gdc_wait()
        for b in range(0, B):
            r = tl.load(h_ptr + b * stride_h + rk).to(tl.float32)
            if HAS_RIN:
                r += tl.load(rin_ptr + b * K + rk)
            if WRITE_ROUT:
                if pid == 0:
                    tl.store(rout_ptr + b * K + rk, r)
            rstd = 1.0 / tl.sqrt(tl.sum(r * r, axis=0) / K + eps)
            x = (r * rstd * nw).to(h_ptr.dtype.element_ty).to(tl.float32)
            y = tl.sum(w.to(tl.float32) * x[None, :], axis=1)
            if SCALED:
                y *= scale
            tl.store(out_ptr + b * N + rn, y.to(out_ptr.dtype.element_ty), mask=nmask)

    @triton.jit
    def _gated_gemv_kernel(g_ptr, nw_ptr, w_ptr, scale_ptr, out_ptr, zx_ptr, cs_ptr, B, N, eps, stride_zx,
                           stride_cs, D_INNER: tl.constexpr, NSTATE: tl.constexpr, WIDTH: tl.constexpr,
                           SCALED: tl.constexpr, BLOCK_N: tl.constexpr, PDL: tl.constexpr):
        pid = tl.program_id(0)
        rk = tl.arange(0, D_INNER)
        rn = pid * BLOCK_N + tl.arange(0, BLOCK_N)
        nmask = rn < N
        w = tl.load(w_ptr + rn[:, None] * D_INNER + rk[None, :], mask=nmask[:, None], other=0)
        nw = tl.load(nw_ptr + rk).to(tl.float32)
        scale = tl.load(scale_ptr + rn, mask=nmask, other=0.0).to(tl.float32) if SCALED else 1.0
        if PDL:  # as in _norm_gemv_kernel
            gdc_launch_dependents()
            gdc_wait()
        for b in range(0, B):
            g = tl.load(g_ptr + b * D_INNER + rk)
            rstd = 1.0 / tl.sqrt(tl.sum(g * g, axis=0) / D_INNER + eps)
            x = (g * rstd * nw).to(out_ptr.dtype.element_ty).to(tl.float32)
            y = tl.sum(w.to(tl.float32) * x[None, :], axis=1)
            if SCALED:
                y *= scale
            tl.store(out_ptr + b * N + rn, y.to(out_ptr.dtype.element_ty), mask=nmask)
            if pid == 0:  # every head has read the old B/C conv lanes by now
                _shift_bc_lanes(zx_ptr, cs_ptr, b, stride_zx, stride_cs, D_INNER, NSTATE, WIDTH)
