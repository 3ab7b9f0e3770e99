"""The shapes world: seeded scenes of one to three flat shapes on a light background, and their geometry.

A scene is 256 x 256 RGB: a plain light background (a slightly different tint per scene) and 1-3
non-overlapping flat shapes (circle, square, upright triangle), each 1/8..1/3 of the side, anywhere.
Colour-shape combinations in HELD_OUT never appear in training scenes; evaluation scenes include them on purpose.
Spatial relations are between shape centres and are only called "clear" when the centres differ plainly
(see `clear_relations`), so every caption or answer that states one is true and unambiguous.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np
from PIL import Image, ImageDraw

SIZE = 256
KINDS = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 40, 40),
    "green": (46, 160, 67),
    "blue": (38, 84, 214),
    "yellow": (242, 206, 32),
    "orange": (247, 134, 22),
    "purple": (136, 56, 178),
    "black": (24, 24, 24),
}
ALL_COMBOS: tuple[tuple[str, str], ...] = tuple(product(COLOURS, KINDS))  # 21 (colour, kind) pairs
HELD_OUT: frozenset[tuple[str, str]] = frozenset({("orange", "triangle"), ("purple", "circle"), ("black", "square")})
TRAIN_COMBOS: tuple[tuple[str, str], ...] = tuple(c for c in ALL_COMBOS if c not in HELD_OUT)
MIN_SIDE, MAX_SIDE = SIZE // 8, SIZE // 3  # 32..85 px
GAP = 6  # px between the bounding boxes of two shapes
CLEAR = 24  # px: a relation is stated only when the centres differ at least this much on its axis...
DOMINANCE = 0.5  # ...and at least this fraction of their difference on the other axis
RELATIONS = ("left", "right", "above", "below")
INVERSE = {"left": "right", "right": "left", "above": "below", "below": "above"}


@dataclass(frozen=True)
class Shape:
    kind: str  # one of KINDS
    colour: str  # one of COLOURS
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, end exclusive; always square

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2

    @property
    def side(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def name(self) -> str:
        return f"{self.colour} {self.kind}"


@dataclass(frozen=True)
class Scene:
    shapes: tuple[Shape, ...]
    background: tuple[int, int, int]

    @property
    def combos(self) -> list[tuple[str, str]]:
        return [(s.colour, s.kind) for s in self.shapes]


def sample_scene(rng: np.random.Generator, combos: tuple[tuple[str, str], ...] = TRAIN_COMBOS,
                 num_shapes: int | None = None, include: tuple[str, str] | None = None) -> Scene:
    """A random scene whose (colour, kind) pairs come from `combos`, all different; `include` forces one pair in."""
    n = int(num_shapes or rng.integers(1, 4))
    while True:  # rejection sampling; three shapes of at most 1/3 side always fit after a few tries
        picks = [include] if include else []
        pool = [c for c in combos if c not in picks]
        picks += [pool[i] for i in rng.choice(len(pool), n - len(picks), replace=False)]
        shapes = _place(rng, [picks[i] for i in rng.permutation(n)])
        if shapes is not None:
            background = tuple(int(v) for v in rng.integers(228, 252, size=3))
            return Scene(tuple(shapes), background)


def _place(rng: np.random.Generator, picks: list[tuple[str, str]], tries: int = 50) -> list[Shape] | None:
    shapes: list[Shape] = []
    for colour, kind in picks:
        for _ in range(tries):
            side = int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
            x0, y0 = (int(v) for v in rng.integers(0, SIZE - side + 1, size=2))
            box = (x0, y0, x0 + side, y0 + side)
            if all(_apart(box, s.box) for s in shapes):
                shapes.append(Shape(kind, colour, box))
                break
        else:
            return None
    return shapes


def _apart(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[2] + GAP <= b[0] or b[2] + GAP <= a[0] or a[3] + GAP <= b[1] or b[3] + GAP <= a[1]


def render(scene: Scene) -> Image.Image:
    """The scene as a 256 x 256 RGB image (crisp edges: flat colours only)."""
    image = Image.new("RGB", (SIZE, SIZE), scene.background)
    draw = ImageDraw.Draw(image)
    for shape in scene.shapes:
        _draw(draw, shape, COLOURS[shape.colour])
    return image


def label_maps(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel class maps (256, 256) uint8: colour index + 1 and kind index + 1, 0 for the background."""
    colour_map, kind_map = Image.new("L", (SIZE, SIZE), 0), Image.new("L", (SIZE, SIZE), 0)
    names = list(COLOURS)
    for shape in scene.shapes:
        _draw(ImageDraw.Draw(colour_map), shape, names.index(shape.colour) + 1)
        _draw(ImageDraw.Draw(kind_map), shape, KINDS.index(shape.kind) + 1)
    return np.asarray(colour_map), np.asarray(kind_map)


def shape_map(scene: Scene) -> np.ndarray:
    """Per-pixel map (256, 256) uint8: the index + 1 of the shape covering the pixel, 0 for the background."""
    index_map = Image.new("L", (SIZE, SIZE), 0)
    for i, shape in enumerate(scene.shapes):
        _draw(ImageDraw.Draw(index_map), shape, i + 1)
    return np.asarray(index_map)


def _draw(draw: ImageDraw.ImageDraw, shape: Shape, fill: object) -> None:
    x0, y0, x1, y1 = shape.box
    if shape.kind == "circle":
        draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=fill)
    elif shape.kind == "square":
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=fill)
    else:  # upright isosceles triangle filling its box: apex at the top middle
        draw.polygon([((x0 + x1 - 1) / 2, y0), (x0, y1 - 1), (x1 - 1, y1 - 1)], fill=fill)


def clear_relations(a: tuple[float, float], b: tuple[float, float]) -> list[str]:
    """Relations of centre a to centre b that are plainly true ("left" = a is to the left of b)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    found = []
    if abs(dx) >= CLEAR and abs(dx) >= DOMINANCE * abs(dy):
        found.append("left" if dx > 0 else "right")
    if abs(dy) >= CLEAR and abs(dy) >= DOMINANCE * abs(dx):
        found.append("above" if dy > 0 else "below")
    return found


def holds(relation: str, a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether centre a is `relation` of centre b at all (the lenient test applied to generated images)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    return {"left": dx > 0, "right": dx < 0, "above": dy > 0, "below": dy < 0}[relation]


def extreme(centres: list[tuple[float, float]], direction: str) -> int | None:
    """Index of the centre that is clearly the most `direction` one (clear against every other), else None."""
    for i, c in enumerate(centres):
        if all(direction in clear_relations(c, other) for j, other in enumerate(centres) if j != i):
            return i
    return None
