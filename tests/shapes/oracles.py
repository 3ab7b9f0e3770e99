"""Rule-based stand-ins for a perfect model, built on the checker: they show the harness can score 100%."""
from __future__ import annotations

import re

import numpy as np
from PIL import Image

from omnimamba.shapes.checker import segment
from omnimamba.shapes.language import caption, colour_words, kind_words, parse_caption
from omnimamba.shapes.questions import NUMBER_NAMES
from omnimamba.shapes.world import Scene, Shape, _place, holds, render

_EXTREME = {"left": ("left", 0, min), "right": ("right", 0, max), "top": ("above", 1, min),
            "highest": ("above", 1, min), "bottom": ("below", 1, max), "lowest": ("below", 1, max)}
_WHERE = {"left": "on the left", "right": "on the right", "above": "at the top", "below": "at the bottom"}


def oracle_answer(image: Image.Image, question: str) -> str:
    blobs = segment(image)
    q = question.lower()
    colours, kinds = colour_words(q), kind_words(q)
    if q.startswith(("how many", "count")):
        n = sum((not colours or b.colour in colours) and (not kinds or b.kind in kinds) for b in blobs)
        return f"There are {NUMBER_NAMES[n]} of them." if n != 1 else "There is one."
    if "colour" in q or "color" in q:
        return f"It is {next(b.colour for b in blobs if b.kind in kinds)}."
    if colours and "shape" in q:
        return f"It is a {next(b.kind for b in blobs if b.colour in colours)}."
    for word, (rel, axis, pick) in _EXTREME.items():
        if re.search(rf"\b{word}", q):
            best = pick(blobs, key=lambda b: b.centre[axis])
            return f"The {best.colour} {best.kind} is {_WHERE[rel]}."
    scene = Scene(tuple(Shape(b.kind, b.colour, b.box) for b in blobs), (240, 240, 240))
    return caption(scene, np.random.default_rng(0))[0]


def oracle_draw(prompt: str, k: int, seed: int = 0) -> list[Image.Image]:
    """Render k different scenes that satisfy the prompt."""
    description = parse_caption(prompt)
    rng, images = np.random.default_rng(seed), []
    while len(images) < k:
        shapes = _place(rng, list(description.objects))
        if shapes and all(holds(r, shapes[i].centre, shapes[j].centre) for i, r, j in description.relations):
            images.append(render(Scene(tuple(shapes), (240, 240, 240))))
    return images
