"""Random initialisation for models without weights (the `tiny-random` demo model, tests, benchmarks).

The Mamba-2 recipe (state-spaces/mamba `Mamba2.__init__`, `_init_weights`): A in [1, 16], dt in [1e-3, 1e-1]
log-uniform (stored as inverse softplus), D = 1, embeddings N(0, 0.02), out_proj scaled by 1/sqrt(2 n_layer).
LoRA pairs are made non-zero (unlike training's zero-init B) so the task routing is visible in outputs.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .omnimamba import OmniMamba


@torch.no_grad()
def init_random_(model: OmniMamba, seed: int = 0) -> OmniMamba:
    """Fill every Mamba/projector tensor of `model` with seeded random values (vision towers and VQ keep
    their own constructor init, reseeded). Returns the model."""
    gen = torch.Generator().manual_seed(seed)
    cfg = model.config
    for name, p in model.named_parameters():
        if name.startswith(("vision_backbone.", "llm_backbone.vqvae.")):
            continue
        p.copy_(_value(name, p, cfg.n_layer, gen))
    torch.manual_seed(seed)  # timm / VQ re-init below uses the global generator
    for module in [*model.vision_backbone.modules(), *model.vq.modules()]:
        if isinstance(module, (nn.Linear, nn.Conv2d)) and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return model


def _value(name: str, p: torch.Tensor, n_layer: int, gen: torch.Generator) -> torch.Tensor:
    last = name.rsplit(".", 1)[-1]
    shape = p.shape
    if last == "A_log":
        return torch.log(1 + 15 * torch.rand(shape, generator=gen))
    if last == "dt_bias":
        dt = torch.exp(torch.rand(shape, generator=gen) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        return dt + torch.log(-torch.expm1(-dt))  # inverse softplus
    if last == "D" or (last == "weight" and p.ndim == 1):
        return torch.ones(shape)
    if last == "bias":
        return torch.zeros(shape)
    if last in ("pos_embed", "mmu_pos_embed") or name.endswith(("embedding.weight", "word_embeddings.weight")):
        return 0.02 * torch.randn(shape, generator=gen)
    fan_in = math.prod(shape[1:])
    scale = 1 / math.sqrt(fan_in)
    if "lora_" in name:
        scale *= 0.5
    if name.endswith("mixer.out_proj.weight"):
        scale /= math.sqrt(2 * n_layer)
    return scale * torch.randn(shape, generator=gen)
