"""Questions about a scene (or about a caption, for text-only chats), their short canonical answers and scoring.

Only unambiguous questions are asked: "what colour is the circle" needs exactly one circle, "which shape is
on the left" needs one shape clearly left of all others. Each QA carries what a correct answer must contain;
`score` parses an answer leniently but honestly (the expected word must be the only word of its class).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .language import (Description, caption, colour_words, extremes_of, kind_words, mentions, numbers,
                       parse_caption)
from .world import COLOURS, KINDS, SIZE, Scene, extreme, holds

QUESTION_TYPES = ("colour", "shape", "count", "relation", "describe")  # what the evaluation asks
TRAINING_ONLY_TYPES = ("where",)  # asked in training when the recipe says so (`--where-questions`), never scored
NUMBER_NAMES = ["no", "one", "two", "three"]
_COLOUR_Q = ["What colour is the {k}?", "What color is the {k}?", "Which colour is the {k}?",
             "What is the colour of the {k}?", "Tell me the color of the {k}."]
_SHAPE_Q = ["What shape is the {c} one?", "Which shape is {c}?", "What is the {c} shape?",
            "What kind of shape is {c}?"]
_COUNT_Q = ["How many shapes are there?", "How many shapes are in the image?", "How many shapes can you see?",
            "Count the shapes."]
_RELATION_Q = {
    "left": ["Which shape is on the left?", "Which shape is furthest to the left?", "Which shape is the leftmost?"],
    "right": ["Which shape is on the right?", "Which shape is furthest to the right?",
              "Which shape is the rightmost?"],
    "above": ["Which shape is at the top?", "Which shape is highest?", "Which shape is the topmost?"],
    "below": ["Which shape is at the bottom?", "Which shape is lowest?", "Which shape is the bottommost?"],
}
_WHERE = {"left": "on the left", "right": "on the right", "above": "at the top", "below": "at the bottom"}
_WHERE_Q = ["Where is the {c} {k}?", "Where is the {c} {k} in the image?", "In which part of the image is the {c} {k}?"]
_COLUMNS, _ROWS = ("left", "middle", "right"), ("top", "middle", "bottom")
_DESCRIBE_Q = ["Describe the image.", "What do you see?", "What is in this picture?",
               "Describe the picture in one sentence."]


@dataclass(frozen=True)
class Facts:
    """What a question may rely on: the objects, and which one is clearly the most left/right/top/bottom."""
    objects: tuple[tuple[str, str], ...]
    extremes: dict[str, int] = field(default_factory=dict)
    scene: Scene | None = None  # only when the image is seen (needed for "describe")


@dataclass(frozen=True)
class QA:
    type: str  # one of QUESTION_TYPES
    question: str
    answer: str  # the canonical answer used for training
    expected: object  # colour, kind, count, (colour, kind), or the Scene for "describe"


def facts_of_scene(scene: Scene) -> Facts:
    centres = [s.centre for s in scene.shapes]
    found = {} if len(centres) < 2 else {d: extreme(centres, d) for d in _WHERE}
    return Facts(tuple(scene.combos), {d: i for d, i in found.items() if i is not None}, scene)


def facts_of_description(description: Description) -> Facts:
    return Facts(description.objects, extremes_of(description) if len(description.objects) > 1 else {})


def ask(facts: Facts, qtype: str, rng: np.random.Generator) -> QA | None:
    """A question of this type about the facts, or None when none would be unambiguous."""
    return {"colour": _colour, "shape": _shape, "count": _count, "relation": _relation,
            "describe": _describe, "where": _where}[qtype](facts, rng)


def _pick(rng: np.random.Generator, options: list):
    return options[int(rng.integers(len(options)))]


def _colour(facts: Facts, rng) -> QA | None:
    found = _unique(facts, rng, by=1, order=KINDS)  # a kind only one shape has, and that shape's colour
    if found is None:
        return None
    kind, colour = found
    return QA("colour", _pick(rng, _COLOUR_Q).format(k=kind), f"The {kind} is {colour}.", colour)


def _shape(facts: Facts, rng) -> QA | None:
    found = _unique(facts, rng, by=0, order=COLOURS)  # a colour only one shape has, and that shape's kind
    if found is None:
        return None
    colour, kind = found
    return QA("shape", _pick(rng, _SHAPE_Q).format(c=colour), f"The {colour} shape is a {kind}.", kind)


def _unique(facts: Facts, rng, by: int, order) -> tuple[str, str] | None:
    """A value of each (colour, kind) object's field `by` that exactly one object has (picked at random, in
    `order`), and that object's other field; None when every value is shared."""
    counts = Counter(obj[by] for obj in facts.objects)
    unique = [value for value in order if counts[value] == 1]
    if not unique:
        return None
    value = _pick(rng, unique)
    return value, next(obj[1 - by] for obj in facts.objects if obj[by] == value)


