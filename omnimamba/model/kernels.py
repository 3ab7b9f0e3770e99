"""Fast kernels behind one small interface, each with its plain-PyTorch twin in `ssd.py`.

Sequence (prefill, teacher forcing); one launch each where PyTorch would need several (launches, not FLOPs,
bound a 760-token prefill):
  * `ssd_scan`        mamba_ssm's Triton chunked scan when it imports, else `ssd_scan_ref`.
  * `causal_conv`     causal-conv1d's CUDA kernel when it imports, else ours (Triton), else `causal_conv_ref`.
  * `add_rms_norm`    residual add + RMSNorm of every row.
  * `gated_rms_norm`  RMSNorm(y * SiLU(z)) of every row.
Decode (one token, the latency-critical path; ours, Triton, fused so a layer costs three kernels):
  * `norm_linear`        residual add + RMSNorm + matrix-vector product (in_proj, and norm_f + head).
  * `ssm_step`           conv update + SiLU + dt softplus + state update + D skip + SiLU(z) gate.
  * `gated_norm_linear`  RMSNorm of the gated output + out_proj, and the shift of the B/C conv lanes.
Every dispatcher falls back per kernel, so a missing package slows one piece down and breaks nothing.
`backends()` says what runs; `reference_only()` forces the twins (used to compare paths on the GPU).
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from .ssd import causal_conv_ref, conv_step_ref, gated_rms_norm_ref, rms_norm_ref, ssd_scan_ref, ssd_step_ref

log = logging.getLogger(__name__)

@functools.cache
def _mamba_scan() -> Callable | None:
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

try:
    from causal_conv1d import causal_conv1d_fn
except Exception as exc:
    causal_conv1d_fn = None
    log.debug("causal-conv1d unavailable: %s", exc)

try:
    import triton
    import triton.language as tl
except Exception as exc:
    triton = tl = None
    log.debug("triton unavailable: %s", exc)

_force_reference = False
# TRITON_INTERPRET=1 runs our Triton kernels on CPU tensors (slowly): how the CPU test suite checks them
_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


@contextlib.contextmanager
def reference_only() -> Iterator[None]:
    """Run every kernel's PyTorch twin inside this block (for fast-vs-reference comparisons)."""
    global _force_reference
    saved, _force_reference = _force_reference, True
    try:
        yield
    finally:
        _force_reference = saved


def _fast(t: Tensor) -> bool:
    if t.is_cuda and not _force_reference:
        _announce(t.device)
        return True
    return False


def _triton(t: Tensor) -> bool:
    return triton is not None and not _force_reference and (_fast(t) or _INTERPRET)


@functools.cache
def _announce(device: torch.device) -> None:
    """One log line, the first time a kernel runs on a GPU, saying which implementation each piece uses."""
    log.info("kernels on %s: %s", device, describe_backends(device))


def backends(device: torch.device | str = "cuda") -> dict[str, str]:
    """Which implementation each kernel uses on `device`."""
    on_cuda = torch.device(device).type == "cuda" and not _force_reference
    return {
        "scan": "mamba_ssm triton" if on_cuda and _mamba_scan() else "pytorch reference",
        "conv": "causal-conv1d" if on_cuda and causal_conv1d_fn else "pytorch conv1d",
        "decode": "omnimamba triton (fused)" if on_cuda and triton else "pytorch reference",
    }


def describe_backends(device: torch.device | str = "cuda") -> str:
    return ", ".join(f"{k}: {v}" for k, v in backends(device).items())


