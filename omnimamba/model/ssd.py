"""Reference math of the Mamba-2 mixer in plain PyTorch: the readable specification and the CPU path.

Notation follows the Mamba-2 paper and mamba_ssm: per head h with state S_h in R^{P x N},

    a_t = dt_t * A_h                          (log-decay, A_h = -exp(A_log_h) < 0)
    S_t = exp(a_t) * S_{t-1} + dt_t * x_t (outer) B_t
    y_t = S_t @ C_t + D_h * x_t

`ssd_scan_ref` computes a whole sequence chunk by chunk (the "SSD" block decomposition: a quadratic,
attention-like form inside each chunk, the recurrence between chunks); `ssd_step_ref` is one step of the
recurrence. Tests hold the two together. Everything is computed in fp32 whatever the input dtype.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import quant


def ssd_scan_ref(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, chunk_size: int,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Chunked SSD over a sequence.

    x (b, l, h, p); dt (b, l, h) after softplus; A (h) negative; B, C (b, l, n) (one group shared by all heads);
    D (h); initial_state (b, h, p, n) or None (zeros).
    Returns y (b, l, h, p) in x's dtype and the final state (b, h, p, n) in fp32.
    """
    b, l, h, p = x.shape
    n = B.shape[-1]
    xf, dtf, Bf, Cf = x.float(), dt.float(), B.float(), C.float()
    state = x.new_zeros(b, h, p, n, dtype=torch.float32) if initial_state is None else initial_state.float()
    ys = []
    for start in range(0, l, chunk_size):
        xc, dtc = xf[:, start:start + chunk_size], dtf[:, start:start + chunk_size]  # (b, T, h, p), (b, T, h)
        Bc, Cc = Bf[:, start:start + chunk_size], Cf[:, start:start + chunk_size]  # (b, T, n)
        T = xc.shape[1]
        a_cum = torch.cumsum(dtc * A.float(), dim=1)  # (b, T, h): log-decay from the chunk start
        # decay between source step s and target step t (t >= s), zero above the diagonal
        seg = a_cum[:, :, None, :] - a_cum[:, None, :, :]  # (b, t, s, h)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        decay = torch.exp(seg.masked_fill(~causal[None, :, :, None], float("-inf")))  # (b, t, s, h)
        scores = torch.einsum("btn,bsn->bts", Cc, Bc)  # (b, t, s): C_t . B_s
        weights = scores[..., None] * decay * dtc[:, None, :, :]  # (b, t, s, h)
        y = torch.einsum("btsh,bshp->bthp", weights, xc)  # contributions from inside the chunk
        y = y + torch.einsum("btn,bhpn->bthp", Cc, state) * torch.exp(a_cum)[..., None]  # carried-in state
        ys.append(y + D.float()[:, None] * xc)
        to_end = torch.exp(a_cum[:, -1:, :] - a_cum) * dtc  # (b, T, h): weight of step s in the end state
        state = state * torch.exp(a_cum[:, -1])[:, :, None, None] + torch.einsum("bth,bthp,btn->bhpn", to_end, xc, Bc)
    return torch.cat(ys, dim=1).to(x.dtype), state


def ssd_step_ref(state: Tensor, x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor) -> Tensor:
    """One recurrence step; updates `state` (b, h, p, n) fp32 in place.

    x (b, h, p); dt (b, h) after softplus; A (h); B, C (b, n); D (h). Returns y (b, h, p) in fp32.
    """
    xf, dtf = x.float(), dt.float()
    decay = torch.exp(dtf * A.float())  # (b, h)
    state.mul_(decay[:, :, None, None]).add_(dtf[:, :, None, None] * xf[..., None] * B.float()[:, None, None, :])
    # a multiply and a sum, not einsum: its batched product costs 3x as much on a CPU at these sizes (2 rows of
    # the shapes model: 261 vs 86 us; the decode reference path runs this once per layer and token)
    return (state * C.float()[:, None, None, :]).sum(-1) + D.float()[:, None] * xf


