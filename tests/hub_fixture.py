"""A local Hugging Face cache holding tiny versions of every OmniMamba asset, in the real file formats."""
from __future__ import annotations

import collections
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from omnimamba import OmniMamba, OmniMambaConfig
from omnimamba.hub import ASSETS
from omnimamba.model.init import init_random_
from omnimamba.model.vision import create_tower

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def put(cache: Path, repo_id: str, filename: str, source: Path, revision: str = "main", commit: str = COMMIT) -> Path:
    """Place `source` where hf_hub_download looks for repo_id/filename@revision (models--org--name layout)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    target = repo / "snapshots" / commit / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def tiny_source_model(seed: int = 0) -> OmniMamba:
    return init_random_(OmniMamba(OmniMambaConfig.tiny()), seed=seed).eval()


def build_cache(cache: Path, tokenizer_json: Path, seed: int = 0) -> OmniMamba:
    """Write all five assets for the tiny config; returns the model whose weights they hold."""
    model = tiny_source_model(seed)
    staging = cache.parent / f"staging-{seed}"
    staging.mkdir(exist_ok=True)
    sd = model.state_dict()
    official = collections.OrderedDict((k, v.half()) for k, v in sd.items() if k.startswith(("llm_backbone.mamba.", "projector.")))
    torch.save(official, staging / "main.pth")
    put(cache, ASSETS["omnimamba"].repo_id, ASSETS["omnimamba"].filename, staging / "main.pth")
    torch.save({"model": {k[len("llm_backbone.vqvae."):]: v for k, v in sd.items() if k.startswith("llm_backbone.vqvae.")}},
               staging / "vq.pt")
    put(cache, ASSETS["vq"].repo_id, ASSETS["vq"].filename, staging / "vq.pt")
    for key, attr in (("dino", "dino_featurizer"), ("siglip", "siglip_featurizer")):
        tower = {k: v.contiguous() for k, v in getattr(model.vision_backbone, attr).state_dict().items()}
        save_file(tower, str(staging / f"{key}.safetensors"))
        put(cache, ASSETS[key].repo_id, ASSETS[key].filename, staging / f"{key}.safetensors")
    put(cache, ASSETS["tokenizer"].repo_id, ASSETS["tokenizer"].filename, tokenizer_json)
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
