"""A local Hugging Face cache holding tiny versions of every OmniMamba asset, in the real file formats."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from omnimamba import OmniMamba, OmniMambaConfig
from omnimamba.bench.fake_hub import put, write_assets
from omnimamba.model.init import init_random_
from omnimamba.model.vision import create_tower

__all__ = ["build_cache", "dino_checkpoint_with_larger_grid", "put", "tiny_source_model"]


def tiny_source_model(seed: int = 0) -> OmniMamba:
    return init_random_(OmniMamba(OmniMambaConfig.tiny()), seed=seed).eval()


def build_cache(cache: Path, seed: int = 0) -> OmniMamba:
    """Write all four weight assets for the tiny config; returns the model whose weights they hold."""
    model = tiny_source_model(seed)
    write_assets(cache, model)
    return model


def dino_checkpoint_with_larger_grid(model: OmniMamba, path: Path) -> dict:
    """A DINOv2 tower file whose position table is 3x3 (like the real 37x37 one) for a 2x2 model."""
    cfg = model.config.vision
    big = create_tower(cfg.dino_model, 42, cfg.dino_overrides)
    big.load_state_dict({k: v for k, v in model.vision_backbone.dino_featurizer.state_dict().items()
                         if k != "pos_embed"} | {"pos_embed": torch.randn(1, 9, big.embed_dim)})
    sd = {k: v.contiguous() for k, v in big.state_dict().items()}
    save_file(sd, str(path))
    return sd
