"""OmniMamba: one Mamba-2 backbone for image chat (MMU) and text-to-image (T2I) (reference §1, §7).

Module tree = official state_dict keys:
    vision_backbone.{siglip_featurizer, dino_featurizer}   timm towers        (weights: timm / Hub)
    llm_backbone.vqvae                                       LlamaGen VQ-16     (weights: vq_ds16_t2i.pt)
    llm_backbone.mamba.{backbone, img_head, lm_head}         the backbone       (weights: OmniMamba-1.3b.pth)
    projector                                                2176 -> 2048 MLP   (weights: OmniMamba-1.3b.pth)

Sequences (positions are absolute indices into the task's own table):
    MMU:  [mmu][soi] + image (729 projected patches) + [eoi][sot] + text        + mmu_pos_embed[0:L]
    T2I:  caption_embed(text_embed(72-id prefix)) ++ image-token embeddings     + pos_embed[0:L]
This module offers the teacher-forced forwards and the embedding pieces; decoding lives in `generation.py`.
"""
from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from .. import checkpoint
from ..config import EOI_ID, MMU_ID, SOI_ID, SOT_ID, OmniMambaConfig
from .backbone import FusedMLPProjector, InferenceState, MambaLM
from .quant import DECODE_COPIES
from .vision import PixelValues, VisionBackbone
from .vq import VQModel



