"""Quality of a shapes model, measured on freshly rendered evaluation scenes (never training samples).

Evaluation scenes come from their own seed domain and draw from all 21 colour-shape combinations; every
other scene holds one of the held-out combinations. Each result is also reported apart for the two kinds of scene:
"seen_*" (only combinations that training showed: the quality goals) and "held_out_*" (generalisation).
    evaluate_chat(answer_fn, n, seed): accuracy per question type (colour, shape, count, relation, describe)
    evaluate_t2i(draw_fn, n, seed):    prompted colours found, prompted shapes found, relations that hold,
                                       and whether sampled images of one prompt differ
Answers are parsed leniently but honestly (questions.score); images go through the checker (checker.py).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable

import numpy as np
from PIL import Image

from .checker import check
from .language import caption
from .questions import QUESTION_TYPES, ask, facts_of_scene, score
from .records import stream_rng
from .scene_batches import eval_scenes
from .world import HELD_OUT, Scene, render

AnswerFn = Callable[[Image.Image, str], str]  # (image, question) -> answer text
DrawFn = Callable[[str, int], list[Image.Image]]  # (prompt, number of images) -> images
MIN_MEAN_DIFF = 2.0  # mean absolute pixel difference (0..255) above which two images count as different


class Tally:
    """Hit rates per key, in all and apart for scenes with only seen combinations and those holding a held-out one."""

    def __init__(self):
        self.hits: dict[str, int] = defaultdict(int)
        self.total: dict[str, int] = defaultdict(int)

    def add(self, key: str, ok: bool, scene: Scene) -> None:
        held = any(c in HELD_OUT for c in scene.combos)
        keys = [key, f"held_out_{key}" if held else f"seen_{key}"]
        for k in keys:
            self.hits[k] += bool(ok)
            self.total[k] += 1

    def rates(self) -> dict[str, float]:
        return {k: self.hits[k] / self.total[k] for k in sorted(self.total)}

    def counts(self) -> dict[str, int]:
        return {f"n_{k}": v for k, v in sorted(self.total.items())}


def evaluate_chat(answer_fn: AnswerFn, n: int = 100, seed: int = 0, max_examples: int = 5) -> dict:
    """Ask every unambiguous question type about `n` fresh scenes; accuracy per type, plus "overall",
    the question counts ("n_*") and a few wrong answers ("mistakes") to look at."""
    tally, mistakes = Tally(), []
    rng = stream_rng(seed, "eval-questions")
    for scene in eval_scenes(seed, n):
        image, facts = render(scene), facts_of_scene(scene)
        for qtype in QUESTION_TYPES:
            qa = ask(facts, qtype, rng)
            if qa is None:
                continue
            answer = answer_fn(image, qa.question)
            ok = score(qa, answer)
            tally.add(qtype, ok, scene)
            tally.add("overall", ok, scene)
            if not ok and len(mistakes) < max_examples:
                mistakes.append({"question": qa.question, "answer": answer, "expected": qa.answer})
    return {**tally.rates(), **tally.counts(), "mistakes": mistakes}


def evaluate_t2i(draw_fn: DrawFn, n: int = 50, seed: int = 0, images_per_prompt: int = 2) -> dict:
    """Draw `images_per_prompt` images for each of `n` fresh captions and check them.

    colours_found: every prompted colour is there; objects_found: every prompted (colour, shape);
    relation_holds: every stated relation holds (over images whose prompt states one); exact: the image holds
    exactly the prompted shapes; diverse: the images of one prompt differ (needs images_per_prompt >= 2).
    """
    tally = Tally()
    rng = stream_rng(seed, "eval-prompts")
    for scene in eval_scenes(seed, n):
        text, description = caption(scene, rng)
        images = draw_fn(text, images_per_prompt)
        if len(images) != images_per_prompt:
            raise ValueError(f"draw_fn returned {len(images)} images for {images_per_prompt} requested")
        for image in images:
            result = check(image, description)
            tally.add("colours_found", result.colours_found, scene)
            tally.add("objects_found", result.objects_found, scene)
            tally.add("exact", result.exact, scene)
            if result.relations_hold is not None:
                tally.add("relation_holds", result.relations_hold, scene)
        if images_per_prompt > 1:
            tally.add("diverse", all_differ(images), scene)
    return {**tally.rates(), **tally.counts()}


def all_differ(images: list[Image.Image]) -> bool:
    arrays = [np.asarray(im.convert("RGB"), dtype=np.float32) for im in images]
    return all(np.abs(a - b).mean() > MIN_MEAN_DIFF for i, a in enumerate(arrays) for b in arrays[i + 1:])