def causal_conv_ref(xBC: Tensor, weight: Tensor, bias: Tensor, context: Tensor) -> Tensor:
    """Depthwise causal conv + SiLU over a sequence that continues `context`.

    xBC (b, l, c); weight (c, w); bias (c); context (b, c, w - 1): the w - 1 inputs before this sequence
    (zeros for a fresh sequence, which is the official left zero padding). Returns (b, l, c) in xBC's dtype.
    Written as w shifted multiply-adds in fp32: depthwise F.conv1d is slow on long sequences on GPUs.
    """
    l, w = xBC.shape[1], weight.shape[1]
    padded = torch.cat([context.transpose(1, 2).to(xBC.dtype), xBC], dim=1)  # (b, w - 1 + l, c)
    out = bias.float() + sum(padded[:, k:k + l].float() * weight[:, k].float() for k in range(w))
    return F.silu(out).to(xBC.dtype)


def conv_state_after(xBC: Tensor, context: Tensor, width: int) -> Tensor:
    """The last `width` pre-conv inputs after feeding xBC (b, l, c) behind context (b, c, w - 1) -> (b, c, w)."""
    full = torch.cat([context.to(xBC.dtype), xBC.transpose(1, 2)], dim=2)  # (b, c, w - 1 + l), l >= 1
    return full[:, :, -width:]


def conv_step_ref(conv_state: Tensor, xBC: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """One conv step: shift `conv_state` (b, c, w) left in place, append xBC (b, c), return SiLU(conv) (b, c)."""
    conv_state.copy_(torch.cat([conv_state[:, :, 1:], xBC[:, :, None].to(conv_state.dtype)], dim=2))
    out = (conv_state.float() * weight.float()).sum(-1) + bias.float()
    return F.silu(out).to(xBC.dtype)


def rms_norm_ref(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """RMSNorm computed in fp32, returned in fp32."""
    xf = x.float()
    return xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()


def gated_rms_norm_ref(y: Tensor, z: Tensor, weight: Tensor, eps: float) -> Tensor:
    """Mamba-2 output norm with norm_before_gate=False: RMSNorm(y * SiLU(z)) over the whole d_inner, in fp32."""
    return rms_norm_ref(y.float() * F.silu(z.float()), weight, eps)


# Twins of the fused kernels in `kernels/`: the same function, written with the pieces above.
def add_rms_norm_ref(hidden: Tensor, residual: Tensor | None, weight: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """r = residual + hidden in fp32 (hidden alone for the first block); returns (RMSNorm(r) * weight in
    hidden's dtype, r)."""
    r = hidden.float() if residual is None else residual + hidden.float()
    return rms_norm_ref(r, weight, eps).to(hidden.dtype), r


def norm_linear_ref(hidden: Tensor, residual_in: Tensor | None, residual_out: Tensor | None, norm_weight: Tensor,
                    weight: "quant.DecodeWeight", eps: float, out_dtype: torch.dtype) -> Tensor:
    """RMSNorm(residual_in + hidden) @ weight.T, the normed input rounded to hidden's dtype first; writes the new
    residual into `residual_out` when given."""
    normed, r = add_rms_norm_ref(hidden, residual_in, norm_weight, eps)
    if residual_out is not None:
        residual_out.copy_(r)
    return quant.linear(normed, weight).to(out_dtype)


def ssm_step_ref(zxbcdt: Tensor, conv_state: Tensor, conv_weight: Tensor, conv_bias: Tensor, ssm_state: Tensor,
                 dt_bias: Tensor, A_log: Tensor, D: Tensor, d_inner: int, d_state: int, headdim: int) -> Tensor:
    """One decode step of the mixer core: shifts the x lanes of conv_state and updates ssm_state in place; the
    B/C lanes are read, not shifted (see `gated_norm_linear_ref`). Returns (S @ C + D x) * SiLU(z) in fp32."""
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


def gated_norm_linear_ref(g: Tensor, norm_weight: Tensor, weight: "quant.DecodeWeight", eps: float,
                          zxbcdt: Tensor, conv_state: Tensor, d_inner: int, d_state: int) -> Tensor:
    """out_proj(RMSNorm(g) * norm_weight) in weight's dtype; shifts the B/C lanes of conv_state in place."""
    bc_lanes = conv_state[:, d_inner:d_inner + 2 * d_state]  # conv lane c holds zxbcdt lane d_inner + c
    new_bc = zxbcdt[:, 2 * d_inner:2 * d_inner + 2 * d_state]
    bc_lanes.copy_(torch.cat([bc_lanes[:, :, 1:], new_bc[:, :, None].to(conv_state.dtype)], dim=2))
    return quant.linear(rms_norm_ref(g, norm_weight, eps).to(weight.dtype), weight).to(weight.dtype)
