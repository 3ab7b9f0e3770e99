"""Draw the app's examples for the shapes model (scenes of its world) and write assets/examples/examples_shapes.json.

    python assets/make_shapes_examples.py

The shapes model (docs/shapes-model.md) knows only its world: flat circles, squares and triangles in seven colours
on a light background, asked about in its own wording. The app shows these examples instead of the photo-like
ones when that model is loaded. Deterministic: the same PNG bytes on every run. Only combinations that training
showed (not the held-out orange triangle, purple circle and black square).
"""
from __future__ import annotations

import json
from pathlib import Path

from omnimamba.shapes.world import HELD_OUT, Scene, Shape, render

OUT = Path(__file__).resolve().parent / "examples"
FOLDER = "shapes_world"
BACKGROUND = (240, 238, 232)


def scene(*shapes: tuple[str, str, int, int, int]) -> Scene:
    """(colour, kind, left, top, side) per shape, in pixels of the 256 x 256 image."""
    return Scene(tuple(Shape(kind, colour, (x, y, x + side, y + side)) for colour, kind, x, y, side in shapes),
                 BACKGROUND)


CHAT = [  # (file, scene, question)
    ("left_right.png", scene(("red", "circle", 30, 100, 70), ("blue", "square", 160, 90, 64)),
     "Which shape is on the left?"),
    ("three.png", scene(("green", "triangle", 24, 30, 72), ("yellow", "square", 150, 60, 56),
                        ("purple", "square", 90, 170, 60)), "How many shapes are there?"),
    ("one_circle.png", scene(("orange", "circle", 90, 80, 80)), "What colour is the circle?"),
    ("above.png", scene(("blue", "triangle", 100, 20, 70), ("red", "square", 96, 160, 64)), "Describe the image."),
    ("two_kinds.png", scene(("yellow", "circle", 40, 150, 60), ("black", "triangle", 160, 40, 76)),
     "What shape is the yellow one?"),
    ("topmost.png", scene(("green", "square", 20, 20, 50), ("purple", "triangle", 120, 110, 70),
                          ("red", "triangle", 40, 180, 56)), "Which shape is at the top?"),
]

TEXT_TO_IMAGE = [
    "a red circle to the left of a blue square",
    "a green triangle",
    "two shapes: a yellow square above a purple triangle",
    "a blue circle and an orange square",
    "three shapes: a black circle, a red square and a green triangle",
    "a purple square to the right of a yellow circle",
]


def main(out: Path = OUT) -> None:
    (out / FOLDER).mkdir(parents=True, exist_ok=True)
    for name, world_scene, _ in CHAT:
        assert not set(world_scene.combos) & set(HELD_OUT), name
        render(world_scene).save(out / FOLDER / name, optimize=True)
    examples = {"chat": [{"image": f"{FOLDER}/{name}", "question": q} for name, _, q in CHAT],
                "text_to_image": TEXT_TO_IMAGE}
    (out / "examples_shapes.json").write_text(json.dumps(examples, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(CHAT)} images and examples_shapes.json to {out}")


if __name__ == "__main__":
    main()
