"""Fast kernels behind one small interface, each with its plain-PyTorch twin in `ssd.py`.

Sequence (prefill, teacher forcing):
  * `ssd_scan`      mamba_ssm's Triton chunked scan when it imports and the tensors are on CUDA, else `ssd_scan_ref`.
  * `causal_conv`   causal-conv1d's CUDA kernel when it imports, else `causal_conv_ref` (one F.conv1d).
Decode (one token, the latency-critical path; ours, Triton, fused so a layer costs three kernels):
  * `norm_linear`        residual add + RMSNorm + matrix-vector product (in_proj, and norm_f + head).
  * `ssm_step`           conv update + SiLU + dt softplus + state update + D skip + SiLU(z) gate.
  * `gated_norm_linear`  RMSNorm of the gated output + out_proj, and the shift of the B/C conv lanes.
Every dispatcher falls back per kernel, so a missing package slows one piece down and breaks nothing.
`backends()` says what runs; `reference_only()` forces the twins (used to compare paths on the GPU).
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import os
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from .ssd import causal_conv_ref, conv_step_ref, gated_rms_norm_ref, rms_norm_ref, ssd_scan_ref, ssd_step_ref

log = logging.getLogger(__name__)

try:  # the official fast scan; needs a CUDA build of mamba-ssm (or its pure-Python wheel + Triton)
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    _SCAN_HAS_STATE_DTYPE = "state_dtype" in inspect.signature(mamba_chunk_scan_combined).parameters
except Exception as exc:  # any import failure (missing package, missing compiled module) means: use the twin
    mamba_chunk_scan_combined, _SCAN_HAS_STATE_DTYPE = None, False
    log.debug("mamba_ssm scan unavailable: %s", exc)

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
    return t.is_cuda and not _force_reference


def _triton(t: Tensor) -> bool:
    return triton is not None and not _force_reference and (t.is_cuda or _INTERPRET)


def backends(device: torch.device | str = "cuda") -> dict[str, str]:
    """Which implementation each kernel uses on `device`."""
    on_cuda = torch.device(device).type == "cuda" and not _force_reference
    return {
        "scan": "mamba_ssm triton" if on_cuda and mamba_chunk_scan_combined else "pytorch reference",
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
    if _fast(x) and mamba_chunk_scan_combined is not None:
        extra = {"state_dtype": torch.float32} if _SCAN_HAS_STATE_DTYPE else {}
        y, final = mamba_chunk_scan_combined(
            x, dt_raw, A, B[:, :, None], C[:, :, None], chunk_size, D=D, dt_bias=dt_bias, dt_softplus=True,
            initial_states=initial_state, return_final_states=True, **extra)
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
    return causal_conv_ref(xBC, weight, bias, context)


# ---------------------------------------------------------------------------------------------------------------
# Decode kernels
# ---------------------------------------------------------------------------------------------------------------
FUSED_MAX_ROWS = 16  # the fused matrix-vector kernels pad the batch to 16 rows (one tensor-core tile)


def _fused_linear_ok(x: Tensor, weight: Tensor) -> bool:
    """Fused decode GEMVs: 16-bit weights, small batch. fp32 (the official numerics) goes through cuBLAS."""
    return _triton(x) and weight.dtype in (torch.bfloat16, torch.float16) and x.shape[0] <= FUSED_MAX_ROWS


def norm_linear(hidden: Tensor, residual_in: Tensor | None, residual_out: Tensor | None, norm_weight: Tensor,
                weight: Tensor, eps: float, out_dtype: torch.dtype | None = None) -> Tensor:
    """out = RMSNorm(residual_in + hidden) @ weight.T for one token per row.

    hidden (b, k) model dtype; residual_in (b, k) fp32 or None (first layer); residual_out (b, k) fp32 receives
    residual_in + hidden (a different buffer: every program reads the old residual); weight (n, k).
    The normed input is rounded to hidden's dtype before the product, as in the sequence path.
    """
    out_dtype = out_dtype or hidden.dtype
    if _fused_linear_ok(hidden, weight):
        assert hidden.stride(-1) == 1 and weight.is_contiguous()
        b, k = hidden.shape
        n = weight.shape[0]
        out = torch.empty(b, n, device=hidden.device, dtype=out_dtype)
        block_n, block_k, warps, stages = _gemv_config(n, k)
        _norm_linear_kernel[(triton.cdiv(n, block_n),)](
            hidden, residual_in if residual_in is not None else hidden, residual_out if residual_out is not None
            else hidden, norm_weight, weight, out, b, n, k, hidden.stride(0), eps,
            HAS_RIN=residual_in is not None, WRITE_ROUT=residual_out is not None, UPCAST=_INTERPRET,
            B_PAD=FUSED_MAX_ROWS, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=warps, num_stages=stages)
        return out
    r = hidden.float() if residual_in is None else residual_in + hidden.float()
    if residual_out is not None:
        residual_out.copy_(r)
    normed = rms_norm_ref(r, norm_weight, eps).to(hidden.dtype)
    return F.linear(normed, weight).to(out_dtype)


def _gemv_config(n: int, k: int) -> tuple[int, int, int, int]:
    """(BLOCK_N, BLOCK_K, num_warps, num_stages): about one program per SM for the layer GEMVs, measured on H100."""
    return (64, 128, 4, 4) if n >= 4 * k else (16, 256, 4, 4)


def ssm_step(zxbcdt: Tensor, conv_state: Tensor, conv_weight: Tensor, conv_bias: Tensor, ssm_state: Tensor,
             dt_bias: Tensor, A_log: Tensor, D: Tensor, d_inner: int, d_state: int, headdim: int) -> Tensor:
    """One decode step of the mixer core for zxbcdt (b, d_in_proj) = [z | x | B | C | dt].

    Updates ssm_state (b, h, p, n) fp32 and the x lanes of conv_state (b, c, w) in place. The B and C lanes
    are read by every head, so their shift is left to `gated_norm_linear`, which runs after all heads are done.
    Returns g = (S @ C + D x) * SiLU(z), (b, d_inner) fp32, before the output norm.
    """
    if _triton(zxbcdt):
        assert zxbcdt.stride(-1) == 1 and conv_state.stride(-1) == 1 and conv_state.stride(-2) == conv_state.shape[-1]
        assert ssm_state[0].is_contiguous() and conv_weight.is_contiguous()
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
    if _fused_linear_ok(g, weight):
        b, n = g.shape[0], weight.shape[0]
        out = torch.empty(b, n, device=g.device, dtype=weight.dtype)
        block_n, block_k, warps, stages = _gemv_config(n, d_inner)
        _gated_linear_kernel[(triton.cdiv(n, block_n),)](
            g, norm_weight, weight, out, zxbcdt, conv_state, b, n, eps, zxbcdt.stride(0), conv_state.stride(0),
            D_INNER=d_inner, NSTATE=d_state, WIDTH=conv_state.shape[-1], UPCAST=_INTERPRET,
            B_PAD=FUSED_MAX_ROWS, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=warps, num_stages=stages)
        return out
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
    def _conv4(cs_ptr, w_ptr, bias_ptr, ch, new, WIDTH: tl.constexpr):
        """Causal conv output of lanes `ch` for the new input `new` (fp32), given the old state (width 4)."""
        acc = tl.load(bias_ptr + ch).to(tl.float32) + tl.load(w_ptr + ch * WIDTH + WIDTH - 1).to(tl.float32) * new
        for k in tl.static_range(WIDTH - 1):  # old inputs 1..W-1 line up with taps 0..W-2
            acc += tl.load(w_ptr + ch * WIDTH + k).to(tl.float32) * tl.load(cs_ptr + ch * WIDTH + k + 1).to(tl.float32)
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
        # conv: this program owns lanes ch_x, so it also shifts their state
        x_new = tl.load(zx + D_INNER + ch_x)
        xc = _conv4(cs, cw_ptr, cb_ptr, ch_x, x_new.to(tl.float32), WIDTH)
        for k in tl.static_range(WIDTH - 1):
            tl.store(cs + ch_x * WIDTH + k, tl.load(cs + ch_x * WIDTH + k + 1))
        tl.store(cs + ch_x * WIDTH + WIDTH - 1, x_new.to(cs_ptr.dtype.element_ty))
        x = (xc * tl.sigmoid(xc)).to(dtype).to(tl.float32)
        # B and C lanes are shared by all heads: read-only here
        Bc = _conv4(cs, cw_ptr, cb_ptr, D_INNER + n, tl.load(zx + 2 * D_INNER + n).to(tl.float32), WIDTH)
        Cc = _conv4(cs, cw_ptr, cb_ptr, D_INNER + NSTATE + n,
                    tl.load(zx + 2 * D_INNER + NSTATE + n).to(tl.float32), WIDTH)
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
    def _dot(x, w, UPCAST: tl.constexpr):
        """x (B_PAD, BLOCK_K) @ w (BLOCK_N, BLOCK_K).T in fp32. The interpreter cannot multiply 16-bit tiles,
        so it upcasts (exact: 16-bit values are exact in fp32)."""
        if UPCAST:
            return tl.dot(x.to(tl.float32), tl.trans(w.to(tl.float32)), input_precision="ieee")
        return tl.dot(x, tl.trans(w))

    @triton.jit
    def _norm_linear_kernel(h_ptr, rin_ptr, rout_ptr, nw_ptr, w_ptr, out_ptr, B, N, K, stride_h, eps,
                            HAS_RIN: tl.constexpr, WRITE_ROUT: tl.constexpr, UPCAST: tl.constexpr,
                            B_PAD: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        pid = tl.program_id(0)
        xdtype = h_ptr.dtype.element_ty
        rb = tl.arange(0, B_PAD)
        bmask = rb < B
        # pass 1: sum of squares of r = residual + hidden per row (every program needs the full row)
        ss = tl.zeros((B_PAD,), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            rk = k0 + tl.arange(0, BLOCK_K)
            m = bmask[:, None] & (rk < K)[None, :]
            r = tl.load(h_ptr + rb[:, None] * stride_h + rk[None, :], mask=m, other=0.0).to(tl.float32)
            if HAS_RIN:
                r += tl.load(rin_ptr + rb[:, None] * K + rk[None, :], mask=m, other=0.0)
            if WRITE_ROUT:
                if pid == 0:
                    tl.store(rout_ptr + rb[:, None] * K + rk[None, :], r, mask=m)
            ss += tl.sum(r * r, axis=1)
        rstd = 1.0 / tl.sqrt(ss / K + eps)
        # pass 2: the product with this program's BLOCK_N rows of the weight
        rn = pid * BLOCK_N + tl.arange(0, BLOCK_N)
        nmask = rn < N
        acc = tl.zeros((B_PAD, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            rk = k0 + tl.arange(0, BLOCK_K)
            kmask = rk < K
            m = bmask[:, None] & kmask[None, :]
            r = tl.load(h_ptr + rb[:, None] * stride_h + rk[None, :], mask=m, other=0.0).to(tl.float32)
            if HAS_RIN:
                r += tl.load(rin_ptr + rb[:, None] * K + rk[None, :], mask=m, other=0.0)
            nw = tl.load(nw_ptr + rk, mask=kmask, other=0.0).to(tl.float32)
            x = (r * rstd[:, None] * nw[None, :]).to(xdtype)
            w = tl.load(w_ptr + rn[:, None] * K + rk[None, :], mask=nmask[:, None] & kmask[None, :], other=0.0)
            acc += _dot(x, w, UPCAST)
        tl.store(out_ptr + rb[:, None] * N + rn[None, :], acc.to(out_ptr.dtype.element_ty),
                 mask=bmask[:, None] & nmask[None, :])

    @triton.jit
    def _gated_linear_kernel(g_ptr, nw_ptr, w_ptr, out_ptr, zx_ptr, cs_ptr, B, N, eps, stride_zx, stride_cs,
                             D_INNER: tl.constexpr, NSTATE: tl.constexpr, WIDTH: tl.constexpr,
                             UPCAST: tl.constexpr, B_PAD: tl.constexpr, BLOCK_N: tl.constexpr,
                             BLOCK_K: tl.constexpr):
        pid = tl.program_id(0)
        xdtype = out_ptr.dtype.element_ty
        rb = tl.arange(0, B_PAD)
        bmask = rb < B
        ss = tl.zeros((B_PAD,), dtype=tl.float32)
        for k0 in range(0, D_INNER, BLOCK_K):
            rk = k0 + tl.arange(0, BLOCK_K)
            m = bmask[:, None] & (rk < D_INNER)[None, :]
            g = tl.load(g_ptr + rb[:, None] * D_INNER + rk[None, :], mask=m, other=0.0)
            ss += tl.sum(g * g, axis=1)
        rstd = 1.0 / tl.sqrt(ss / D_INNER + eps)
        rn = pid * BLOCK_N + tl.arange(0, BLOCK_N)
        nmask = rn < N
        acc = tl.zeros((B_PAD, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, D_INNER, BLOCK_K):
            rk = k0 + tl.arange(0, BLOCK_K)
            kmask = rk < D_INNER
            g = tl.load(g_ptr + rb[:, None] * D_INNER + rk[None, :], mask=bmask[:, None] & kmask[None, :], other=0.0)
            nw = tl.load(nw_ptr + rk, mask=kmask, other=0.0).to(tl.float32)
            x = (g * rstd[:, None] * nw[None, :]).to(xdtype)
            w = tl.load(w_ptr + rn[:, None] * D_INNER + rk[None, :], mask=nmask[:, None] & kmask[None, :], other=0.0)
            acc += _dot(x, w, UPCAST)
        tl.store(out_ptr + rb[:, None] * N + rn[None, :], acc.to(xdtype), mask=bmask[:, None] & nmask[None, :])
        if pid == 0:  # every head has read the old B/C conv lanes by now: shift them, append the new inputs
            ch = D_INNER + tl.arange(0, 2 * NSTATE)
            for b in range(0, B):
                cs = cs_ptr + b * stride_cs
                for k in tl.static_range(WIDTH - 1):
                    tl.store(cs + ch * WIDTH + k, tl.load(cs + ch * WIDTH + k + 1))
                new = tl.load(zx_ptr + b * stride_zx + D_INNER + ch)
                tl.store(cs + ch * WIDTH + WIDTH - 1, new.to(cs_ptr.dtype.element_ty))
