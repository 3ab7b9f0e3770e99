"""Fast-path vs reference gradients, tensor by tensor, in the stage-2 setting (vision towers frozen, all else
trained), for the image-chat loss, the text-to-image loss and their sum (one stage-2 backward).

    python -m omnimamba.model.grad_check --config omnimamba-1.3b --device cuda

prints one JSON object: per case, how many trainable tensors got a gradient through the default path and
through `kernels.reference_only()`, which did not, and the worst per-tensor relative error
||g_fast - g_ref|| / ||g_ref||. The tests use the same functions (tests/model/test_gradients.py).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import OmniMambaConfig
from . import kernels
from .init import random_model
from .omnimamba import OmniMamba

log = logging.getLogger(__name__)

FROZEN = ("vision_backbone.", "llm_backbone.vqvae.")  # the towers (stage 2) and the VQ tokenizer (never trained)
CASES = {"mmu": ("mmu",), "t2i": ("t2i",), "stage2": ("mmu", "t2i")}
Grads = dict[str, Tensor | None]


def stage2_trainable_(model: OmniMamba) -> list[str]:
    """Freeze the vision towers and the VQ; every other tensor trains. Returns the trainable names."""
    names = []
    for name, p in model.named_parameters():
        p.requires_grad_(not name.startswith(FROZEN))
        if p.requires_grad:
            names.append(name)
    return names


def synthetic_batch(cfg: OmniMambaConfig, batch: int, text_len: int, device: torch.device | str,
                    seed: int = 0) -> dict[str, Tensor]:
    """Random ids and pixels with the training shapes: an image chat answer of `text_len` tokens and a full
    text-to-image sample (caption prefix + every image token)."""
    g = torch.Generator().manual_seed(seed)
    size = cfg.vision.image_size
    tensors = {
        "text_ids": torch.randint(0, cfg.text_vocab_size, (batch, text_len), generator=g),
        "dino": torch.randn(batch, 3, size, size, generator=g),
        "siglip": torch.randn(batch, 3, size, size, generator=g),
        "prefix_ids": torch.randint(0, cfg.text_vocab_size, (batch, cfg.t2i_prefix_len), generator=g),
        "image_ids": torch.randint(0, cfg.image_vocab_size, (batch, cfg.num_image_tokens), generator=g),
    }
    return {k: v.to(device) for k, v in tensors.items()}


def task_loss(model: OmniMamba, task: str, batch: dict[str, Tensor]) -> Tensor:
    """Next-token cross-entropy on the answer (image chat) or on the image tokens (text-to-image)."""
    if task == "mmu":
        targets = batch["text_ids"]
        pixels = {"dino": batch["dino"], "siglip": batch["siglip"]}
        logits = model.forward_mmu(targets, pixel_values=pixels)
    else:
        targets = batch["image_ids"]
        logits = model.forward_t2i(batch["prefix_ids"], targets)
    rows = logits[:, -targets.shape[1] - 1:-1]  # row p predicts token p + 1
    return F.cross_entropy(rows.float().flatten(0, 1), targets.flatten())


def gradients(model: OmniMamba, batch: dict[str, Tensor], tasks: tuple[str, ...], reference: bool) -> Grads:
    """One backward of the summed task losses; the gradient of every trainable tensor (None where none came)."""
    for p in model.parameters():
        p.grad = None
    with kernels.reference_only() if reference else contextlib.nullcontext():
        loss = sum(task_loss(model, task, batch) for task in tasks)
        loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    for p in model.parameters():
        p.grad = None
    return grads


def relative_error(fast: Tensor, ref: Tensor) -> float:
    """||fast - ref|| / ||ref|| (the absolute difference where ref is zero; inf where anything is not finite)."""
    scale = ref.double().norm().item()
    diff = (fast.double() - ref.double()).norm().item()
    error = diff / scale if scale > 0 else diff
    return error if math.isfinite(error) else math.inf


def compare(fast: Grads, ref: Grads) -> dict:
    """Counts of tensors with a gradient on each path, the tensors one path misses, non-finite gradients, and
    the per-tensor relative errors (worst first)."""
    have = lambda grads: {n for n, g in grads.items() if g is not None}  # noqa: E731
    both = have(fast) & have(ref)
    errors = {n: relative_error(fast[n], ref[n]) for n in both}
    return {
        "trainable": len(fast),
        "with_grad_fast": len(have(fast)),
        "with_grad_reference": len(have(ref)),
        "missing_fast": sorted(have(ref) - have(fast)),
        "extra_fast": sorted(have(fast) - have(ref)),
        "non_finite": sorted(n for n in both if not (torch.isfinite(fast[n]).all() and torch.isfinite(ref[n]).all())),
        "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])),
    }


def check(model: OmniMamba, batch: dict[str, Tensor], cases: dict[str, tuple[str, ...]] = CASES) -> dict[str, dict]:
    """compare() for every case, gradients computed fast first, then reference."""
    stage2_trainable_(model)
    report, start = {}, time.perf_counter()
    for case, tasks in cases.items():
        fast = gradients(model, batch, tasks, False)
        log.info("%s: fast path done at %.0f s", case, time.perf_counter() - start)  # the first compiles kernels
        report[case] = compare(fast, gradients(model, batch, tasks, True))
        log.info("%s: reference path done at %.0f s", case, time.perf_counter() - start)
    return report


def summary(report: dict[str, dict], top: int = 5) -> dict[str, dict]:
    """The JSON the script prints: counts, misses and the `top` worst tensors per case."""
    out = {}
    for case, r in report.items():
        worst = list(r["errors"].items())[:top]
        out[case] = {k: v for k, v in r.items() if k != "errors"} | {
            "max_rel_error": worst[0][1] if worst else None, "worst": dict(worst)}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="omnimamba-1.3b", help="omnimamba-1.3b or tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--text-len", type=int, default=16, help="image-chat answer tokens")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cfg = OmniMambaConfig.from_name(args.config)
    model = random_model(cfg, args.device, torch.float32, seed=args.seed)
    batch = synthetic_batch(cfg, args.batch, args.text_len, args.device, args.seed)
    result = {"config": args.config, "device": str(args.device), "backends": kernels.backends(args.device),
              "cases": summary(check(model, batch))}
    print(json.dumps(result, indent=1))  # the script's output (JSON on stdout)


if __name__ == "__main__":
    main()
