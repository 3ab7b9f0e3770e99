"""Measure a shapes model on freshly rendered held-out scenes and prompts (the model card's numbers).

    python -m omnimamba.shapes.evaluate [--model PATH] [--chat N] [--t2i N] [--out report.json]

Image chat: greedy answers to world questions (quality.evaluate_chat). Text to image: for each prompt, two
sampled images with different seeds (optionally the first one greedy, and with classifier-free guidance);
quality.evaluate_t2i checks every one with the checker and reports whether the images of one prompt differ.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from PIL import Image

from ..engine import Engine
from ..sampling import SamplingParams
from .quality import evaluate_chat, evaluate_t2i

log = logging.getLogger(__name__)
SAMPLING = dict(temperature=1.0, top_k=0, top_p=0.0)  # what "several images" uses in the app


def answer_fn(engine: Engine, max_new_tokens: int = 48):
    def answer(image: Image.Image, question: str) -> str:
        session = engine.new_session(image)
        try:
            text = ""
            for event in engine.chat(session, question, SamplingParams(), max_new_tokens=max_new_tokens):
                text = event.text
            return text
        finally:
            engine.end_session(session)
    return answer


def draw_fn(engine: Engine, seed: int = 0, greedy_first: bool = False, guidance_scale: float = 1.0):
    """Sampled images, each with its own seed (greedy_first: the first of each prompt greedy, the official 1.3B
    setting; a small model's greedy image is mostly its background, the likeliest code at every position)."""
    calls = iter(range(10**9))

    def one(prompt: str, params: SamplingParams) -> list[Image.Image]:
        for event in engine.text_to_image(prompt, 1, params, guidance_scale=guidance_scale):
            images = event.images
        return images

    def draw(prompt: str, n: int) -> list[Image.Image]:
        images = one(prompt, SamplingParams()) if greedy_first else []
        while len(images) < n:
            images += one(prompt, SamplingParams(seed=seed * 1_000_003 + next(calls), **SAMPLING))
        return images
    return draw


def evaluate(engine: Engine, chat: int, t2i: int, seed: int = 0, greedy_first: bool = False,
             guidance_scale: float = 1.0) -> dict:
    report: dict = {"model": engine.info().get("model", "?"), "seed": seed,
                    "t2i_setting": {"greedy_first": greedy_first, "guidance_scale": guidance_scale, **SAMPLING}}
    start = time.perf_counter()
    report["chat"] = evaluate_chat(answer_fn(engine), n=chat, seed=seed)
    report["chat_seconds"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    report["t2i"] = evaluate_t2i(draw_fn(engine, seed, greedy_first, guidance_scale), n=t2i, seed=seed,
                                 images_per_prompt=2)
    report["t2i_seconds"] = round(time.perf_counter() - start, 1)
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="shapes", help="a trained folder / model.safetensors, or 'shapes'")
    p.add_argument("--chat", type=int, default=200, help="image-chat questions")
    p.add_argument("--t2i", type=int, default=100, help="text-to-image prompts (two sampled images each)")
    p.add_argument("--greedy-first", action="store_true", help="the first image of each prompt greedy")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (1 = none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--bf16-decode", action=argparse.BooleanOptionalAction, default=None,
                   help="CPU: decode from bf16 copies of the weights (default: as the app, on for a trained checkpoint of bf16 values)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    engine = Engine.load(args.model, device=args.device, bf16_decode=args.bf16_decode)
    report = evaluate(engine, args.chat, args.t2i, args.seed, args.greedy_first, args.guidance)
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
