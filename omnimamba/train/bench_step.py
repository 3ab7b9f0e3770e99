"""One training step of the 1.3B on a GPU: tokens/s, model FLOPs utilisation, peak memory (prints JSON).

    python -m omnimamba.train.bench_step                       # stage 2: 8 T2I + 8 MMU samples, bf16 autocast
    python -m omnimamba.train.bench_step --preset lora-finetune --t2i 16 --mmu 0
    python -m omnimamba.train.bench_step --reference           # the PyTorch reference kernels (gradient baseline)

Random weights (same cost as the real ones), fp32 master weights under bf16 autocast (what `train` does with
mixed_precision bf16), fused AdamW, gradient clipping: the whole optimizer step is timed.

FLOPs per step (stated so the MFU can be checked):
    6 x (matmul parameters a token passes through) x tokens     for everything after the frozen vision towers
    2 x (tower parameters that run) x patches                   for the towers (frozen, forward only)
where every token passes 48 x (in_proj + out_proj), plus project_in (image tokens), caption_embed (prefix
tokens) or the projector (image patches); only the rows with a loss pass their task head (the training forward
skips the head on the caption's and the image block's rows). The SSD scan, the convolution and the norms are not
counted (a few % of the matmul FLOPs), nor is the LoRA (0.6%). Peak: H200 bf16 dense 989 TFLOP/s (override with
--peak-tflops).
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from ..config import EOT_ID, SOI_ID, SOT_ID, T2I_ID, OmniMambaConfig
from ..model import OmniMamba
from . import trainable
from .batches import IGNORE, MMUBatch, T2IBatch
from .config import preset

H200_BF16_TFLOPS = 989.0


def synthetic_batches(cfg: OmniMambaConfig, t2i: int, mmu: int, mmu_text: int, device: torch.device) -> dict:
    """Random batches of the real shapes: T2I prefix 72 + 256 codes; MMU 733-position image block + text."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    out = {}
    if t2i:
        caption = torch.randint(0, cfg.text_vocab_size, (t2i, cfg.caption_len), generator=gen)
        prefix = torch.cat([torch.tensor([[T2I_ID, SOT_ID]] * t2i), caption, torch.tensor([[EOT_ID, SOI_ID]] * t2i)], 1)
        codes = torch.randint(0, cfg.image_vocab_size, (t2i, cfg.num_image_tokens), generator=gen)
        out["t2i"] = T2IBatch(prefix, codes).to(device)
    if mmu:
        ids = torch.randint(0, cfg.text_vocab_size, (mmu, mmu_text), generator=gen)
        labels = ids.clone()
        labels[:, : mmu_text // 2] = IGNORE  # the question half carries no loss
        size = cfg.vision.image_size
        images = torch.randint(0, 256, (mmu, 3, size, size), generator=gen, dtype=torch.uint8)
        out["mmu"] = MMUBatch(ids, labels, images, torch.ones(mmu, dtype=torch.bool),
                              4 + cfg.vision.num_patches).to(device)
    return out


def _matmul_params(module: torch.nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))


def _tower_params(vit: torch.nn.Module) -> int:
    """Parameters a tower runs: the patch embedding and every block but the last (features are taken from the
    second-to-last block and the towers stop there)."""
    return sum(p.numel() for m in (vit.patch_embed, *vit.blocks[:-1]) for p in m.parameters())


def step_flops(model: OmniMamba, batches: dict) -> float:
    """Model FLOPs of one training step, by the formula in the module docstring."""
    bb, cfg = model.backbone, model.config
    layers = sum(l.mixer.in_proj.weight.numel() + l.mixer.out_proj.weight.numel() for l in bb.layers)
    flops = 0.0
    if "t2i" in batches:
        b = batches["t2i"]
        n_prefix, n_img = b.prefix_ids.numel(), b.image_ids.numel()
        flops += 6 * (layers * (n_prefix + n_img) + model.mamba.img_head.weight.numel() * n_img
                      + _matmul_params(bb.img_embeddings.project_in) * n_img
                      + _matmul_params(bb.caption_embed) * n_prefix)
    if "mmu" in batches:
        b = batches["mmu"]
        rows, patches = b.text_ids.shape[0], cfg.vision.num_patches
        tokens = rows * (b.image_block + b.text_ids.shape[1])
        flops += 6 * (layers * tokens + model.mamba.lm_head.weight.numel() * b.text_ids.numel()
                      + _matmul_params(model.projector) * rows * patches)
        vb = model.vision_backbone
        flops += 2 * (_tower_params(vb.dino_featurizer) + _tower_params(vb.siglip_featurizer)) * rows * patches
    return flops