def _count(facts: Facts, rng) -> QA:
    roll = rng.random()
    if roll < 0.6:
        n, question, noun = len(facts.objects), _pick(rng, _COUNT_Q), "shape"
    elif roll < 0.8:
        noun = _pick(rng, list(KINDS))
        n, question = sum(k == noun for _, k in facts.objects), f"How many {noun}s are there?"
    else:
        colour = _pick(rng, list(COLOURS))
        n, noun = sum(c == colour for c, _ in facts.objects), f"{colour} shape"
        question = f"How many {colour} shapes are there?"
    answer = f"There is one {noun}." if n == 1 else f"There are {NUMBER_NAMES[n]} {noun}s."
    return QA("count", question, answer, n)


def _relation(facts: Facts, rng) -> QA | None:
    if not facts.extremes:
        return None
    return relation_question(facts, _pick(rng, sorted(facts.extremes)), rng)


def relation_question(facts: Facts, direction: str, rng: np.random.Generator) -> QA:
    """Which shape is clearly the most `direction` (left, right, above, below); it must be in facts.extremes."""
    colour, kind = facts.objects[facts.extremes[direction]]
    answer = f"The {colour} {kind} is {_WHERE[direction]}."
    return QA("relation", _pick(rng, _RELATION_Q[direction]), answer, (colour, kind))


def place(centre: tuple[float, float]) -> str:
    """Which ninth of the image a centre is in, in words: "at the top left", "on the right", "in the middle"."""
    column, row = (names[min(2, int(v * 3 / SIZE))] for v, names in zip(centre, (_COLUMNS, _ROWS)))
    if row == "middle":
        return "in the middle" if column == "middle" else f"on the {column}"
    return f"at the {row}" if column == "middle" else f"at the {row} {column}"


def _where(facts: Facts, rng) -> QA | None:
    """Where one shape is (every shape of a scene is unique by colour and kind): each answer makes the model
    keep a shape's position, which the relation questions compare."""
    if facts.scene is None:
        return None
    shape = _pick(rng, list(facts.scene.shapes))
    where = place(shape.centre)
    return QA("where", _pick(rng, _WHERE_Q).format(c=shape.colour, k=shape.kind),
              f"The {shape.colour} {shape.kind} is {where}.", where)


def _describe(facts: Facts, rng) -> QA | None:
    if facts.scene is None:
        return None
    text, _ = caption(facts.scene, rng)
    return QA("describe", _pick(rng, _DESCRIBE_Q), text[0].upper() + text[1:] + ".", facts.scene)


def score(qa: QA, answer: str) -> bool:
    """Whether a model's answer is right: the expected word must be the only one of its class in it."""
    if qa.type == "colour":
        return colour_words(answer) == {qa.expected}
    if qa.type == "shape":
        return kind_words(answer) == {qa.expected}
    if qa.type == "count":
        return numbers(answer) == {qa.expected}
    if qa.type == "relation":
        return mentions(answer) == {qa.expected}
    return describes(qa.expected, answer)


def describes(scene: Scene, text: str) -> bool:
    """The text names exactly the scene's shapes (each once) and every relation it states holds."""
    description = parse_caption(text)
    if sorted(description.objects) != sorted(scene.combos):
        return False
    where = {(s.colour, s.kind): s.centre for s in scene.shapes}
    objs = description.objects
    return all(holds(rel, where[objs[i]], where[objs[j]]) for i, rel, j in description.relations)
