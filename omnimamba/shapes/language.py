"""Words of the shapes world: captions (varied wording, true relations), their parser, and answer parsing.

A caption is generated together with its meaning, a `Description`: the objects in mention order and the
relations it states. `parse_caption` recovers that meaning from text (ours or a model's), which is what the
image checker and the "describe" scoring use. Relations are only stated when `world.clear_relations` allows.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .world import COLOURS, INVERSE, KINDS, Scene, clear_relations

REL_PHRASE = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}
NUMBER_WORDS = {"no": 0, "zero": 0, "none": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
_COLOUR_RE = "|".join(COLOURS)
_MENTION = re.compile(rf"\b({_COLOUR_RE})\s+(circle|square|triangle)s?\b", re.I)
_REL_IN_GAP = [("left", re.compile(r"\bleft of\b")), ("right", re.compile(r"\bright of\b")),
               ("above", re.compile(r"\b(above|over)\b")), ("below", re.compile(r"\b(below|under|beneath)\b"))]
_ORDERS = {"left": re.compile(r"\bleft to right\b"), "above": re.compile(r"\btop to bottom\b")}


@dataclass(frozen=True)
class Description:
    objects: tuple[tuple[str, str], ...]  # (colour, kind) in mention order
    relations: tuple[tuple[int, str, int], ...] = ()  # (i, rel, j): object i is `rel` of object j


def article(colour: str) -> str:
    return "an" if colour[0] in "aeiou" else "a"


def noun_phrase(colour: str, kind: str) -> str:
    return f"{article(colour)} {colour} {kind}"


def caption(scene: Scene, rng: np.random.Generator) -> tuple[str, Description]:
    """A lower-case caption of the whole scene in one of several wordings, and what it states."""
    order = [int(i) for i in rng.permutation(len(scene.shapes))]
    shapes = [scene.shapes[i] for i in order]
    objects = tuple((s.colour, s.kind) for s in shapes)
    phrases = [noun_phrase(*o) for o in objects]
    if len(shapes) == 1:
        template = ["{0}", "one {0}", "a single shape: {0}", "{0} on a light background", "a picture of {0}"]
        return _pick(rng, template).format(*phrases), Description(objects)
    if len(shapes) == 2:
        return _two(rng, shapes, objects, phrases)
    return _three(rng, scene, shapes, objects)


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _two(rng, shapes, objects, phrases) -> tuple[str, Description]:
    rels = clear_relations(shapes[0].centre, shapes[1].centre)
    if rng.random() < 0.15:
        text = _pick(rng, ["{0} and {1}", "two shapes: {0} and {1}"]).format(*phrases)
        return text, Description(objects)
    rel = rels[int(rng.integers(len(rels)))]  # non-overlapping shapes always have a clear relation
    template = _pick(rng, ["{0} {r} {1}", "two shapes: {0} {r} {1}", "there is {0} {r} {1}"])
    return template.format(*phrases, r=REL_PHRASE[rel]), Description(objects, ((0, rel, 1),))


def _three(rng, scene: Scene, shapes, objects) -> tuple[str, Description]:
    for rel, word in (("left", "from left to right"), ("above", "from top to bottom")):
        order = _chain(scene, rel)
        if order is not None and rng.random() < 0.5:
            objs = tuple((scene.shapes[i].colour, scene.shapes[i].kind) for i in order)
            listing = "{0}, {1} and {2}".format(*(noun_phrase(*o) for o in objs))
            text = _pick(rng, [f"{listing} {word}", f"three shapes {word}: {listing}"])
            return text, Description(objs, ((0, rel, 1), (1, rel, 2)))
    phrases = [noun_phrase(*o) for o in objects]
    if rng.random() < 0.2:
        return "three shapes: {0}, {1} and {2}".format(*phrases), Description(objects)
    rels = clear_relations(shapes[0].centre, shapes[1].centre)
    rel = rels[int(rng.integers(len(rels)))]
    template = _pick(rng, ["{0} {r} {1}, and {2}", "three shapes: {0} {r} {1}, and {2}"])
    return template.format(*phrases, r=REL_PHRASE[rel]), Description(objects, ((0, rel, 1),))


def _chain(scene: Scene, rel: str) -> list[int] | None:
    """Shape indices ordered so that each is clearly `rel` of the next, or None."""
    axis = 0 if rel == "left" else 1
    order = sorted(range(len(scene.shapes)), key=lambda i: scene.shapes[i].centre[axis])
    pairs = zip(order, order[1:])
    ok = all(rel in clear_relations(scene.shapes[a].centre, scene.shapes[b].centre) for a, b in pairs)
    return order if ok else None


def parse_caption(text: str) -> Description:
    """The objects a text mentions (colour + kind) and the relations it states between neighbouring mentions;
    "from left to right" / "from top to bottom" chain all of them."""
    matches = list(_MENTION.finditer(text))
    objects = tuple((m.group(1).lower(), m.group(2).lower()) for m in matches)
    lowered = text.lower()
    for rel, pattern in _ORDERS.items():
        if pattern.search(lowered) and len(objects) > 1:
            return Description(objects, tuple((i, rel, i + 1) for i in range(len(objects) - 1)))
    relations = []
    for i, (a, b) in enumerate(zip(matches, matches[1:])):
        gap = lowered[a.end():b.start()]
        found = [rel for rel, pattern in _REL_IN_GAP if pattern.search(gap)]
        if len(found) == 1:
            relations.append((i, found[0], i + 1))
    return Description(objects, tuple(relations))


def extremes_of(description: Description) -> dict[str, int]:
    """Which mentioned object is clearly the most left/right/top/bottom one, as far as the text says."""
    n, found = len(description.objects), {}
    for rel in {r for _, r, _ in description.relations}:
        chain = sorted((i, j) for i, r, j in description.relations if r == rel)
        if n == 2 or len(chain) == n - 1:  # a full chain 0 -> 1 -> ... orders every object
            found[rel], found[INVERSE[rel]] = chain[0][0], chain[-1][1]
    return found


# ----- lenient answer parsing: the expected word must be the only word of its class in the answer -----
def colour_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if w in COLOURS}


def kind_words(text: str) -> set[str]:
    return {w.rstrip("s") for w in re.findall(r"[a-z]+", text.lower()) if w.rstrip("s") in KINDS}


def numbers(text: str) -> set[int]:
    words = re.findall(r"[a-z]+|\d+", text.lower())
    return {int(w) if w.isdigit() else NUMBER_WORDS[w] for w in words if w.isdigit() or w in NUMBER_WORDS}


def mentions(text: str) -> set[tuple[str, str]]:
    return set(parse_caption(text).objects)
