"""Run both pre-steps at the real sizes on one GPU (~5 minutes), print timing and quality, save the weights.

    python -m omnimamba.shapes.gpu_pretrain_check --out DIR

Writes DIR/vq.safetensors, DIR/dino.safetensors, DIR/siglip.safetensors (fp32, each well under 16 MB; the
preset's config JSON in the metadata under "omnimamba_config") and DIR/report.json. Quality:
- VQ: on fresh scenes (half with a held-out combo), the checker must find exactly the scene's shapes in the
  round trip (recon_exact ~1.0 is needed before the backbone can learn text to image); also with the weights
  rounded to bf16, as they ship;
- towers: probe accuracy per tower (patch colour, patch shape, colours/shapes present, count) on fresh scenes.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from .pretrain import StateDict, train_towers, train_vq, vq_quality
from .preset import shapes_config

log = logging.getLogger("shapes.pretrain")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder for the weights and report.json")
    p.add_argument("--device", default="cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vq-steps", type=int, default=40_000, help="upper bound; --vq-seconds usually ends it")
    p.add_argument("--vq-seconds", type=float, default=210.0)
    p.add_argument("--vq-batch", type=int, default=64)
    p.add_argument("--vq-lr", type=float, default=1e-3)
    p.add_argument("--tower-steps", type=int, default=10_000)
    p.add_argument("--tower-seconds", type=float, default=75.0)
    p.add_argument("--tower-batch", type=int, default=128)
    p.add_argument("--tower-lr", type=float, default=1e-3)
    p.add_argument("--eval-scenes", type=int, default=200)
    return p.parse_args(argv)


def bf16_rounded(sd: StateDict) -> StateDict:
    return {k: v.to(torch.bfloat16).float() for k, v in sd.items()}


def save(sd: StateDict, path: Path, config_json: str) -> int:
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path), metadata={"omnimamba_config": config_json})
    size = path.stat().st_size
    if size >= 16 * 2**20:
        raise RuntimeError(f"{path} is {size / 2**20:.1f} MiB; expected < 16 MiB (shrink the preset)")
    return size


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    cfg, report = shapes_config(), {}
    config_json = json.dumps(dataclasses.asdict(cfg))
    args.out.mkdir(parents=True, exist_ok=True)

    start = time.monotonic()
    vq_sd = train_vq(cfg, args.vq_steps, args.vq_batch, args.device, log.info, lr=args.vq_lr,
                     seconds=args.vq_seconds, seed=args.seed)
    report["vq_train_s"] = round(time.monotonic() - start, 1)
    report["vq"] = vq_quality(cfg, vq_sd, args.eval_scenes, seed=args.seed + 1000, device=args.device)
    report["vq_bf16"] = vq_quality(cfg, bf16_rounded(vq_sd), args.eval_scenes, seed=args.seed + 1000,
                                   device=args.device)
    log.info("VQ: %s s, fp32 %s, bf16 %s", report["vq_train_s"], report["vq"], report["vq_bf16"])

    start, probes = time.monotonic(), {}
    dino_sd, siglip_sd = train_towers(cfg, args.tower_steps, args.tower_batch, args.device, log.info,
                                      lr=args.tower_lr, seconds=args.tower_seconds, seed=args.seed, report=probes)
    report["towers_train_s"] = round(time.monotonic() - start, 1)
    report["tower_probes"] = probes
    log.info("towers: %s s, probes %s", report["towers_train_s"], probes)

    report["files_bytes"] = {name: save(sd, args.out / f"{name}.safetensors", config_json)
                             for name, sd in (("vq", vq_sd), ("dino", dino_sd), ("siglip", siglip_sd))}
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
