"""Blocks, embeddings, position tables and heads of OmniMamba's Mamba-2 backbone (reference §2.3-2.5, §3, §6).

Module attribute names are the official state_dict keys (`llm_backbone.mamba.backbone.*`, `img_head`,
`lm_head`), in the official registration order, so the released checkpoint loads with no renaming.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import OmniMambaConfig
from . import kernels
from .lora import check_task
from .mamba2 import LayerState, Mamba2Mixer, RMSNorm


@dataclass
class InferenceState:
    """Recurrent state of all layers for a batch: constant size, whatever the sequence length."""

    conv: Tensor  # (n_layer, b, conv_dim, d_conv), model dtype
    ssm: Tensor  # (n_layer, b, nheads, headdim, d_state), fp32
    seqlen: int = 0  # tokens consumed so far (= the next absolute position)

    @classmethod
    def zeros(cls, cfg: OmniMambaConfig, batch: int, device: torch.device | str, dtype: torch.dtype) -> "InferenceState":
        conv = torch.zeros(cfg.n_layer, batch, cfg.conv_dim, cfg.d_conv, device=device, dtype=dtype)
        ssm = torch.zeros(cfg.n_layer, batch, cfg.nheads, cfg.headdim, cfg.d_state, device=device, dtype=torch.float32)
        return cls(conv, ssm)

    def layer(self, i: int) -> LayerState:
        return LayerState(self.conv[i], self.ssm[i])

    @property
    def batch_size(self) -> int:
        return self.conv.shape[1]

    def clone(self) -> "InferenceState":
        return InferenceState(self.conv.clone(), self.ssm.clone(), self.seqlen)

    def copy_(self, other: "InferenceState") -> "InferenceState":
        self.conv.copy_(other.conv)
        self.ssm.copy_(other.ssm)
        self.seqlen = other.seqlen
        return self


class FusedMLPProjector(nn.Module):
    """Linear -> GELU -> Linear -> GELU -> Linear (exact GELU); the Sequential is named `projector`."""

    def __init__(self, in_dim: int, out_dim: int, hidden_mult: int = 4,
                 device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        hidden = hidden_mult * in_dim
        self.projector = nn.Sequential(nn.Linear(in_dim, hidden, **kw), nn.GELU(), nn.Linear(hidden, out_dim, **kw),
                                       nn.GELU(), nn.Linear(out_dim, out_dim, **kw))

    def forward(self, x: Tensor) -> Tensor:
        return self.projector(x)


class ImageTokenEmbedding(nn.Module):
    """VQ token -> raw table row (`word_embeddings`, also the tied `img_head`) -> `project_in` MLP."""

    def __init__(self, cfg: OmniMambaConfig, device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.image_vocab_size, cfg.d_model, device=device, dtype=dtype)
        self.project_in = FusedMLPProjector(cfg.d_model, cfg.d_model, 4, device=device, dtype=dtype)

    def forward(self, ids: Tensor) -> Tensor:
        return self.project_in(self.word_embeddings(ids))


class CaptionMLP(nn.Module):
    def __init__(self, dim: int, device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, dim, bias=False, device=device, dtype=dtype)
        self.fc2 = nn.Linear(dim, dim, bias=False, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class CaptionEmbedder(nn.Module):
    """The T2I prefix goes through this MLP after the text embedding (all 72 positions, special tokens too)."""

    def __init__(self, dim: int, device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.cap_proj = CaptionMLP(dim, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.cap_proj(x)


class Block(nn.Module):
    """Pre-norm block with a separate fp32 residual stream: r = r + h; h = mixer(RMSNorm(r))."""

    def __init__(self, cfg: OmniMambaConfig, device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps, device=device, dtype=dtype)
        self.mixer = Mamba2Mixer(cfg, device=device, dtype=dtype)

    def forward(self, hidden: Tensor, residual: Tensor | None, task: str,
                state: LayerState | None) -> tuple[Tensor, Tensor]:
        """hidden (b, l, d); residual (b, l, d) fp32, None for the first block. Returns (mixer out, residual)."""
        normed, residual = kernels.add_rms_norm(hidden, residual, self.norm.weight, self.norm.eps)
        return self.mixer(normed, task, state), residual

    def step(self, hidden: Tensor, residual_in: Tensor | None, residual_out: Tensor, task: str,
             state: LayerState, gemv: kernels.Gemv = "auto") -> Tensor:
        """One token: hidden (b, d); residual_in (b, d) fp32 or None for the first block; residual_out receives
        the updated residual. Returns the mixer output (b, d)."""
        zxbcdt = kernels.norm_linear(hidden, residual_in, residual_out, self.norm.weight,
                                     self.mixer.decode_in_weight(task), self.norm.eps, gemv=gemv)
        return self.mixer.step(zxbcdt, state, gemv)


class MixerBackbone(nn.Module):
    """`llm_backbone.mamba.backbone`: position tables, the three embedders, 48 blocks, final norm."""

    def __init__(self, cfg: OmniMambaConfig, device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.t2i_positions, cfg.d_model, **kw))  # T2I: 329 rows
        self.mmu_pos_embed = nn.Parameter(torch.zeros(1, cfg.mmu_positions, cfg.d_model, **kw))  # MMU: 1500 rows
        self.img_embeddings = ImageTokenEmbedding(cfg, **kw)
        self.caption_embed = CaptionEmbedder(cfg.d_model, **kw)
        self.embedding = nn.Embedding(cfg.padded_text_vocab, cfg.d_model, **kw)
        self.layers = nn.ModuleList(Block(cfg, **kw) for _ in range(cfg.n_layer))
        self.norm_f = RMSNorm(cfg.d_model, cfg.norm_eps, **kw)

    def position_table(self, task: str) -> Tensor:
        return self.mmu_pos_embed[0] if check_task(task) == "mmu" else self.pos_embed[0]

    def add_positions(self, x: Tensor, task: str, start: int) -> Tensor:
        """x (b, l, d) + the task's position rows [start, start + l); a clear error past the table."""
        table = self.position_table(task)
        end = start + x.shape[1]
        if end > table.shape[0]:
            raise PositionLimitError(task, end, table.shape[0])
        return x + table[start:end]

    def forward(self, x: Tensor, task: str, state: "InferenceState | None" = None) -> Tensor:
        """x (b, l, d) positioned embeddings -> final-normed hidden (b, l, d). Continues/updates `state`."""
        hidden, residual = x.contiguous(), None
        for i, layer in enumerate(self.layers):
            hidden, residual = layer(hidden, residual, task, state.layer(i) if state is not None else None)
        return kernels.add_rms_norm(hidden, residual, self.norm_f.weight, self.norm_f.eps)[0]

    def step(self, x: Tensor, task: str, state: "InferenceState",
             gemv: kernels.Gemv = "auto") -> tuple[Tensor, Tensor]:
        """x (b, d) one positioned embedding per row -> (last mixer output, fp32 residual) before norm_f;
        updates `state` in place. The residual alternates between two buffers (see kernels.norm_linear)."""
        buffers = [torch.empty_like(x, dtype=torch.float32) for _ in range(2)]
        hidden, residual = x, None
        for i, layer in enumerate(self.layers):
            hidden = layer.step(hidden, residual, buffers[i % 2], task, state.layer(i), gemv)
            residual = buffers[i % 2]
        return hidden, residual


