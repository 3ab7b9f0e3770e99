"""The two pre-steps nothing pretrained can give the shapes model: its VQ and its two vision towers.

train_vq: LlamaGen VQ-16 training on rendered scenes: pixel L1 + L2, codebook and commitment (beta 0.25)
losses on l2-normalised codes with a straight-through estimator (no GAN or perceptual loss: flat colours);
codes unused for a while restart at random encoder outputs. Quality: the shapes checker on reconstructions.
train_towers: DINOv2 / SigLIP towers learn what the MMU path will read from them (the second-to-last block's
patch tokens): per patch its colour and shape classes, per image the colours and shapes present and the count,
through small probe heads that are thrown away; with `shape_where`, also each patch's row and column and which
clear extreme (left-, right-, top-, bottom-most) its shape is (otherwise these are only measured). Stage 1 then
freezes the towers, as the paper does.
Both stop at `steps` or after `seconds`, whichever comes first (the cosine schedule follows the earlier).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import OmniMambaConfig
from ..model.vision import VisionBackbone, penultimate_patch_tokens
from ..model.vq import VQModel
from .checker import check
from .language import Description
from .scene_batches import eval_scenes, scene_loader
from .world import COLOURS, KINDS, RELATIONS, SIZE, render

Log = Callable[[str], None]
StateDict = dict[str, Tensor]
COMMIT_BETA = 0.25
_log = logging.getLogger(__name__)


class Schedule:
    """Linear warm-up then cosine to 10%, over `steps` or `seconds`, whichever ends first."""

    def __init__(self, steps: int, seconds: float | None, warmup: int):
        self.steps, self.seconds, self.warmup = steps, seconds, warmup
        self.start = time.monotonic()

    def progress(self, step: int) -> float:
        by_time = (time.monotonic() - self.start) / self.seconds if self.seconds else 0.0
        return max(step / self.steps, by_time)

    def lr_scale(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        return 0.1 + 0.45 * (1 + math.cos(min(self.progress(step), 1.0) * math.pi))


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def default_workers(device: torch.device) -> int:
    return min(12, (os.cpu_count() or 2) - 2) if device.type == "cuda" else 0


# ----------------------------------------------------------------------------------------------- VQ
def quantize_st(vq: VQModel, h: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """h (b, c, g, g) from quant_conv -> (straight-through codes' vectors, codes (b, g*g), codebook loss,
    commitment loss). Both h and the codebook are l2-normalised, as `VQModel.encode_codes` assumes."""
    with torch.autocast(h.device.type, enabled=False):
        z = F.normalize(h.float(), dim=1)
        book = vq.quantize.codebook().float()
        b, c, g, _ = z.shape
        codes = (z.permute(0, 2, 3, 1).reshape(b, g * g, c) @ book.T).argmax(-1)
        zq = book[codes].view(b, g, g, c).permute(0, 3, 1, 2)
        codebook_loss, commit_loss = F.mse_loss(zq, z.detach()), F.mse_loss(z, zq.detach())
    return z + (zq - z).detach(), codes, codebook_loss, commit_loss


def vq_losses(vq: VQModel, images: Tensor) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """images (b, 3, 256, 256) in [-1, 1] -> (losses, codes, encoder outputs normalised (b*g*g, c))."""
    h = vq.quant_conv(vq.encoder(images))
    zq, codes, codebook_loss, commit_loss = quantize_st(vq, h)
    recon = vq.decoder(vq.post_quant_conv(zq.to(h.dtype))).float()
    losses = {"l1": F.l1_loss(recon, images), "l2": F.mse_loss(recon, images),
              "codebook": codebook_loss, "commit": COMMIT_BETA * commit_loss}
    flat = F.normalize(h.detach().float(), dim=1).permute(0, 2, 3, 1).reshape(-1, h.shape[1])
    return losses, codes, flat


@torch.no_grad()
def restart_dead_codes(vq: VQModel, usage: Tensor, samples: Tensor) -> int:
    """Codes never picked since the last restart move to random recent encoder outputs; returns how many."""
    dead = torch.nonzero(usage == 0).flatten()
    if len(dead):
        pick = torch.randint(len(samples), (len(dead),), device=samples.device)
        vq.quantize.embedding.weight[dead] = samples[pick].to(vq.quantize.embedding.weight.dtype)
    usage.zero_()
    return len(dead)


def train_vq(cfg: OmniMambaConfig, steps: int, batch_size: int, device: str | torch.device = "cuda",
             log: Log = _log.info, *, lr: float = 1e-3, seconds: float | None = None, seed: int = 0,
             restart_every: int = 200, num_workers: int | None = None, image_size: int = SIZE) -> StateDict:
    """Train `cfg.vq` from scratch on rendered training scenes; returns its state_dict (fp32, on the CPU).
    image_size < 256 trains on downscaled scenes (the VQ is convolutional): quick trials and smoke tests."""
    device = torch.device(device)
    torch.manual_seed(seed)
    vq = VQModel(cfg.vq).to(device).train()
    opt = torch.optim.AdamW(vq.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    data = scene_loader(seed, batch_size, num_workers=_workers(num_workers, device))
    usage = torch.zeros(cfg.vq.codebook_size, device=device)
    schedule, step = Schedule(steps, seconds, warmup=min(200, steps // 10 + 1)), 0
    while step < steps and schedule.progress(step) < 1.0:
        images = next(data)["image"].to(device, non_blocking=True).float() / 127.5 - 1.0
        if image_size != SIZE:
            images = F.interpolate(images, size=(image_size, image_size), mode="area")
        with autocast(device):
            losses, codes, flat = vq_losses(vq, images)
        _optimizer_step(opt, vq.parameters(), sum(losses.values()), lr * schedule.lr_scale(step))
        usage.index_add_(0, codes.flatten(), torch.ones_like(codes.flatten(), dtype=usage.dtype))  # no sync
        step += 1
        if step % restart_every == 0 and schedule.progress(step) < 0.8:
            restarted = restart_dead_codes(vq, usage, flat)
            log(f"vq step {step}: restarted {restarted} unused codes")
        if step % 100 == 0 or step == 1:
            log(f"vq step {step}: " + " ".join(f"{k} {v.item():.4f}" for k, v in losses.items()))
    log(f"vq: {step} steps in {time.monotonic() - schedule.start:.0f} s")
    return {k: v.detach().float().cpu() for k, v in vq.state_dict().items()}


@torch.no_grad()
def vq_quality(cfg: OmniMambaConfig, vq_sd: StateDict, n: int = 100, seed: int = 1,
               device: str | torch.device = "cpu", batch_size: int = 16) -> dict[str, float]:
    """Round trips (encode, decode) of fresh scenes, half of them with a held-out combo: how often the checker
    finds exactly the scene's shapes in the reconstruction, PSNR (dB), and the share of codes in use."""
    from ..images import to_pil  # the app's own pixels -> image conversion

    vq = VQModel(cfg.vq)
    vq.load_state_dict(vq_sd, strict=True)
    vq.to(device).eval()
    scenes, exact, found, mse, used = eval_scenes(seed, n), 0, 0, 0.0, set()
    for i in range(0, n, batch_size):
        chunk = scenes[i:i + batch_size]
        x = torch.stack([torch.from_numpy(np.asarray(render(s), dtype=np.float32)) for s in chunk]).to(device)
        x = x.permute(0, 3, 1, 2) / 127.5 - 1.0
        codes = vq.encode_codes(x)
        recon = vq.decode_codes(codes).float().clamp(-1, 1)
        used.update(codes.flatten().tolist())
        mse += ((recon - x) * 127.5).pow(2).mean((1, 2, 3)).sum().item()
        for scene, pixels in zip(chunk, recon):
            result = check(to_pil(pixels), Description(tuple(scene.combos)))
            exact, found = exact + result.exact, found + result.objects_found
    psnr = 10 * np.log10(255.0**2 / max(mse / n, 1e-6))
    return {"recon_exact": exact / n, "recon_objects_found": found / n, "psnr_db": float(psnr),
            "codes_used": len(used) / cfg.vq.codebook_size}


