"""Starting the app: its command line (each flag also an OMNIMAMBA_* environment variable), the example
inputs shipped in assets/, and the warm-up before serving."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from pathlib import Path

from PIL import Image

from omnimamba.compare import CompareError, read_prompts, read_questions
from omnimamba.config import DTYPES, OmniMambaConfig
from omnimamba.model import OmniMamba
from omnimamba.engine import Engine
from omnimamba.sampling import SamplingParams

from .format import parameters_text
from .gpu import wants_batching

log = logging.getLogger("omnimamba.app")

QUEUE_SIZE = 32  # waiting requests beyond this are refused with "queue full"
ASSETS = Path(__file__).resolve().parents[1] / "assets"
EXAMPLES = ASSETS / "examples"


def compare_inputs() -> tuple[list[str], list[list[str]]]:
    """The compare command's prompt and question files (assets/), for the Compare tab's pickers."""
    try:
        prompts = read_prompts(ASSETS / "prompts.txt")
    except CompareError:
        prompts = []
    try:
        questions = [[str(image), question] for image, question in read_questions(ASSETS / "questions.txt")
                     if image is not None]
    except CompareError:
        questions = []
    return prompts, questions


def load_examples(shapes_world: bool = False) -> dict:
    """The app's examples: photo-like scenes and prompts for OmniMamba-1.3B, or, for a model of the shapes preset
    (which knows only its world of flat shapes), scenes and prompts of that world (assets/make_shapes_examples.py)."""
    path = EXAMPLES / ("examples_shapes.json" if shapes_world else "examples.json")
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"chat": [], "text_to_image": []}


def parse_args(argv: list[str] | None = None, description: str | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=env("OMNIMAMBA_MODEL", "auto"),
                   help="auto (the official weights when cached, else the shipped 'shapes' model), shapes, a Hub id, "
                        "a local OmniMamba-1.3b.pth or folder, a model .safetensors, or tiny-random "
                        "(env OMNIMAMBA_MODEL)")
    p.add_argument("--revision", default=env("OMNIMAMBA_REVISION"), help="Hub revision (env OMNIMAMBA_REVISION)")
    p.add_argument("--device", default=env("OMNIMAMBA_DEVICE"), help="cuda, cuda:1, cpu (env OMNIMAMBA_DEVICE)")
    p.add_argument("--dtype", default=env("OMNIMAMBA_DTYPE"), choices=sorted(DTYPES),
                   help="default: bf16 on GPU, fp32 on CPU (env OMNIMAMBA_DTYPE)")
    p.add_argument("--tokenizer", default=env("OMNIMAMBA_TOKENIZER"),
                   help="a GPT-NeoX-20B tokenizer.json instead of the shipped copy (env OMNIMAMBA_TOKENIZER)")
    p.add_argument("--offline", action="store_true", default=env("OMNIMAMBA_OFFLINE", "") not in ("", "0"),
                   help="use only the local Hugging Face cache (env OMNIMAMBA_OFFLINE=1)")
    p.add_argument("--host", default=env("OMNIMAMBA_HOST") or env("GRADIO_SERVER_NAME") or "127.0.0.1",
                   help="address to serve on; 0.0.0.0 for all interfaces (env OMNIMAMBA_HOST)")
    p.add_argument("--port", type=int, default=int(env("OMNIMAMBA_PORT") or env("GRADIO_SERVER_PORT") or 7860),
                   help="(env OMNIMAMBA_PORT)")
    p.add_argument("--share", action="store_true", default=env("OMNIMAMBA_SHARE", "") not in ("", "0"),
                   help="also open a public *.gradio.live link (off by default; env OMNIMAMBA_SHARE=1)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   default=env("OMNIMAMBA_WARMUP", "1") not in ("", "0"),
                   help="serve at once instead of running one short request of each kind first on a GPU "
                        "(env OMNIMAMBA_WARMUP=0)")
    p.add_argument("--batching", choices=("auto", "on", "off"), default=env("OMNIMAMBA_BATCHING") or "auto",
                   help="step concurrent requests together in one decode batch (auto: on, except on ZeroGPU; "
                        "env OMNIMAMBA_BATCHING)")
    p.add_argument("--int8-decode", action="store_true", default=env("OMNIMAMBA_INT8_DECODE", "") not in ("", "0"),
                   help="decode with 8-bit copies of the weights (env OMNIMAMBA_INT8_DECODE=1)")
    p.add_argument("--bf16-decode", action=argparse.BooleanOptionalAction,
                   default={"": None, "0": False}.get(env("OMNIMAMBA_BF16_DECODE", ""), True),
                   help="CPU, fp32 model: decode with bf16 copies of the weights, about 1.5x faster images "
                        "(default: on for a trained checkpoint of bf16 values, such as the shipped shapes model; "
                        "env OMNIMAMBA_BF16_DECODE=1 / 0)")
    p.add_argument("--queue-size", type=int, default=int(env("OMNIMAMBA_QUEUE_SIZE") or QUEUE_SIZE),
                   help="requests that may wait for the GPU before new ones are refused")
    args = p.parse_args(argv)
    if args.dtype is not None and args.dtype not in DTYPES:  # argparse does not check defaults from the environment
        p.error(f"OMNIMAMBA_DTYPE must be one of {sorted(DTYPES)}, got {args.dtype!r}")
    if args.int8_decode and args.bf16_decode:
        p.error("--int8-decode and --bf16-decode exclude each other")
    if args.batching not in ("auto", "on", "off"):
        p.error(f"OMNIMAMBA_BATCHING must be auto, on or off, got {args.batching!r}")
    return args


def model_size(model: OmniMamba) -> str:
    """The size the header states: the language model's parameters (the official one is called 1.3B)."""
    if model.config == OmniMambaConfig.official():
        return "1.3B"
    return parameters_text(sum(p.numel() for name, p in model.named_parameters()
                               if name.startswith("llm_backbone.") and ".vqvae." not in name))


