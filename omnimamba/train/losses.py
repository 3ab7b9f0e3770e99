"""Per-task next-token cross-entropy over the model's teacher-forced forwards (reference §12).

MMU: forward_mmu over [mmu][soi] image [eoi][sot] text; row image_block - 1 + i predicts text_ids[i], so the
     logits of the text part are compared with the labels as they are (labels carry IGNORE off the answers).
     Rows without an image get the zero image block (what official training gave text-only samples).
T2I: forward_t2i over prefix ++ codes; rows P - 1 .. P + n - 2 predict the n codes (every code is a target).
text: forward_text (no positions, no LoRA); row p predicts ids[p + 1].
Each loss is the mean over the labelled tokens of its task's batch, computed in fp32.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model import OmniMamba
from ..model.vision import normalize_pixels
from .batches import IGNORE, Batch, MMUBatch, T2IBatch, TextBatch


def task_losses(model: OmniMamba, batches: Mapping[str, Batch]) -> dict[str, Tensor]:
    """{task: mean CE} for the tasks present in `batches` (keys "mmu", "t2i", "text")."""
    loss_fns = {"mmu": mmu_loss, "t2i": t2i_loss, "text": text_loss}
    unknown = [t for t in batches if t not in loss_fns]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; batches may hold {sorted(loss_fns)}")
    return {task: loss_fns[task](model, batch) for task, batch in batches.items()}


def mmu_image_embeds(model: OmniMamba, batch: MMUBatch) -> Tensor | None:
    """(b, patches, d) image block: projected features on image rows, zeros on text-only rows; None if no row
    has an image (the model then uses its zero block)."""
    if batch.images is None:
        return None
    # (k, patches, d) for the k image rows
    features = model.image_features(normalize_pixels(batch.images, model.config.vision))
    # row r takes image row (number of image rows up to r) - 1, zeroed where r has none: no host sync (a mask's
    # nonzero() would wait for the GPU at every step)
    has_image = batch.has_image.to(features.device)
    which = (torch.cumsum(has_image.long(), 0) - 1).clamp(min=0)
    return features[which] * has_image[:, None, None].to(features.dtype)


def mmu_loss(model: OmniMamba, batch: MMUBatch) -> Tensor:
    start = batch.image_block - 1  # the [sot] row predicts the first text token
    logits = model.forward_mmu(batch.text_ids, image_embeds=mmu_image_embeds(model, batch), first_row=start)
    loss = _ce(logits[:, :batch.text_ids.shape[1]], batch.labels)
    if batch.images is None:  # only text-only chats: keep the projector in the graph with a zero gradient,
        loss = loss + 0.0 * sum(p.sum() for p in model.projector.parameters() if p.requires_grad)  # or DDP stalls
    return loss


def t2i_loss(model: OmniMamba, batch: T2IBatch) -> Tensor:
    logits = model.forward_t2i(batch.prefix_ids, batch.image_ids, first_row=batch.prefix_ids.shape[1] - 1)
    return _ce(logits[:, :batch.image_ids.shape[1]], batch.image_ids)  # the last prefix row predicts code 0


def text_loss(model: OmniMamba, batch: TextBatch) -> Tensor:
    logits = model.forward_text(batch.ids)
    return _ce(logits[:, :-1], batch.labels[:, 1:])


def _ce(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean CE over labelled positions (no host sync); 0 when nothing is labelled, so a batch whose answers were
    all cut at the position limit does not turn the summed loss into NaN."""
    labels = labels.to(logits.device)
    total = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="sum")
    return total / (labels != IGNORE).sum().clamp(min=1)
