"""`train` and `prepare` commands: `python -m omnimamba train|prepare ...` (omnimamba/cli.py adds them), or
`python -m omnimamba.train.cli train|prepare ...` (the same parser alone)."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from .config import PRESETS, ConfigError, TrainConfig, preset


def add_train_arguments(p: argparse.ArgumentParser, recipes: tuple[str, ...] = ()) -> None:
    """recipes: extra --preset names that a caller runs itself (multi-stage recipes such as "shapes")."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", choices=PRESETS + recipes, help="a named recipe step (docs/training.md)")
    src.add_argument("--config", help="a JSON file: every TrainConfig field, or {\"preset\": NAME, ...overrides}")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config field; VALUE is JSON (e.g. grad_accum=4, data='{\"t2i\": \"shards/\"}')")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps in all")
    p.add_argument("--out", default=None, help="run folder (default runs/STAGE)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")


def add_prepare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("jsonl", help="text-to-image records: {\"image\": path, \"caption\": text} per line")
    p.add_argument("--out", required=True, help="folder for the code shards (resumable: finished shards are kept)")
    p.add_argument("--model", default="hustvl/OmniMamba", help="whose VQ encodes the images (a trained DIR too)")
    p.add_argument("--device", default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-workers", type=int, default=4)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    cfg = preset(args.preset) if args.preset else TrainConfig.from_file(args.config)
    changes = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        try:
            changes[key] = json.loads(value)
        except json.JSONDecodeError:
            changes[key] = value  # a bare string, e.g. --set stage=mine
    return TrainConfig.from_dict({**cfg.to_dict(), **changes}) if changes else cfg


def cmd_train(args: argparse.Namespace) -> None:
    _guard(_train, args)


def cmd_prepare(args: argparse.Namespace) -> None:
    _guard(_prepare, args)


def _guard(fn, args: argparse.Namespace) -> None:
    """A mistake in the config or the data ends the command with its message, not a traceback."""
    from .records import DataError

    try:
        fn(args)
    except (ConfigError, DataError, FileNotFoundError, FileExistsError) as exc:
        sys.exit(f"error: {exc}")


def _train(args: argparse.Namespace) -> None:
    from .loop import train

    cfg = config_from_args(args)
    out = train(cfg, args.out or f"runs/{cfg.stage}", args.max_steps, args.resume)
    print(f"done: {out}/model.safetensors, log in {out}/log.jsonl")


def _prepare(args: argparse.Namespace) -> None:
    from .prepare import prepare_t2i
    from .setup import load_model_for_prepare

    model = load_model_for_prepare(args.model, args.device)
    out = prepare_t2i(args.jsonl, args.out, model, batch_size=args.batch_size, device=model.device,
                      num_workers=args.num_workers)
    print(f"prepared shards in {out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m omnimamba", description="OmniMamba training")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train or fine-tune (the paper's recipe as presets; docs/training.md)")
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("prepare", help="pre-tokenize text-to-image images with the VQ into shards")
    add_prepare_arguments(p)
    p.set_defaults(func=cmd_prepare)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
