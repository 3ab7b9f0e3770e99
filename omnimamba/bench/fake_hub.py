"""A Hugging Face cache holding stand-ins of every asset, in the real formats, made from a given model: the
start-up benchmark times loading the official-size one, and the tests load a tiny one offline."""
from __future__ import annotations

import collections
import shutil
from pathlib import Path
from typing import Callable

import torch

from ..hub import ASSETS
from ..model import OmniMamba

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def put(cache: Path, repo_id: str, filename: str, source: Path | Callable[[Path], None], revision: str = "main",
        commit: str = COMMIT) -> Path:
    """Place a file where hf_hub_download looks for repo_id/filename@revision (the models--org--name layout):
    a copy of `source`, or what `source(target)` writes."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    target = repo / "snapshots" / commit / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    if callable(source):
        source(target)
    else:
        shutil.copyfile(source, target)
    return target


def write_assets(cache: Path, model: OmniMamba, dino_grid: int | None = None) -> float:
    """`model`'s weights as the four Hub assets: the official .pth (fp16 backbone and projector), LlamaGen's
    {"model": ...} VQ file, and the two timm towers as safetensors. `dino_grid` gives the DINOv2 tower a
    position table of that many rows and columns (the released one is 37 x 37, resampled on load).
    Returns the gigabytes written."""
    from safetensors.torch import save_file

    sd = model.state_dict()
    official = collections.OrderedDict((k, v.half().cpu()) for k, v in sd.items()
                                       if k.startswith(("llm_backbone.mamba.", "projector.")))
    put(cache, ASSETS["omnimamba"].repo_id, ASSETS["omnimamba"].filename, lambda p: torch.save(official, p))
    vq = {k[len("llm_backbone.vqvae."):]: v.cpu() for k, v in sd.items() if k.startswith("llm_backbone.vqvae.")}
    put(cache, ASSETS["vq"].repo_id, ASSETS["vq"].filename, lambda p: torch.save({"model": vq}, p))
    for key, prefix in (("dino", "vision_backbone.dino_featurizer."), ("siglip", "vision_backbone.siglip_featurizer.")):
        tower = {k[len(prefix):]: v.float().cpu().contiguous() for k, v in sd.items() if k.startswith(prefix)}
        if key == "dino" and dino_grid is not None:
            tower["pos_embed"] = 0.02 * torch.randn(1, dino_grid * dino_grid, tower["pos_embed"].shape[-1])
        put(cache, ASSETS[key].repo_id, ASSETS[key].filename, lambda p, t=tower: save_file(t, str(p)))
    return sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 1e9