def _workers(num_workers: int | None, device: torch.device) -> int:
    return default_workers(device) if num_workers is None else num_workers


def _optimizer_step(opt: torch.optim.Optimizer, params, loss: Tensor, lr: float) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], 1.0)
    for group in opt.param_groups:
        group["lr"] = lr
    opt.step()


# ------------------------------------------------------------------------------------------- towers
class ProbeHeads(nn.Module):
    """What one tower's patch tokens must make linearly readable (per patch) or poolable (per image).

    The "where" probes (each patch's row and column, and which clear extreme its shape is) shape the tower only
    with `shape_where`; otherwise they read detached tokens, a measurement that leaves the tower alone. The
    shapes model's third run trained the towers with them and its image chat got worse (docs/shapes-model.md)."""

    IMAGE = (len(COLOURS), len(KINDS), 3)  # colours present, kinds present, count 1..3

    def __init__(self, dim: int, grid: int, shape_where: bool = False):
        super().__init__()
        self.grid, self.shape_where = grid, shape_where
        self.what_split = (len(COLOURS) + 1, len(KINDS) + 1)  # colour and kind classes, 0 = background
        self.where_split = (len(RELATIONS), grid, grid)  # extremes (multi-label), row and column classes
        self.patch = nn.Linear(dim, sum(self.what_split))
        self.where = nn.Linear(dim, sum(self.where_split))
        self.image = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.GELU(),
                                   nn.Linear(4 * dim, sum(self.IMAGE)))

    def forward(self, tokens: Tensor) -> tuple[Tensor, ...]:
        """tokens (b, n, dim) -> patch colour (b, n, 8), kind (b, n, 4), extremes (b, n, 4), row (b, n, grid),
        column (b, n, grid), colours (b, 7), kinds (b, 3), count (b, 3) logits."""
        what = self.patch(tokens).float().split(self.what_split, dim=-1)
        where = self.where(tokens if self.shape_where else tokens.detach()).float().split(self.where_split, dim=-1)
        image = self.image(tokens.mean(1)).float().split(self.IMAGE, dim=-1)
        return (*what, *where, *image)

    def positions(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Row and column class of each patch, (b, n) each (patches in raster order)."""
        index = torch.arange(tokens.shape[1], device=tokens.device).expand(tokens.shape[0], -1)
        return index // self.grid, index % self.grid

    def loss(self, tokens: Tensor, batch: dict[str, Tensor]) -> Tensor:
        colour, kind, extremes, row, column, colours, kinds, count = self(tokens)
        rows, columns = self.positions(tokens)
        return (F.cross_entropy(colour.flatten(0, 1), batch["patch_colour"].flatten())
                + F.cross_entropy(kind.flatten(0, 1), batch["patch_kind"].flatten())
                + F.binary_cross_entropy_with_logits(extremes, batch["patch_extreme"])
                + F.cross_entropy(row.flatten(0, 1), rows.flatten())
                + F.cross_entropy(column.flatten(0, 1), columns.flatten())
                + F.binary_cross_entropy_with_logits(colours, batch["colours"])
                + F.binary_cross_entropy_with_logits(kinds, batch["kinds"])
                + F.cross_entropy(count, batch["count"]))

    @torch.no_grad()
    def correct(self, tokens: Tensor, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Per-item correctness (float tensors) of each probe."""
        colour, kind, extremes, row, column, colours, kinds, count = self(tokens)
        rows, columns = self.positions(tokens)
        on_shape = batch["patch_kind"] > 0
        colour_right = colour.argmax(-1) == batch["patch_colour"]
        kind_right = (kind.argmax(-1) == batch["patch_kind"]) & on_shape
        return {
            "patch_colour": colour_right.float().mean(1),  # background patches included
            "patch_colour_on_shapes": (colour_right & on_shape).sum(1) / on_shape.sum(1).clamp(min=1),
            "patch_kind": kind_right.sum(1) / on_shape.sum(1).clamp(min=1),  # on shape patches
            "patch_extreme": (((extremes > 0) == (batch["patch_extreme"] > 0.5)).all(-1) & on_shape).sum(1)
            / on_shape.sum(1).clamp(min=1),
            "patch_position": ((row.argmax(-1) == rows) & (column.argmax(-1) == columns)).float().mean(1),
            "present": (((colours > 0) == (batch["colours"] > 0.5)).all(1)
                        & ((kinds > 0) == (batch["kinds"] > 0.5)).all(1)).float(),
            "count": (count.argmax(-1) == batch["count"]).float(),
        }


def tower_batch(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "image"}


def tower_tokens(towers: VisionBackbone, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The MMU path's features of each tower: second-to-last block, patch tokens only."""
    return {"dino": penultimate_patch_tokens(towers.dino_featurizer, batch["dino"]),
            "siglip": penultimate_patch_tokens(towers.siglip_featurizer, batch["siglip"])}


def train_towers(cfg: OmniMambaConfig, steps: int, batch_size: int, device: str | torch.device = "cuda",
                 log: Log = _log.info, *, lr: float = 1e-3, seconds: float | None = None, seed: int = 0,
                 num_workers: int | None = None, report: dict | None = None, shape_where: bool = False
                 ) -> tuple[StateDict, StateDict]:
    """Train both towers of `cfg.vision` from scratch; returns (dino, siglip) timm-layout state_dicts (fp32,
    CPU) for `OmniMamba.load_vision_state_dicts`. `report`, if given, receives the probes' accuracy on
    fresh scenes that include the held-out colour-shape combinations."""
    device = torch.device(device)
    torch.manual_seed(seed)
    towers = VisionBackbone(cfg.vision).to(device).train()
    grid = cfg.vision.image_size // cfg.vision.patch_size
    heads = nn.ModuleDict({"dino": ProbeHeads(towers.dino_featurizer.embed_dim, grid, shape_where),
                           "siglip": ProbeHeads(towers.siglip_featurizer.embed_dim, grid, shape_where)}).to(device)
    params = [*towers.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.05)
    data = scene_loader(seed, batch_size, cfg.vision, num_workers=_workers(num_workers, device))
    schedule, step = Schedule(steps, seconds, warmup=min(100, steps // 10 + 1)), 0
    while step < steps and schedule.progress(step) < 1.0:
        batch = tower_batch(next(data), device)
        with autocast(device):
            tokens = tower_tokens(towers, batch)
            losses = {name: heads[name].loss(tokens[name], batch) for name in heads}
        _optimizer_step(opt, params, sum(losses.values()), lr * schedule.lr_scale(step))
        step += 1
        if step % 100 == 0 or step == 1:
            log(f"towers step {step}: " + " ".join(f"{k} {v.item():.4f}" for k, v in losses.items()))
    log(f"towers: {step} steps in {time.monotonic() - schedule.start:.0f} s")
    if report is not None:
        report.update(probe_accuracy(towers.eval(), heads.eval(), cfg, device, seed=seed + 1))
    return tuple({k: v.detach().float().cpu() for k, v in tower.state_dict().items()}
                 for tower in (towers.dino_featurizer, towers.siglip_featurizer))


@torch.no_grad()
def probe_accuracy(towers: VisionBackbone, heads: nn.ModuleDict, cfg: OmniMambaConfig, device: torch.device,
                   seed: int, batches: int = 4, batch_size: int = 64) -> dict[str, float]:
    """Probe accuracy per tower on fresh scenes drawn from all 21 combos (held-out ones included)."""
    data = scene_loader(seed, batch_size, cfg.vision, held_out=True)
    sums: dict[str, float] = {}
    for _ in range(batches):
        batch = tower_batch(next(data), device)
        with autocast(device):
            tokens = tower_tokens(towers, batch)
        for name in heads:
            for key, value in heads[name].correct(tokens[name], batch).items():
                sums[f"{name}_{key}"] = sums.get(f"{name}_{key}", 0.0) + value.sum().item()
    return {k: v / (batches * batch_size) for k, v in sums.items()}
