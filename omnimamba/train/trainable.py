"""Which tensors a stage trains: named parameter groups over the official key names.

Every parameter of OmniMamba belongs to exactly one group (checked by `group_of`). Tied weights are one
Parameter under two names; selection walks `named_parameters()` (each tensor once, under its first name: the
table, not the head), so `img_head` trains exactly when `image_table` does and `lm_head` with `text_embedding`.
A group that is not selected is frozen (requires_grad False), so a route that is off gets no gradient at all.
"""
from __future__ import annotations

import logging
import re

from torch import nn

log = logging.getLogger(__name__)

_B = r"llm_backbone\.mamba\.backbone\."
# group -> regex over the deduplicated parameter names; first match wins (order matters: LoRA before blocks)
GROUPS: dict[str, str] = {
    "mmu_lora": _B + r"layers\.\d+\.mixer\.in_proj\.mmu_lora_[AB]0\.weight$",
    "t2i_lora": _B + r"layers\.\d+\.mixer\.in_proj\.t2i_lora_[AB]0\.weight$",
    "blocks": _B + r"layers\.\d+\.",  # every Mamba-2 weight: in_proj base, conv, A_log, dt_bias, D, norms, out_proj
    "norm_f": _B + r"norm_f\.",
    "text_embedding": _B + r"embedding\.weight$",  # == lm_head.weight (tied)
    "image_table": _B + r"img_embeddings\.word_embeddings\.weight$",  # == img_head.weight (tied)
    "project_in": _B + r"img_embeddings\.project_in\.",
    "caption_embed": _B + r"caption_embed\.",
    "pos_embed": _B + r"pos_embed$",  # T2I positions
    "mmu_pos_embed": _B + r"mmu_pos_embed$",
    "projector": r"projector\.",
    "vision": r"vision_backbone\.",
    "vq": r"llm_backbone\.vqvae\.",
}
# groups that only one route reads: with the other route off they could never get a gradient
ROUTE_ONLY = {"mmu": ("mmu_lora", "mmu_pos_embed", "projector", "vision"),
              "t2i": ("t2i_lora", "pos_embed", "image_table", "project_in", "caption_embed", "vq")}
_COMPILED = {g: re.compile(p) for g, p in GROUPS.items()}


def group_of(name: str) -> str:
    """The group of a (deduplicated) parameter name; a name in no group is a bug in GROUPS."""
    for group, pattern in _COMPILED.items():
        if pattern.match(name):
            return group
    raise KeyError(f"parameter {name!r} belongs to no training group; extend trainable.GROUPS")


def trainable_names(model: nn.Module, groups: tuple[str, ...]) -> list[str]:
    """Names (first name of each tensor, registration order) of the parameters in `groups`."""
    return [name for name, _ in model.named_parameters() if group_of(name) in groups]


def select(model: nn.Module, groups: tuple[str, ...], tasks: tuple[str, ...]) -> list[str]:
    """Freeze everything, then unfreeze `groups`. Returns the trainable names (also logged).

    Raises ValueError for a group that only a task outside `tasks` reads: it would silently never train.
    """
    dead = [g for task, only in ROUTE_ONLY.items() if task not in tasks for g in only if g in groups]
    if dead:
        raise ValueError(f"groups {dead} are read only by a task that is off (tasks {list(tasks)}); "
                         f"drop them from 'trainable' or add the task to 'batch'")
    model.requires_grad_(False)
    names = trainable_names(model, groups)
    params = dict(model.named_parameters())
    for name in names:
        params[name].requires_grad_(True)
    count = sum(params[n].numel() for n in names)
    log.info("training %d tensors (%s parameters) in groups %s", len(names), f"{count:,}", list(groups))
    log.debug("trainable tensors:\n  %s", "\n  ".join(names))
    return names


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Unique parameters per group (tied tensors counted once)."""
    counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        counts[group_of(name)] = counts.get(group_of(name), 0) + p.numel()
    return counts
