"""OmniMambaConfig: the few free numbers of the model; every other size is derived.

Presets are named data: `OmniMambaConfig.official()` is the released OmniMamba-1.3B, `OmniMambaConfig.tiny()`
is the same architecture at toy sizes for CPU tests. Sizes below cite reference §2 (state_dict shapes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

# Token ids fixed by the checkpoint: <|endoftext|> of GPT-NeoX-20B, then [PAD] and the nine task tokens that
# follow its 50277-id base vocabulary (reference §4.1).
EOS_ID = 0
PAD_ID, SOI_ID, EOI_ID, SOT_ID, EOT_ID, T2I_ID, MMU_ID, SOC_ID, EOC_ID, LVG_ID = range(50277, 50287)

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}  # names the CLI and app accept

@dataclass(frozen=True)
class VisionConfig:
    """The two timm towers of the MMU feature extractor (reference §5).

    `*_overrides` are passed to `timm.create_model` on top of the named architecture, so the tiny preset is the
    same timm class with the same flavour (registers, MAP pool, layer scale) at toy sizes.
    """

    image_size: int = 384
    dino_model: str = "vit_large_patch14_reg4_dinov2"
    siglip_model: str = "vit_so400m_patch14_siglip_384"
    dino_overrides: dict[str, Any] = field(default_factory=dict)
    siglip_overrides: dict[str, Any] = field(default_factory=dict)
    dino_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    dino_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    siglip_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    siglip_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    patch_size: int = 14

    @property
    def num_patches(self) -> int:
        """Image positions in the MMU sequence: 27 x 27 = 729 at 384 px (the last 6 px are never seen)."""
        return (self.image_size // self.patch_size) ** 2


@dataclass(frozen=True)
class VQConfig:
    """LlamaGen VQ-16 (reference §2.7, §6)."""

    codebook_size: int = 16384
    codebook_dim: int = 8
    z_channels: int = 256
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


@dataclass(frozen=True)
class OmniMambaConfig:
    # Mamba-2 backbone
    d_model: int = 2048
    n_layer: int = 48
    d_state: int = 128
    headdim: int = 64
    expand: int = 2
    d_conv: int = 4
    ngroups: int = 1
    chunk_size: int = 256
    norm_eps: float = 1e-5
    # vocabularies and sequence layout
    text_vocab_size: int = 50277  # GPT-NeoX-20B base vocabulary; [PAD] and 9 task tokens follow it
    num_added_tokens: int = 10
    pad_vocab_size_multiple: int = 16
    image_grid: int = 16  # 16 x 16 VQ tokens per image
    t2i_prefix_len: int = 72  # [t2i][sot] + 68 caption ids + [eot][soi]
    mmu_positions: int = 1500  # rows of mmu_pos_embed: the hard limit of an image chat
    # task LoRA on every in_proj
    lora_rank: int = 8
    lora_alpha: int = 32
    # MMU projector width factor (FusedMLPProjector hidden = 4 x input)
    projector_mult: int = 4
    vision: VisionConfig = field(default_factory=VisionConfig)
    vq: VQConfig = field(default_factory=VQConfig)

    def __post_init__(self) -> None:
        if self.d_inner % self.headdim:
            raise ValueError(f"d_inner {self.d_inner} must be a multiple of headdim {self.headdim}")
        if self.t2i_prefix_len < 5:
            raise ValueError("t2i_prefix_len must leave room for [t2i][sot] ... [eot][soi]")

    # --- derived sizes (reference §2.1) ---
    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model  # 4096

    @property
    def nheads(self) -> int:
        return self.d_inner // self.headdim  # 64

    @property
    def conv_dim(self) -> int:
        return self.d_inner + 2 * self.ngroups * self.d_state  # 4352: x | B | C

    @property
    def d_in_proj(self) -> int:
        return 2 * self.d_inner + 2 * self.ngroups * self.d_state + self.nheads  # 8512: z | x | B | C | dt

    @property
    def padded_text_vocab(self) -> int:
        m = self.pad_vocab_size_multiple
        return -(-self.text_vocab_size // m) * m  # 50277 -> 50288 rows (ids 50277..50286 are the added tokens)

    @property
    def image_vocab_size(self) -> int:
        return self.vq.codebook_size

    @property
    def num_image_tokens(self) -> int:
        return self.image_grid**2  # 256

    @property
    def caption_len(self) -> int:
        return self.t2i_prefix_len - 4  # 68

    @property
    def t2i_positions(self) -> int:
        return self.num_image_tokens + self.t2i_prefix_len + 1  # 329 (the last row is the training-only <|eoi|>)

    @property
    def lora_scaling(self) -> float:
        return self.lora_alpha / self.lora_rank  # 4.0

    @property
    def image_size(self) -> int:
        """Side of a generated image in pixels (256)."""
        return self.image_grid * self.vq.downsample

    # --- presets ---
    @classmethod
    def official(cls) -> "OmniMambaConfig":
        """OmniMamba-1.3B as released (hustvl/OmniMamba, config_stage2.yaml)."""
        return cls()

    @classmethod
    def tiny(cls) -> "OmniMambaConfig":
        """The same code path at toy sizes (CPU tests). Keeps the real text vocabulary so real token ids work."""
        return cls(
            d_model=64, n_layer=2, d_state=16, headdim=16, chunk_size=8, image_grid=8, t2i_prefix_len=16,
            mmu_positions=160, projector_mult=2,
            vision=VisionConfig(
                image_size=28,
                dino_overrides=dict(embed_dim=32, depth=3, num_heads=2),
                siglip_overrides=dict(embed_dim=48, depth=3, num_heads=2, mlp_ratio=2.0),
            ),
            vq=VQConfig(codebook_size=64, ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1, z_channels=32),
        )

    @classmethod
    def shapes(cls) -> "OmniMambaConfig":
        """The small model trained here on the shapes world (omnimamba/shapes, docs/shapes-model.md): the same
        classes at a size that ships in 40 MB of bf16 (the tied 50288 x 384 text table stored with its shared
        unused row once, packed_rows.py) and draws an image in under 3 s on a 2-core CPU; the towers see 224 px
        (16 x 16 patches); the VQ has 1024 codes, 16 x 16 per image."""
        return cls(
            d_model=384, n_layer=6, d_state=64, headdim=64, chunk_size=64, t2i_prefix_len=32, mmu_positions=448,
            projector_mult=2,
            vision=VisionConfig(
                image_size=224, dino_model="vit_small_patch14_reg4_dinov2", siglip_model="vit_so400m_patch14_siglip_224",
                dino_overrides=dict(embed_dim=96, depth=4, num_heads=2),
                siglip_overrides=dict(embed_dim=96, depth=4, num_heads=2, mlp_ratio=4.0),
            ),
            vq=VQConfig(codebook_size=1024, codebook_dim=8, z_channels=64, ch=32, ch_mult=(1, 1, 1, 2, 2),
                        num_res_blocks=1),
        )

    @classmethod
    def from_name(cls, name: str) -> "OmniMambaConfig":
        presets = {"omnimamba-1.3b": cls.official, "tiny": cls.tiny, "shapes": cls.shapes}
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
        return presets[name]()
