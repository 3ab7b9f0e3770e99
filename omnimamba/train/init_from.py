"""Where a run's weights start (TrainConfig.init): a list of sources applied in order over the training init.

    "hub"                 the released OmniMamba-1.3B with its vision towers and VQ (Hub cache, converted once)
    DIR / FILE            a trained folder or model.safetensors (omnimamba.train), or an official-layout .pth
    "hub-towers"          only the pretrained vision towers (timm) and the VQ (LlamaGen): stage 1 from scratch
    "mamba2:REPO|FILE"    a Mamba-2 language model (state-spaces layout, e.g. state-spaces/mamba2-1.3b): the
                          blocks, text table and final norm the official stage 1 starts from (reference §12)

The first whole-model source (hub, DIR, FILE) is loaded strictly; each later one contributes only the tensors it
trained (its `trained_keys`), so `[stage1-mmu DIR, stage1-t2i DIR]` merges the two stage-1 runs for stage 2.
"hub-towers" and "mamba2:" copy what they hold wherever they appear.
"""
from __future__ import annotations

import logging

import torch
from torch import Tensor

from .. import checkpoint
from ..model import OmniMamba
from . import checkpoints

log = logging.getLogger(__name__)

MAMBA2_PREFIX = "llm_backbone.mamba."  # a state-spaces MambaLMHeadModel's keys sit under this prefix here


@torch.no_grad()
def load_init(model: OmniMamba, sources: tuple[str, ...]) -> None:
    whole_loaded = False
    for source in sources:
        if source == "hub-towers":
            copy_subset(model, hub_towers(model))
        elif source.startswith("mamba2:"):
            copy_subset(model, mamba2_lm(source.removeprefix("mamba2:")))
        elif not whole_loaded:
            report = model.load_official_state_dict(_whole(source))
            log.info("init from %s: %s", source, report.summary())
            whole_loaded = True
        else:
            keys = checkpoints.trained_keys(source) if checkpoints.is_trained_checkpoint(source) else []
            if not keys:
                raise checkpoint.CheckpointError(f"init {source}: after a whole model, a source must be a trained "
                                                 f"checkpoint listing its trained_keys (it adds just those)")
            sd = checkpoints.read(source)[0]
            copy_subset(model, {k: sd[k] for k in keys})


def _whole(source: str) -> dict[str, Tensor]:
    if source == "hub":
        from ..hub import load_model

        return load_model(device="cpu", dtype=torch.float32)[0].state_dict()
    if checkpoints.is_trained_checkpoint(source):
        return checkpoints.read(source)[0]
    return checkpoint.read_state_dict(checkpoints.model_file(source))


def hub_towers(model: OmniMamba) -> dict[str, Tensor]:
    """Pretrained DINOv2 + SigLIP (as timm loads them) and the LlamaGen VQ, under the model's keys."""
    from .. import hub

    paths = {k: hub.fetch(hub.ASSETS[k]) for k in ("vq", "dino", "siglip")}
    sd = {f"llm_backbone.vqvae.{k}": v for k, v in checkpoint.read_state_dict(paths["vq"], key="model").items()}
    for name, key in (("dino_featurizer", "dino"), ("siglip_featurizer", "siglip")):
        tower = hub._timm_tower_state(model.config, key, paths[key])
        sd.update({f"vision_backbone.{name}.{k}": v for k, v in tower.items()})
    return sd


def mamba2_lm(source: str) -> dict[str, Tensor]:
    """A state-spaces Mamba-2 LM (a Hub repo id or a local pytorch_model.bin), keys moved under MAMBA2_PREFIX."""
    from pathlib import Path

    from .. import hub

    path = Path(source).expanduser()
    if not path.is_file():
        path = hub.fetch(hub.Asset("Mamba-2 language model", source, "pytorch_model.bin"))
    sd = checkpoint.read_state_dict(path)
    return {MAMBA2_PREFIX + k: v for k, v in sd.items() if k != "lm_head.weight"}  # lm_head is the text table


def copy_subset(model: OmniMamba, sd: dict[str, Tensor]) -> None:
    """Copy `sd` into the model's tensors of the same names; every key must exist with the same shape."""
    params = dict(model.named_parameters()) | dict(model.named_buffers())
    unknown = [k for k in sd if k not in params]
    wrong = [f"{k}: {list(v.shape)} vs {list(params[k].shape)}" for k, v in sd.items()
             if k in params and v.shape != params[k].shape]
    if unknown or wrong:
        raise checkpoint.CheckpointError(f"init source does not fit this model: unknown keys {unknown[:6]}, "
                                         f"wrong shapes {wrong[:6]}")
    for key, value in sd.items():
        params[key].copy_(value)
    log.info("init: copied %d tensors", len(sd))