# ---------------------------------------------------------------------------------------------------------------
# Sequence kernels
# ---------------------------------------------------------------------------------------------------------------
def ssd_scan(x: Tensor, dt_raw: Tensor, dt_bias: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
             chunk_size: int, initial_state: Tensor | None) -> tuple[Tensor, Tensor]:
    """x (b, l, h, p); dt_raw (b, l, h) before bias and softplus; B, C (b, l, n). Returns y, final state (fp32)."""
    scan = _mamba_scan() if _fast(x) else None
    if scan is not None:
        y, final = scan(x, dt_raw, A, B[:, :, None], C[:, :, None], chunk_size, D=D, dt_bias=dt_bias,
                        dt_softplus=True, initial_states=initial_state, return_final_states=True)
        return y, final.float()
    dt = F.softplus(dt_raw.float() + dt_bias.float())
    return ssd_scan_ref(x, dt, A, B, C, D, chunk_size, initial_state)


def causal_conv(xBC: Tensor, weight: Tensor, bias: Tensor, context: Tensor) -> Tensor:
    """SiLU(depthwise causal conv) of xBC (b, l, c) continuing `context` (b, c, w - 1)."""
    if _fast(xBC) and causal_conv1d_fn is not None:
        # channel-last input (stride 1 over channels) is what causal-conv1d needs to accept initial states
        out = causal_conv1d_fn(xBC.transpose(1, 2), weight, bias, initial_states=context.to(xBC.dtype).contiguous(),
                               activation="silu")
        return out.transpose(1, 2)
    if _triton(xBC) and weight.shape[1] == 4:
        b, l, c = xBC.shape
        assert xBC.stride(-1) == 1 and weight.is_contiguous()
        out = torch.empty(b, l, c, device=xBC.device, dtype=xBC.dtype)
        ctx = context.to(xBC.dtype).contiguous()
        grid = (b, triton.cdiv(l, 16), triton.cdiv(c, 256))
        _causal_conv_kernel[grid](xBC, ctx, weight, bias, out, l, c, xBC.stride(0), xBC.stride(1),
                                  BLOCK_L=16, BLOCK_C=256)
        return out
    return causal_conv_ref(xBC, weight, bias, context)