def run(preset_name: str, t2i: int, mmu: int, mmu_text: int, steps: int, reference: bool,
        peak_tflops: float, profile: str | None = None) -> dict:
    from contextlib import nullcontext

    from torch.profiler import record_function

    from ..model import kernels
    from ..model.init import random_model
    from .losses import task_losses

    device = torch.device("cuda")
    cfg = preset(preset_name)
    model = random_model(OmniMambaConfig.official(), device, torch.float32).train()
    names = trainable.select(model, cfg.trainable, tuple(t for t, n in (("mmu", mmu), ("t2i", t2i)) if n))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, betas=cfg.betas, weight_decay=0.0, fused=True)
    batches = synthetic_batches(model.config, t2i, mmu, mmu_text, device)
    context = kernels.reference_only if reference else nullcontext

    def step() -> dict[str, float]:  # the labels name the phases in --profile's table
        with record_function("step.forward"), context(), torch.autocast("cuda", dtype=torch.bfloat16):
            losses = task_losses(model, batches)
        with record_function("step.backward"):
            sum(losses.values()).backward()
        with record_function("step.optimizer"):
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=False)  # keep grads allocated: steady-state memory, the check below
        return {k: float(v) for k, v in losses.items()}

    for _ in range(2):  # warm-up: kernel autotuning, allocator, optimizer state
        step()
    missing = [n for n, p in zip(names, params) if p.grad is None]
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        losses = step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / steps
    if profile:
        _profile(step, profile)
    return _report(model, batches, names, missing, losses, seconds, peak_tflops, reference, preset_name)


def _profile(step, path: str) -> None:
    """One more step under torch.profiler: its GPU kernels by total time, as a table in `path`."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="self_device_time_total", row_limit=60, max_name_column_width=90)
    with open(path, "w") as f:
        f.write(table)


def _report(model, batches, names, missing, losses, seconds, peak_tflops, reference, preset_name) -> dict:
    tokens = sum(b.num_tokens for b in batches.values())
    flops = step_flops(model, batches)
    return {
        "gpu": torch.cuda.get_device_name(), "preset": preset_name, "kernels": "reference" if reference else "fast",
        "batch": {t: b.prefix_ids.shape[0] if t == "t2i" else b.text_ids.shape[0] for t, b in batches.items()},
        "tokens_per_step": tokens, "step_s": round(seconds, 4), "tokens_per_s": round(tokens / seconds),
        "model_tflops_per_step": round(flops / 1e12, 2), "achieved_tflops": round(flops / seconds / 1e12, 1),
        "mfu": round(flops / seconds / (peak_tflops * 1e12), 4), "peak_memory_gib":
            round(torch.cuda.max_memory_allocated() / 2**30, 2), "trainable_tensors": len(names),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "tensors_without_grad": len(missing), "losses": losses,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m omnimamba.train.bench_step", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="stage2", help="which tensors train (a train preset name)")
    p.add_argument("--t2i", type=int, default=8, help="T2I samples per step (72 + 256 positions each)")
    p.add_argument("--mmu", type=int, default=8, help="MMU samples per step (733 + --mmu-text positions each)")
    p.add_argument("--mmu-text", type=int, default=128, help="text tokens per MMU sample")
    p.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    p.add_argument("--reference", action="store_true", help="run the PyTorch reference kernels")
    p.add_argument("--peak-tflops", type=float, default=H200_BF16_TFLOPS, help="the GPU's dense bf16 peak")
    p.add_argument("--profile", metavar="FILE", help="profile one more step; write its kernel table to FILE")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("bench_step measures a GPU training step and needs a CUDA GPU; none is visible")
    print(json.dumps(run(args.preset, args.t2i, args.mmu, args.mmu_text, args.steps, args.reference,
                         args.peak_tflops, args.profile), indent=1))


if __name__ == "__main__":
    main()
