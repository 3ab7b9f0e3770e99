"""python -m omnimamba download | chat | generate | compare | bench | train | prepare

A mistake in the command (a missing or broken file, a bad value, a question that does not fit) ends it with one
`error: ...` message and exit status 1; --debug adds the traceback. Anything else is a bug and shows its traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .config import DTYPES
from .sampling import ImageDefaults

if TYPE_CHECKING:
    from .engine import Engine
    from .hub import ModelChoice
    from .sampling import SamplingParams


class UsageError(ValueError):
    """A value on the command line that cannot work; the message names the option."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that are the user's to fix (their message says how), not bugs."""
    from .checkpoint import CheckpointError
    from .compare import CompareError
    from .engine import EngineError
    from .hub import AssetUnavailable
    from .model import PositionLimitError
    from .model.vision import ImageError
    from .tokenizer import PromptError

    return (UsageError, AssetUnavailable, CheckpointError, EngineError, PositionLimitError, ImageError, PromptError,
            CompareError, FileNotFoundError, IsADirectoryError, PermissionError)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="auto",
                   help="auto (default: the official weights when cached, else the shipped 'shapes' model), shapes, "
                        "a Hub id, a local OmniMamba-1.3b.pth or folder, a model .safetensors, or tiny-random (tests)")
    p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit) of the weights")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda when available)")
    p.add_argument("--dtype", default=None, choices=sorted(DTYPES), help="default: bf16 on GPU, fp32 on CPU")
    p.add_argument("--tokenizer", default=None, help="a GPT-NeoX-20B tokenizer.json instead of the shipped copy")
    p.add_argument("--offline", action="store_true", help="use only the local Hugging Face cache")
    p.add_argument("--int8-decode", action="store_true",
                   help="decode with 8-bit copies of the weights: half the bytes a step reads, at a cost in "
                        "faithfulness (docs/benchmarks.md)")
    p.add_argument("--bf16-decode", action=argparse.BooleanOptionalAction, default=None,
                   help="CPU, fp32 model: decode with bf16 copies of the weights (exact weights for a model trained "
                        "in bf16, such as the shapes model; about 1.5x faster images). Default: on exactly then")


def open_engine(model: str | None, revision: str | None = None, device: str | None = None,
                dtype: str | None = None, tokenizer: str | None = None, offline: bool = False,
                batching: bool = False, int8_decode: bool = False,
                bf16_decode: bool | None = None) -> tuple["Engine", "ModelChoice"]:
    """The engine for a model name as the app and every command resolve it (hub.choose_model), and the choice
    (its notice says when it is not the official model). batching: concurrent requests share decode steps;
    int8_decode / bf16_decode: decode weights in fewer bytes (Engine; bf16_decode None: Engine.load's auto)."""
    if int8_decode and bf16_decode:
        raise UsageError("--int8-decode and --bf16-decode exclude each other")
    from .engine import Engine
    from .hub import choose_model

    choice = choose_model(model, revision)
    engine = Engine.load(choice.model, revision, device, DTYPES.get(dtype), tokenizer,
                         offline=True if offline else None, batching=batching, int8_decode=int8_decode,
                         bf16_decode=bf16_decode)
    engine.label = choice.label  # the name the user chose it by (`shapes` loads a path it names differently)
    if choice.notice:
        logging.getLogger(__name__).warning("%s: %s", choice.label, choice.notice)
    return engine, choice


def load_engine(args: argparse.Namespace) -> "Engine":
    return open_engine(args.model, args.revision, args.device, args.dtype, args.tokenizer, args.offline,
                       int8_decode=args.int8_decode, bf16_decode=args.bf16_decode)[0]


def sampling_from_args(args: argparse.Namespace) -> "SamplingParams":
    from .sampling import SamplingParams

    try:
        return SamplingParams(args.temperature, args.top_k, args.top_p, args.seed)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"sampling options: {exc}") from None


def at_least(value: int, low: int, option: str, high: int | None = None) -> int:
    if value < low or (high is not None and value > high):
        raise UsageError(f"{option} must be {'in ' + str(low) + '..' + str(high) if high else 'at least ' + str(low)}"
                         f", got {value}")
    return value


def cmd_download(args: argparse.Namespace) -> None:
    from .hub import download

    total = 0
    for what, path, size in download(args.revision, convert_now=not args.no_convert):
        print(f"{size / 2**30:8.2f} GiB  {what}\n            {path}")
        total += size
    print(f"{total / 2**30:8.2f} GiB  in all")


def cmd_chat(args: argparse.Namespace) -> None:
    from .model.vision import load_image

    params, limit = sampling_from_args(args), at_least(args.max_new_tokens, 1, "--max-new-tokens")
    image = load_image(args.image) if args.image else None  # checked before the model loads
    engine = load_engine(args)
    session = engine.new_session(image)
    questions = args.question or iter(lambda: input("you> "), "")
    for question in questions:
        event = None
        for event in engine.chat(session, question, params, limit):
            print(event.delta, end="", flush=True)
        m = event.metrics
        print(f"\n  [{m.tokens} tokens, first after {m.ttft_s * 1000:.0f} ms, "
              f"{m.decode_tokens_per_s or 0:.1f} tokens/s{'; ' + event.note if event.note else ''}]")