def add_rms_norm(hidden: Tensor, residual: Tensor | None, weight: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Sequence rows: r = residual + hidden (fp32; hidden alone for the first block); returns
    (RMSNorm(r) * weight in hidden's dtype, r)."""
    if _triton(hidden) and hidden.is_contiguous():
        d = hidden.shape[-1]
        rows = hidden.numel() // d
        r = torch.empty(hidden.shape, device=hidden.device, dtype=torch.float32)
        normed = torch.empty_like(hidden)
        _add_rms_norm_kernel[(rows,)](hidden, residual if residual is not None else r, r, weight, normed, d, d, eps,
                                      HAS_RIN=residual is not None, WRITE_ROUT=True,
                                      BLOCK=triton.next_power_of_2(d))
        return normed, r
    r = hidden.float() if residual is None else residual + hidden.float()
    return rms_norm_ref(r, weight, eps).to(hidden.dtype), r


def gated_rms_norm(y: Tensor, z: Tensor, weight: Tensor, eps: float, out_dtype: torch.dtype) -> Tensor:
    """RMSNorm(y * SiLU(z)) * weight for every row; y (..., d) contiguous, z (..., d) rows may be strided."""
    if _triton(y) and y.is_contiguous() and z.stride(-1) == 1:
        d = y.shape[-1]
        out = torch.empty(y.shape, device=y.device, dtype=out_dtype)
        z_rows = z.reshape(-1, z.shape[-1]) if z.dim() == 2 else z.flatten(0, -2)
        _gated_rms_norm_kernel[(y.numel() // d,)](y, z_rows, weight, out, d, z_rows.stride(0), eps,
                                                  BLOCK=triton.next_power_of_2(d))
        return out
    return gated_rms_norm_ref(y, z, weight, eps).to(out_dtype)


# How the decode step multiplies by its weights (16-bit weights on CUDA):
#   "fused":  our Triton matrix-vector kernels with the norm folded in: 3 kernels per layer
#   "cublas": norm kernels + cuBLAS GEMV: 5 kernels per layer
#   "auto":   fused for one row (1.42 vs 1.85 ms/token on H100), cuBLAS from two rows on (the fused kernel
#             re-reads its weight tile per row: 2.11 vs 1.94 ms at 2 rows, 5.0 vs 2.5 ms at 8)
# fp32 weights (the official numerics) always use cuBLAS. OMNIMAMBA_DECODE_GEMV overrides the default.
DECODE_GEMV = os.environ.get("OMNIMAMBA_DECODE_GEMV", "auto")


def _fused_gemv(x: Tensor, weight: Tensor) -> bool:
    wanted = DECODE_GEMV == "fused" or (DECODE_GEMV == "auto" and x.shape[0] == 1)
    return wanted and _triton(x) and weight.dtype in (torch.bfloat16, torch.float16)


def _gemv_rows(k: int) -> int:
    """Weight rows per program: a (rows x k) tile of 16 K elements, loaded at once (32 KB in bf16)."""
    return max(1, 16384 // k)


def norm_linear(hidden: Tensor, residual_in: Tensor | None, residual_out: Tensor | None, norm_weight: Tensor,
                weight: Tensor, eps: float, out_dtype: torch.dtype | None = None) -> Tensor:
    """out = RMSNorm(residual_in + hidden) @ weight.T for one token per row.

    hidden (b, k) model dtype; residual_in (b, k) fp32 or None (first layer); residual_out (b, k) fp32 receives
    residual_in + hidden (a separate buffer: every program of the fused kernel reads the old residual);
    weight (n, k). The normed input is rounded to hidden's dtype before the product, as in the sequence path.
    """
    out_dtype = out_dtype or hidden.dtype
    b, k = hidden.shape
    if _fused_gemv(hidden, weight):
        assert hidden.stride(-1) == 1 and weight.is_contiguous() and k == triton.next_power_of_2(k)
        n = weight.shape[0]
        out = torch.empty(b, n, device=hidden.device, dtype=out_dtype)
        rows = _gemv_rows(k)
        _norm_gemv_kernel[(triton.cdiv(n, rows),)](
            hidden, residual_in if residual_in is not None else hidden,
            residual_out if residual_out is not None else hidden, norm_weight, weight, out, b, n,
            hidden.stride(0), eps, K=k, HAS_RIN=residual_in is not None, WRITE_ROUT=residual_out is not None,
            BLOCK_N=rows, num_warps=8)
        return out
    if _triton(hidden):
        normed = torch.empty_like(hidden)
        _add_rms_norm_kernel[(b,)](hidden, residual_in if residual_in is not None else hidden,
                                   residual_out if residual_out is not None else hidden, norm_weight, normed, k,
                                   hidden.stride(0), eps, HAS_RIN=residual_in is not None,
                                   WRITE_ROUT=residual_out is not None, BLOCK=triton.next_power_of_2(k))
        return F.linear(normed, weight).to(out_dtype)
    r = hidden.float() if residual_in is None else residual_in + hidden.float()
    if residual_out is not None:
        residual_out.copy_(r)
    normed = rms_norm_ref(r, norm_weight, eps).to(hidden.dtype)
    return F.linear(normed, weight).to(out_dtype)


def ssm_step(zxbcdt: Tensor, conv_state: Tensor, conv_weight: Tensor, conv_bias: Tensor, ssm_state: Tensor,
             dt_bias: Tensor, A_log: Tensor, D: Tensor, d_inner: int, d_state: int, headdim: int) -> Tensor:
    """One decode step of the mixer core for zxbcdt (b, d_in_proj) = [z | x | B | C | dt].

    Updates ssm_state (b, h, p, n) fp32 and the x lanes of conv_state (b, c, w) in place. The B and C lanes
    are read by every head, so their shift is left to `gated_norm_linear`, which runs after all heads are done.
    Returns g = (S @ C + D x) * SiLU(z), (b, d_inner) fp32, before the output norm.
    """
    if _triton(zxbcdt):
        assert zxbcdt.stride(-1) == 1 and conv_state.stride(-1) == 1 and conv_state.stride(-2) == conv_state.shape[-1]
        assert ssm_state[0].is_contiguous() and conv_weight.is_contiguous() and conv_state.shape[-1] == 4
        b, nheads = zxbcdt.shape[0], d_inner // headdim
        g = torch.empty(b, d_inner, device=zxbcdt.device, dtype=torch.float32)
        block_p = min(headdim, 16)
        grid = (b, nheads, headdim // block_p)
        _ssm_step_kernel[grid](zxbcdt, conv_state, conv_weight, conv_bias, ssm_state, dt_bias, A_log, D, g,
                               zxbcdt.stride(0), conv_state.stride(0), ssm_state.stride(0),
                               D_INNER=d_inner, NSTATE=d_state, HEADDIM=headdim, WIDTH=conv_state.shape[-1],
                               BLOCK_P=block_p)
        return g
    return _ssm_step_ref(zxbcdt, conv_state, conv_weight, conv_bias, ssm_state, dt_bias, A_log, D,
                         d_inner, d_state, headdim)


def gated_norm_linear(g: Tensor, norm_weight: Tensor, weight: Tensor, eps: float, zxbcdt: Tensor,
                      conv_state: Tensor, d_inner: int, d_state: int) -> Tensor:
    """out_proj(RMSNorm(g) * norm_weight) in weight's dtype; also shifts the B/C lanes of conv_state, which
    every head of `ssm_step` has read by now."""
    b = g.shape[0]
    common = dict(D_INNER=d_inner, NSTATE=d_state, WIDTH=conv_state.shape[-1])
    if _fused_gemv(g, weight):
        n = weight.shape[0]
        out = torch.empty(b, n, device=g.device, dtype=weight.dtype)
        rows = _gemv_rows(d_inner)
        _gated_gemv_kernel[(triton.cdiv(n, rows),)](g, norm_weight, weight, out, zxbcdt, conv_state, b, n, eps,
                                                     zxbcdt.stride(0), conv_state.stride(0), BLOCK_N=rows,
                                                     num_warps=8, **common)
        return out
    if _triton(g):
        normed = torch.empty(g.shape, device=g.device, dtype=weight.dtype)
        _gated_norm_kernel[(b,)](g, norm_weight, normed, zxbcdt, conv_state, eps, zxbcdt.stride(0),
                                 conv_state.stride(0), BLOCK=triton.next_power_of_2(d_inner), **common)
        return F.linear(normed, weight)
    bc_lanes = conv_state[:, d_inner:d_inner + 2 * d_state]  # conv lane c holds zxbcdt lane d_inner + c
    new_bc = zxbcdt[:, 2 * d_inner:2 * d_inner + 2 * d_state]
    bc_lanes.copy_(torch.cat([bc_lanes[:, :, 1:], new_bc[:, :, None].to(conv_state.dtype)], dim=2))
    return F.linear(rms_norm_ref(g, norm_weight, eps).to(weight.dtype), weight)


def _ssm_step_ref(zxbcdt: Tensor, conv_state: Tensor, conv_weight: Tensor, conv_bias: Tensor, ssm_state: Tensor,
                  dt_bias: Tensor, A_log: Tensor, D: Tensor, d_inner: int, d_state: int, headdim: int) -> Tensor:
    """PyTorch twin of `_ssm_step_kernel`, written with the reference step functions."""
    b = zxbcdt.shape[0]
    z, xBC, dt_raw = zxbcdt.split([d_inner, d_inner + 2 * d_state, zxbcdt.shape[1] - 2 * d_inner - 2 * d_state], -1)
    x_lanes = conv_state[:, :d_inner]  # a view: conv_step_ref shifts the x lanes in place
    x = conv_step_ref(x_lanes, xBC[:, :d_inner], conv_weight[:d_inner], conv_bias[:d_inner])  # (b, d_inner)
    bc_state = conv_state[:, d_inner:].clone()  # B/C lanes: read, not shifted here
    BC = conv_step_ref(bc_state, xBC[:, d_inner:], conv_weight[d_inner:], conv_bias[d_inner:])  # (b, 2n)
    Bv, Cv = BC.split(d_state, -1)
    dt = F.softplus(dt_raw.float() + dt_bias.float())  # (b, h)
    A = -torch.exp(A_log.float())
    y = ssd_step_ref(ssm_state, x.view(b, -1, headdim), dt, A, Bv, Cv, D)  # (b, h, p) fp32
    return y.reshape(b, d_inner) * F.silu(z.float())


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
                         WIDTH: tl.constexpr, BLOCK_P: tl.constexpr):
        b, h, pb = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        zx = zx_ptr + b * stride_zx  # row: z [0, D) | x [D, 2D) | B | C | dt
        cs = cs_ptr + b * stride_cs  # (conv_dim, WIDTH), conv lane c <-> zx lane D + c
        dtype = zx_ptr.dtype.element_ty
        p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
        ch_x = h * HEADDIM + p
        n = tl.arange(0, NSTATE)
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
        s_ptrs = ss_ptr + b * stride_ss + h * HEADDIM * NSTATE + p[:, None] * NSTATE + n[None, :]
        S = tl.load(s_ptrs) * decay + (dt * x)[:, None] * Bv[None, :]  # (BLOCK_P, NSTATE)
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
    def _norm_gemv_kernel(h_ptr, rin_ptr, rout_ptr, nw_ptr, w_ptr, out_ptr, B, N, stride_h, eps,
                          K: tl.constexpr, HAS_RIN: tl.constexpr, WRITE_ROUT: tl.constexpr, BLOCK_N: tl.constexpr):
        """Each program: BLOCK_N full rows of the weight, loaded once, times every batch row's normed input."""
        pid = tl.program_id(0)
        rk = tl.arange(0, K)
        rn = pid * BLOCK_N + tl.arange(0, BLOCK_N)
        nmask = rn < N
        w = tl.load(w_ptr + rn[:, None] * K + rk[None, :], mask=nmask[:, None], other=0.0)  # (BLOCK_N, K)
        nw = tl.load(nw_ptr + rk).to(tl.float32)
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
            tl.store(out_ptr + b * N + rn, y.to(out_ptr.dtype.element_ty), mask=nmask)

    @triton.jit
    def _gated_gemv_kernel(g_ptr, nw_ptr, w_ptr, out_ptr, zx_ptr, cs_ptr, B, N, eps, stride_zx, stride_cs,
                           D_INNER: tl.constexpr, NSTATE: tl.constexpr, WIDTH: tl.constexpr, BLOCK_N: tl.constexpr):
        pid = tl.program_id(0)
        rk = tl.arange(0, D_INNER)
        rn = pid * BLOCK_N + tl.arange(0, BLOCK_N)
        nmask = rn < N
        w = tl.load(w_ptr + rn[:, None] * D_INNER + rk[None, :], mask=nmask[:, None], other=0.0)
        nw = tl.load(nw_ptr + rk).to(tl.float32)
        for b in range(0, B):
            g = tl.load(g_ptr + b * D_INNER + rk)
            rstd = 1.0 / tl.sqrt(tl.sum(g * g, axis=0) / D_INNER + eps)
            x = (g * rstd * nw).to(out_ptr.dtype.element_ty).to(tl.float32)
            y = tl.sum(w.to(tl.float32) * x[None, :], axis=1)
            tl.store(out_ptr + b * N + rn, y.to(out_ptr.dtype.element_ty), mask=nmask)
            if pid == 0:  # every head has read the old B/C conv lanes by now
                _shift_bc_lanes(zx_ptr, cs_ptr, b, stride_zx, stride_cs, D_INNER, NSTATE, WIDTH)
