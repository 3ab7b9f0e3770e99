"""The `shapes` preset: OmniMamba's architecture at a size that learns the shapes world and ships in 40 MB.

Same classes as the 1.3B model: the Mamba-2 backbone with task LoRA, timm DINOv2-with-registers and SigLIP
towers (the same timm architectures, shrunk through VisionConfig overrides), the LlamaGen VQ-16 design with
16 x 16 codes for 256 px, and the real 50288-row GPT-NeoX text vocabulary. The tied text table
(50288 x 384 = 19.3M parameters) is most of the parameters; the world uses 106 of its rows, and the shipped file
stores the others' one shared value once (packed_rows.py): see `param_report` for the split.

Measured (Dec 2026, this preset, d_model 384): 30,244,067 parameters; the shipped (sixth) run's file (bf16, text
table packed) 22,151,302 bytes. 2-core CPU, reference path, fp32, 2 threads, machine otherwise idle, random
weights: an image in 1.84 s (2.31 s with guidance); d_model 512 took 2.30 s (3.38 s), over the 3 s budget.
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