class MambaLM(nn.Module):
    """`llm_backbone.mamba`: the backbone and its two tied heads (text 50288 ids, image 16384 codes)."""

    def __init__(self, cfg: OmniMambaConfig, device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.backbone = MixerBackbone(cfg, **kw)
        self.img_head = nn.Linear(cfg.d_model, cfg.image_vocab_size, bias=False, **kw)
        self.lm_head = nn.Linear(cfg.d_model, cfg.padded_text_vocab, bias=False, **kw)
        self.tie_weights()
        self.decode_gemv: kernels.Gemv = "auto"  # how a decode step multiplies by its weights (kernels/decode.py)

    def tie_weights(self) -> None:
        """img_head is the raw image-token table (before project_in); lm_head is the text embedding."""
        self.img_head.weight = self.backbone.img_embeddings.word_embeddings.weight
        self.lm_head.weight = self.backbone.embedding.weight

    def head_weight(self, task: str) -> Tensor:
        return self.lm_head.weight if check_task(task) == "mmu" else self.img_head.weight

    def head(self, hidden: Tensor, task: str) -> Tensor:
        return F.linear(hidden, self.head_weight(task))

    def step_logits(self, x: Tensor, task: str, state: InferenceState) -> Tensor:
        """One decode step: positioned embeddings (b, d) -> fp32 logits (b, vocab); updates `state`."""
        hidden, residual = self.backbone.step(x, task, state, self.decode_gemv)
        norm_f = self.backbone.norm_f
        return kernels.norm_linear(hidden, residual, None, norm_f.weight, self.head_weight(task), norm_f.eps,
                                   out_dtype=torch.float32, gemv=self.decode_gemv)


class PositionLimitError(ValueError):
    """A sequence would run past a position table (1500 rows for image chat, 329 for text-to-image)."""

    def __init__(self, task: str, needed: int, available: int):
        self.task, self.needed, self.available = task, needed, available
        name = "mmu_pos_embed" if task == "mmu" else "pos_embed"
        super().__init__(f"{task}: sequence needs {needed} positions but {name} has {available} rows; "
                         f"start a new conversation or ask for fewer tokens")