def cmd_generate(args: argparse.Namespace) -> None:
    from .engine import MAX_IMAGES_PER_PROMPT

    count = at_least(args.num_images, 1, "--num-images", MAX_IMAGES_PER_PROMPT)
    if args.guidance_scale is not None and not 0.0 <= args.guidance_scale <= 20.0:
        raise UsageError(f"--guidance-scale must be in [0, 20] (1 = off), got {args.guidance_scale}")
    sampling_from_args(with_image_defaults(args, ImageDefaults()))  # bad flags fail before the model loads
    engine = load_engine(args)
    args = with_image_defaults(args, engine.image_defaults)
    params = sampling_from_args(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for event in engine.text_to_image(args.prompt, count, params, args.guidance_scale):
        pass
    for i, image in enumerate(event.images):
        image.save(out / f"image_{i}.png")
    m = event.metrics
    print(f"{len(event.images)} images in {m.total_s:.2f} s ({m.decode_tokens_per_s or 0:.0f} tokens/s) -> {out}"
          + (f"\nnote: {event.note}" if event.note else ""))


def cmd_compare(args: argparse.Namespace) -> None:
    from .compare import run

    run(args, load_engine)


def cmd_bench(args: argparse.Namespace) -> None:
    if not torch.cuda.is_available():
        sys.exit("the benchmark measures GPU decoding and needs a CUDA GPU; none is visible here")
    out = Path(args.out)
    if args.all:
        from .bench.suite import run as run_suite
        run_suite(out)
        return
    if args.tasks or not args.long_context:
        from .bench.tasks import run as run_tasks
        run_tasks(out, baseline=not args.no_baseline)
    if args.long_context or not args.tasks:
        from .bench.long_context import run as run_long
        run_long(args.lengths, out)
    from .bench.report import render
    print(render(out))


def sampling_arguments(p: argparse.ArgumentParser, model_defaults: bool = False) -> None:
    """model_defaults: unset flags (None) take the model's suggested text-to-image settings (ImageDefaults);
    otherwise they default to the official greedy decoding."""
    official = ImageDefaults()
    later = " (default: the model's suggestion)" if model_defaults else ""
    for flag, kind, value, meaning in (("--temperature", float, official.temperature, ""),
                                       ("--top-k", int, official.top_k, "1 = greedy (the official setting), 0 = off"),
                                       ("--top-p", float, official.top_p, "0 = off")):
        p.add_argument(flag, type=kind, default=None if model_defaults else value, help=(meaning + later) or None)
    p.add_argument("--seed", type=int, default=None)


def with_image_defaults(args: argparse.Namespace, defaults: ImageDefaults) -> argparse.Namespace:
    """`args` with every unset text-to-image setting taken from `defaults`."""
    fields = ("temperature", "top_k", "top_p", "guidance_scale")
    return argparse.Namespace(**{**vars(args), **{f: getattr(defaults, f) for f in fields
                                                   if getattr(args, f) is None}})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m omnimamba", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="also show the traceback of a mistake's error")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("download", parents=[common],
                       help="fetch every weight file into the Hugging Face cache, ahead of time")
    p.add_argument("--revision", default=None)
    p.add_argument("--no-convert", action="store_true", help="skip the one-time conversion to safetensors")
    p.set_defaults(func=cmd_download)
    p = sub.add_parser("chat", parents=[common], help="ask questions about an image")
    add_model_arguments(p)
    sampling_arguments(p)
    p.add_argument("--image", default=None)
    p.add_argument("--question", action="append", help="repeat for a multi-turn chat; omit for a prompt")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.set_defaults(func=cmd_chat)
    p = sub.add_parser("generate", parents=[common], help="text to image")
    add_model_arguments(p)
    sampling_arguments(p, model_defaults=True)
    p.add_argument("--prompt", required=True)
    p.add_argument("--num-images", type=int, default=1)
    p.add_argument("--guidance-scale", type=float, default=None,
                   help="1 = off (the official setting; default: the model's suggestion)")
    p.add_argument("--out", default="outputs")
    p.set_defaults(func=cmd_generate)
    p = sub.add_parser("compare", parents=[common],
                       help="OmniMamba beside Show-o outputs: manifest, grids, HTML report")
    add_model_arguments(p)
    from .compare import add_arguments as add_compare_arguments

    add_compare_arguments(p)
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("bench", parents=[common],
                       help="GPU benchmarks: task speed vs stock mamba-ssm, long context vs a Transformer")
    p.add_argument("--all", action="store_true",
                   help="every published figure (tasks, long context, start-up), each part in its own process, "
                        "within ~7 minutes on an H200; JSON files and summary.md in --out")
    p.add_argument("--tasks", action="store_true", help="only the task benchmark")
    p.add_argument("--long-context", action="store_true", help="only the long-context benchmark")
    p.add_argument("--lengths", default="1k,4k,16k,64k,100k")
    p.add_argument("--no-baseline", action="store_true", help="skip stock mamba-ssm")
    p.add_argument("--out", default="outputs/bench")
    p.set_defaults(func=cmd_bench)
    from .train import cli as train_cli

    p = sub.add_parser("train", help="train or fine-tune: the paper's recipe as presets (docs/training.md)")
    train_cli.add_train_arguments(p, recipes=("shapes",))
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("prepare", help="pre-tokenize text-to-image images with the VQ into shards, once")
    train_cli.add_prepare_arguments(p)
    p.set_defaults(func=train_cli.cmd_prepare)
    return parser


def cmd_train(args: argparse.Namespace) -> None:
    """One stage of the paper's recipe (train/), or the whole multi-stage shapes recipe (shapes/recipe.py)."""
    if args.preset != "shapes":
        from .train import cli as train_cli

        return train_cli.cmd_train(args)
    from .shapes.recipe import ShapesRecipe, run

    print(f"shipped: {run(ShapesRecipe(), args.out or 'runs/shapes', args.max_steps)}")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        sys.exit(130)
    except user_errors() as exc:
        if getattr(args, "debug", False):
            logging.getLogger(__name__).exception("the command failed")
        sys.exit(f"error: {exc}")