class LLMBackbone(nn.Module):
    """`llm_backbone`: the VQ tokenizer and the language/image model (registered in that order)."""

    def __init__(self, cfg: OmniMambaConfig, device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.vqvae = VQModel(cfg.vq)
        self.mamba = MambaLM(cfg, device=device, dtype=dtype)


class OmniMamba(nn.Module):
    def __init__(self, config: OmniMambaConfig | None = None):
        super().__init__()
        self.config = cfg = config or OmniMambaConfig.official()
        self.vision_backbone = VisionBackbone(cfg.vision)
        self.llm_backbone = LLMBackbone(cfg)
        self.projector = FusedMLPProjector(self.vision_backbone.embed_dim, cfg.d_model, cfg.projector_mult)

    # ----- conveniences -----
    @property
    def mamba(self) -> MambaLM:
        return self.llm_backbone.mamba

    @property
    def backbone(self):
        return self.llm_backbone.mamba.backbone

    @property
    def vq(self) -> VQModel:
        return self.llm_backbone.vqvae

    @property
    def device(self) -> torch.device:
        return self.backbone.embedding.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.backbone.embedding.weight.dtype

    def new_state(self, batch_size: int = 1) -> InferenceState:
        return InferenceState.zeros(self.config, batch_size, self.device, self.dtype)

    def merge_lora(self, tasks: tuple[str, ...] = ("mmu", "t2i"), release_unmerged: bool = False) -> "OmniMamba":
        """Precompute per-task in_proj weights (W + 4 B A): same function, one matmul per decode step.
        release_unmerged: inference only, drop W and the LoRA factors afterwards (see TaskLoRALinear.merge)."""
        for layer in self.backbone.layers:
            layer.mixer.in_proj.merge(tasks, release_unmerged)
        return self

    def quantize_decode(self, kind: str = "int8") -> "OmniMamba":
        """Opt-in decode weights in fewer bytes (model/quant.py), used by every decode step from now on (prefill
        and training keep the model's weights). Call after merge_lora() and after choosing dtype and device.
        "int8": each layer's merged in_proj and out_proj as int8 rows with per-row scales (1.3 GB more memory
        for the 1.3B). "bf16": bf16 copies for an fp32 model on the CPU (a bf16 model is that already; on a GPU,
        load the model in bf16)."""
        if kind not in DECODE_COPIES:
            raise ValueError(f"decode copies are one of {' or '.join(map(repr, DECODE_COPIES))}, not {kind!r}")
        if kind == "bf16" and (self.dtype != torch.float32 or self.device.type != "cpu"):
            raise ValueError(f"bf16 decode copies are for an fp32 model on the CPU; this one is {self.dtype} on "
                             f"{self.device.type} (on a GPU, load the model in bf16)")
        for layer in self.backbone.layers:
            layer.mixer.quantize_decode(kind)
        return self

    def holds_bf16_values(self) -> bool:
        """Every streamed decode matrix that bf16 copies would keep as they are (each layer's out_proj; the merged
        in_proj is rounded once more) is made of bf16 values: a model trained and shipped in bf16."""
        return all(torch.equal(w, w.to(torch.bfloat16).to(w.dtype))
                   for w in (layer.mixer.out_proj.weight.detach() for layer in self.backbone.layers))

    def unquantize_decode(self) -> "OmniMamba":
        """Drop the decode copies: decode steps read the model's own weights again."""
        for layer in self.backbone.layers:
            layer.mixer.drop_decode_copies()
        return self

    @property
    def decode_copies(self) -> str | None:
        """The kind of decode copies in use ("int8", "bf16") or None."""
        return self.backbone.layers[0].mixer.decode_kind

    @property
    def decode_int8(self) -> bool:
        return self.decode_copies == "int8"

    def unmerge_lora(self) -> "OmniMamba":
        for layer in self.backbone.layers:
            if layer.mixer.in_proj.weight is not None:
                layer.mixer.in_proj.unmerge()
        return self

    @property
    def lora_merged(self) -> bool:
        return self.backbone.layers[0].mixer.in_proj.merged_weight("mmu") is not None

    # ----- weights -----
    def load_official_state_dict(self, source: "str | os.PathLike | checkpoint.StateDict") -> checkpoint.LoadReport:
        """Load the official layout (e.g. OmniMamba-1.3b.pth: fp16 values, cast to this model's dtype), or a
        trained folder / model.safetensors written by omnimamba.train (same keys, tied heads left out).

        Strict: anything missing or unexpected raises CheckpointError naming the keys. The vision towers and
        the VQ may be absent as whole groups (they have their own checkpoints and loaders).
        """
        if isinstance(source, (str, os.PathLike)):
            folder_file = os.path.join(source, "model.safetensors")
            sd = checkpoint.read_state_dict(folder_file if os.path.isdir(source) else source)
        else:
            sd = source
        report = checkpoint.load_into(self, sd, checkpoint.EXTERNAL_GROUPS)
        self.unmerge_lora()  # merged weights derive from the old values
        return report

    def load_vq_state_dict(self, source: "str | os.PathLike | checkpoint.StateDict") -> checkpoint.LoadReport:
        """LlamaGen VQ-16 weights: vq_ds16_t2i.pt ({"model": state_dict}) or a plain state_dict."""
        sd = checkpoint.read_state_dict(source, key="model") if isinstance(source, (str, os.PathLike)) else source
        return checkpoint.load_into(self.vq, sd)

    def load_vision_state_dicts(self, dino: checkpoint.StateDict, siglip: checkpoint.StateDict) -> None:
        """timm-layout tower weights (after timm's checkpoint filter: DINOv2 positions already at 27 x 27)."""
        checkpoint.load_into(self.vision_backbone.dino_featurizer, dino)
        checkpoint.load_into(self.vision_backbone.siglip_featurizer, siglip)

    # ----- embeddings -----
    def image_features(self, pixel_values: PixelValues) -> Tensor:
        """Vision towers + projector: (b, 729, d_model) in the backbone dtype."""
        feats = self.vision_backbone({k: v.to(self.device) for k, v in pixel_values.items()})
        return self.projector(feats.to(self.projector.projector[0].weight.dtype)).to(self.dtype)

    def embed_mmu(self, text_ids: Tensor, image_embeds: Tensor | None, start: int = 0) -> Tensor:
        """[mmu][soi] image [eoi][sot] text -> positioned embeddings (b, 733 + n, d).

        text_ids (b, n); image_embeds (b, 729, d), or None for a chat without an image, which gets the zero
        image block that training used for text-only samples.
        """
        b = text_ids.shape[0]
        specials = torch.tensor([MMU_ID, SOI_ID, EOI_ID, SOT_ID], device=text_ids.device).expand(b, 4)
        emb = self.backbone.embedding(torch.cat([specials, text_ids], dim=1))  # (b, 4 + n, d)
        if image_embeds is None:
            image_embeds = emb.new_zeros(b, self.config.vision.num_patches, emb.shape[-1])
        seq = torch.cat([emb[:, :2], image_embeds.to(emb.dtype), emb[:, 2:]], dim=1)
        return self.backbone.add_positions(seq, "mmu", start)

    def embed_text(self, text_ids: Tensor, start: int) -> Tensor:
        """Continuation of an image chat (a new turn): text embeddings at positions [start, start + n)."""
        return self.backbone.add_positions(self.backbone.embedding(text_ids), "mmu", start)

    def embed_t2i_prefix(self, prefix_ids: Tensor) -> Tensor:
        """72-id caption prefix -> caption_embed(text embedding) + pos_embed[0:72]."""
        return self.backbone.add_positions(self.backbone.caption_embed(self.backbone.embedding(prefix_ids)), "t2i", 0)

    def embed_image_tokens(self, image_ids: Tensor, start: int) -> Tensor:
        """VQ codes (b, n) -> project_in(table row) + pos_embed[start:start + n]."""
        return self.backbone.add_positions(self.backbone.img_embeddings(image_ids), "t2i", start)

    # ----- teacher-forced forwards (the training computations) -----
    def forward_mmu(self, text_ids: Tensor, pixel_values: PixelValues | None = None,
                    image_embeds: Tensor | None = None, first_row: int = 0) -> Tensor:
        """Text logits (b, 733 + n - first_row, 50288) over [mmu][soi] image [eoi][sot] text, rows first_row..;
        row p predicts token p + 1. Training starts at the [sot] row: the image block's rows carry no loss, and
        their 50288-wide head would be most of the step's head work."""
        if image_embeds is None and pixel_values is not None:
            image_embeds = self.image_features(pixel_values)
        hidden = self.backbone(self.embed_mmu(text_ids, image_embeds), "mmu")
        return self.mamba.head(hidden[:, first_row:], "mmu")

    def forward_t2i(self, prefix_ids: Tensor, image_ids: Tensor, first_row: int = 0) -> Tensor:
        """Image logits (b, 72 + n - first_row, 16384) over prefix ++ image tokens, rows first_row..; rows 71..
        predict image_ids[0..] (training starts there: the caption's rows carry no loss)."""
        seq = torch.cat([self.embed_t2i_prefix(prefix_ids),
                         self.embed_image_tokens(image_ids, prefix_ids.shape[1])], dim=1)
        return self.mamba.head(self.backbone(seq, "t2i")[:, first_row:], "t2i")

    def forward_text(self, ids: Tensor) -> Tensor:
        """Plain language model (text-only training): text logits (b, n, 50288) over `ids`, no position table
        and no task LoRA (the Mamba-2 LM the backbone starts from); row p predicts token p + 1."""
        return self.mamba.head(self.backbone(self.backbone.embedding(ids), None), "mmu")

    def decode_images(self, image_ids: Tensor) -> Tensor:
        """VQ codes (b, 256) -> images (b, 3, 256, 256), nominally in [-1, 1] (not clamped)."""
        return self.vq.decode_codes(image_ids)
