"""The Mamba-2 mixer of OmniMamba (reference §2.1, §3.1), with the task-routed LoRA `in_proj`.

Two entry points, one per mode:
  * `forward(u, task, state)`: a whole sequence (teacher forcing, prefill, a chat turn). With `state` it starts
    from that layer's conv/SSM state and leaves the final state there, so a conversation continues exactly.
  * `step(zxbcdt, state)`: one token, updating the state in place (decode); its in_proj is fused with the
    block's norm (`Block.step`) and needs merged task weights (`TaskLoRALinear.merge`).
Both dispatch to `kernels` (fast on CUDA, the `ssd.py` reference elsewhere).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..config import OmniMambaConfig
from . import kernels
from .lora import TASKS, TaskLoRALinear
from .quant import DECODE_COPIES, DecodeWeight
from .ssd import conv_state_after


class LayerState(NamedTuple):
    """One layer's recurrent state: the constant-size memory that replaces a KV cache."""

    conv: Tensor  # (b, conv_dim, d_conv): the last d_conv pre-conv inputs, oldest first (model dtype)
    ssm: Tensor  # (b, nheads, headdim, d_state), fp32


class RMSNorm(nn.Module):
    """Holds a `norm.weight` key and its eps; the math is in `ssd.py` (rms_norm_ref, gated_rms_norm_ref) and
    the fused kernels that use it."""

    def __init__(self, dim: int, eps: float, device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))


class Mamba2Mixer(nn.Module):
    def __init__(self, cfg: OmniMambaConfig, device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.d_inner, self.d_state, self.headdim = cfg.d_inner, cfg.d_state, cfg.headdim
        self.nheads, self.d_conv, self.chunk_size = cfg.nheads, cfg.d_conv, cfg.chunk_size
        # own parameters first: this is the official state_dict order (dt_bias, A_log, D, then children)
        self.dt_bias = nn.Parameter(torch.zeros(cfg.nheads, **kw))
        self.A_log = nn.Parameter(torch.zeros(cfg.nheads, **kw))
        self.D = nn.Parameter(torch.ones(cfg.nheads, **kw))
        # in_proj output lanes: z (d_inner) | x (d_inner) | B (d_state) | C (d_state) | dt (nheads)
        self.in_proj = TaskLoRALinear(cfg.d_model, cfg.d_in_proj, cfg.lora_rank, cfg.lora_scaling, **kw)
        self.conv1d = nn.Conv1d(cfg.conv_dim, cfg.conv_dim, cfg.d_conv, groups=cfg.conv_dim,
                                padding=cfg.d_conv - 1, bias=True, **kw)
        self.norm = RMSNorm(cfg.d_inner, cfg.norm_eps, **kw)
        self.out_proj = nn.Linear(cfg.d_inner, cfg.d_model, bias=False, **kw)
        # decode weights in fewer bytes, opt-in (`quantize_decode`): one copy per streamed matrix, of one kind
        self.decode_copies: nn.ModuleDict | None = None
        self.decode_kind: str | None = None

    def quantize_decode(self, kind: str = "int8") -> None:
        """Keep `kind` copies (quant.DECODE_COPIES) of the weights a decode step streams: each merged task in_proj
        and out_proj."""
        tasks = [t for t in TASKS if self.in_proj.merged_weight(t) is not None]
        if not tasks:
            raise RuntimeError("decode copies are made from merged LoRA weights: call merge_lora() first")
        rows = DECODE_COPIES[kind]
        self.decode_copies = nn.ModuleDict({**{f"in_proj_{t}": rows(self.in_proj.merged_weight(t)) for t in tasks},
                                           "out_proj": rows(self.out_proj.weight)})
        self.decode_kind = kind

    def drop_decode_copies(self) -> None:
        self.decode_copies, self.decode_kind = None, None

    def decode_in_weight(self, task: str) -> DecodeWeight:
        if self.decode_copies is not None and f"in_proj_{task}" in self.decode_copies:
            return self.decode_copies[f"in_proj_{task}"].weight(self.out_proj.weight.dtype)
        return self.in_proj.decode_weight(task)

    def decode_out_weight(self) -> DecodeWeight:
        if self.decode_copies is not None:
            return self.decode_copies["out_proj"].weight(self.out_proj.weight.dtype)
        return self.out_proj.weight

    @property
    def conv_weight(self) -> Tensor:
        return self.conv1d.weight[:, 0, :]  # (conv_dim, d_conv)

    def forward(self, u: Tensor, task: str, state: LayerState | None = None) -> Tensor:
        """u (b, l, d_model) -> (b, l, d_model). Continues from and updates `state` when given."""
        b, l, _ = u.shape
        zxbcdt = self.in_proj(u, task)  # (b, l, d_in_proj)
        z, xBC, dt_raw = zxbcdt.split([self.d_inner, self.d_inner + 2 * self.d_state, self.nheads], dim=-1)
        context = (state.conv[:, :, 1:] if state is not None
                   else xBC.new_zeros(b, xBC.shape[-1], self.d_conv - 1))  # (b, conv_dim, d_conv - 1)
        xBC_act = kernels.causal_conv(xBC, self.conv_weight, self.conv1d.bias, context)  # (b, l, conv_dim)
        if state is not None:
            state.conv.copy_(conv_state_after(xBC, context, self.d_conv))
        x, B, C = xBC_act.split([self.d_inner, self.d_state, self.d_state], dim=-1)
        A = -torch.exp(self.A_log.float())  # (h)
        y, final = kernels.ssd_scan(x.reshape(b, l, self.nheads, self.headdim), dt_raw, self.dt_bias, A,
                                    B, C, self.D, self.chunk_size, state.ssm if state is not None else None)
        if state is not None:
            state.ssm.copy_(final)
        y = kernels.gated_rms_norm(y.reshape(b, l, self.d_inner), z, self.norm.weight, self.norm.eps, u.dtype)
        return self.out_proj(y)

    def step(self, zxbcdt: Tensor, state: LayerState, gemv: kernels.Gemv = "auto") -> Tensor:
        """One token after in_proj (fused with the block's norm, see Block.step): zxbcdt (b, d_in_proj) ->
        (b, d_model), updating `state` in place."""
        g = kernels.ssm_step(zxbcdt, state.conv, self.conv_weight, self.conv1d.bias, state.ssm, self.dt_bias,
                             self.A_log, self.D, self.d_inner, self.d_state, self.headdim, gemv)  # (b, d_inner) fp32
        return kernels.gated_norm_linear(g, self.norm.weight, self.decode_out_weight(), self.norm.eps, zxbcdt,
                                         state.conv, self.d_inner, self.d_state, gemv)