def warm_up(engine: Engine) -> None:
    """One short request of each kind before serving: the first call compiles and autotunes the Triton kernels
    (tens of seconds on a fresh GPU), which no visitor should have to wait for."""
    start = time.perf_counter()
    session = engine.new_session(Image.new("RGB", (64, 64), "gray"))
    for _ in engine.chat(session, "Hello", SamplingParams(), 4):
        pass
    engine.end_session(session)
    for _ in engine.text_to_image("a warm-up image", 1, SamplingParams()):
        pass
    log.info("warm-up done in %.1f s", time.perf_counter() - start)


def open_engine_or_fallback(args: argparse.Namespace) -> tuple[Engine, "ModelChoice"]:
    """The model `--model` names; with no --model and no weights this machine can reach (no cached official
    weights, no shipped model, no Hub), the app still starts: on the tiny random model, with a banner that says
    its outputs are noise and how to get the real model (the README's first command works with no network)."""
    from omnimamba.cli import open_engine
    from omnimamba.hub import AUTO, GET_OFFICIAL, TINY_RANDOM, AssetUnavailable

    batching = wants_batching(args.batching)

    try:
        return open_engine(args.model, args.revision, args.device, args.dtype, args.tokenizer, args.offline,
                           batching, args.int8_decode, args.bf16_decode)
    except AssetUnavailable as exc:
        if (args.model or AUTO) != AUTO:
            raise
        logging.getLogger(__name__).warning("no model weights reachable (%s); starting on %s", exc, TINY_RANDOM)
    engine, choice = open_engine(TINY_RANDOM, None, args.device, args.dtype, args.tokenizer, args.offline, batching)
    notice = ("No model weights are reachable here (none cached, none shipped, no Hub), so the app runs on random "
              f"tiny weights to show the interface: answers and images are noise. {GET_OFFICIAL}")
    return engine, dataclasses.replace(choice, notice=notice)
