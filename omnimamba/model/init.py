"""Random initialisation for models without weights (the `tiny-random` demo model, tests, benchmarks).

The Mamba-2 recipe (state-spaces/mamba `Mamba2.__init__`, `_init_weights`): A in [1, 16], dt in [1e-3, 1e-1]
log-uniform (stored as inverse softplus), D = 1, embeddings N(0, 0.02), out_proj scaled by 1/sqrt(2 n_layer).
LoRA pairs are made non-zero (unlike training's zero-init B) so the task routing is visible in outputs.
"""
from __future__ import annotations

import math

import torch

from ..checkpoint import materialize
from ..config import OmniMambaConfig
from .omnimamba import OmniMamba


@torch.no_grad()
def init_random_(model: OmniMamba, seed: int = 0) -> OmniMamba:
    """Fill every tensor of `model` with seeded random values, on the model's device. Returns the model."""
    gen = torch.Generator(device=model.device).manual_seed(seed)
    torch.manual_seed(seed)  # module reset_parameters() below draw from the global generator
    for module in [*model.vision_backbone.modules(), *model.vq.modules()]:
        if hasattr(module, "reset_parameters") and module is not model:
            module.reset_parameters()
    for name, p in model.named_parameters():
        if name.startswith(("vision_backbone.", "llm_backbone.vqvae.")):
            _tower_extra(name, p, gen)
        else:
            p.copy_(_value(name, p, model.config.n_layer, gen))
    return model


def random_model(config: OmniMambaConfig, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 seed: int = 0) -> OmniMamba:
    """A randomly initialised model built directly on `device` (no CPU-side init of 2 B parameters)."""
    with torch.device("meta"):
        model = OmniMamba(config)
    materialize(model, device)
    return init_random_(model, seed).to(dtype).eval()


def _tower_extra(name: str, p: torch.Tensor, gen: torch.Generator) -> None:
    """ViT parameters that are not owned by a resettable module (positions, prefix tokens, layer scale)."""
    last = name.rsplit(".", 1)[-1]
    if last in ("pos_embed", "cls_token", "reg_token", "latent"):
        p.copy_(0.02 * torch.randn(p.shape, device=p.device, generator=gen))
    elif last == "gamma":
        p.fill_(0.1)


def _value(name: str, p: torch.Tensor, n_layer: int, gen: torch.Generator) -> torch.Tensor:
    last = name.rsplit(".", 1)[-1]
    shape, kw = p.shape, dict(device=p.device, generator=gen)  # drawn where the model lives (fast on GPU)
    if last == "A_log":
        return torch.log(1 + 15 * torch.rand(shape, **kw))
    if last == "dt_bias":
        dt = torch.exp(torch.rand(shape, **kw) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        return dt + torch.log(-torch.expm1(-dt))  # inverse softplus
    if last == "D" or (last == "weight" and p.ndim == 1):
        return torch.ones(shape)
    if last == "bias":
        return torch.zeros(shape)
    if last in ("pos_embed", "mmu_pos_embed") or name.endswith(("embedding.weight", "word_embeddings.weight")):
        return 0.02 * torch.randn(shape, **kw)
    fan_in = math.prod(shape[1:])
    scale = 1 / math.sqrt(fan_in)
    if "lora_" in name:
        scale *= 0.5
    if name.endswith("mixer.out_proj.weight"):
        scale /= math.sqrt(2 * n_layer)
    return scale * torch.randn(shape, **kw)
