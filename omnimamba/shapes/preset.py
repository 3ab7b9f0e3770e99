"""The `shapes` preset: OmniMamba's architecture at a size that learns the shapes world and ships in 40 MB.

Same classes as the 1.3B model: the Mamba-2 backbone with task LoRA, timm DINOv2-with-registers and SigLIP
towers (the same timm architectures, shrunk through VisionConfig overrides), the LlamaGen VQ-16 design with
16 x 16 codes for 256 px, and the real 50288-row GPT-NeoX text vocabulary. The tied text table
(50288 x 256 = 12.9M parameters) is most of the weights; see `param_report` for the split.

Measured (Dec 2026, this preset): 19,413,787 parameters; bf16 safetensors with the tied heads stored once:
39,016,510 bytes. 2-core CPU, reference path, fp32, 1 thread, machine shared: 256 image tokens in ~2.3 s
(+ 0.44 s VQ decode; classifier-free guidance adds ~0.2 s); an image chat's towers + prefill + 20 tokens
in ~0.5-0.7 s. Each layer costs ~0.28 s per image: eight layers (~3.35 s with the VQ decode) miss the 3 s budget.
"""
from __future__ import annotations

import torch

from ..config import OmniMambaConfig


def shapes_config() -> OmniMambaConfig:
    """The preset itself lives with the others: OmniMambaConfig.shapes()."""
    return OmniMambaConfig.shapes()


def param_report(model: torch.nn.Module) -> dict[str, int]:
    """Parameters per top-level group (tied tensors counted once) and the total."""
    seen: set[int] = set()
    groups: dict[str, int] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        parts = name.split(".")
        key = ".".join(parts[:2]) if parts[0] in ("llm_backbone", "vision_backbone") else parts[0]
        groups[key] = groups.get(key, 0) + p.numel()
    groups["total"] = sum(groups.values())
    return groups
