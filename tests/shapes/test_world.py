"""The shapes world: scenes follow the issue's rules, and captions and questions only state what is true."""
from __future__ import annotations

import numpy as np
import pytest

from omnimamba.shapes.language import Description, caption, parse_caption
from omnimamba.shapes.questions import QUESTION_TYPES, ask, facts_of_description, facts_of_scene, score
from omnimamba.shapes.scene_batches import eval_scenes
from omnimamba.shapes.world import (ALL_COMBOS, COLOURS, HELD_OUT, KINDS, MAX_SIDE, MIN_SIDE, SIZE, TRAIN_COMBOS,
                                    _apart, clear_relations, holds, label_maps, render, sample_scene)


def scenes(n: int, seed: int = 0, combos=TRAIN_COMBOS):
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, combos) for _ in range(n)]


def test_scenes_follow_the_rules():
    found = scenes(300)
    assert {len(s.shapes) for s in found} == {1, 2, 3}
    assert {c for s in found for c in s.combos} == set(TRAIN_COMBOS)  # every training combo shows up
    for s in found:
        assert len(set(s.combos)) == len(s.combos) and not set(s.combos) & HELD_OUT
        assert min(s.background) >= 228  # light
        for i, a in enumerate(s.shapes):
            assert MIN_SIDE <= a.side <= MAX_SIDE and a.box[3] - a.box[1] == a.side
            assert 0 <= a.box[0] and a.box[2] <= SIZE and 0 <= a.box[1] and a.box[3] <= SIZE
            assert all(_apart(a.box, b.box) for b in s.shapes[i + 1:])


def test_held_out_split():
    assert len(ALL_COMBOS) == 21 and len(HELD_OUT) == 3 and len(TRAIN_COMBOS) == 18
    assert {c for c, _ in HELD_OUT} <= set(COLOURS) and {k for _, k in HELD_OUT} <= set(KINDS)
    evaluation = eval_scenes(0, 40)
    assert sum(any(c in HELD_OUT for c in s.combos) for s in evaluation) >= 20


def test_render_is_seeded_and_flat():
    a, b = scenes(5, seed=3), scenes(5, seed=3)
    assert a == b
    image = np.asarray(render(a[0]))
    assert image.shape == (SIZE, SIZE, 3)
    allowed = {tuple(a[0].background), *(COLOURS[c] for c, _ in a[0].combos)}
    assert {tuple(p) for p in image.reshape(-1, 3)} == allowed  # flat colours only
    colour_map, kind_map = label_maps(a[0])
    assert ((colour_map > 0) == (kind_map > 0)).all() and (colour_map > 0).any()


def test_captions_parse_back_and_state_only_clear_relations():
    rng = np.random.default_rng(1)
    wordings = set()
    for s in scenes(300, seed=1):
        text, description = caption(s, rng)
        assert parse_caption(text) == description
        assert sorted(description.objects) == sorted(s.combos)
        where = {(x.colour, x.kind): x.centre for x in s.shapes}
        for i, rel, j in description.relations:
            objs = description.objects
            assert rel in clear_relations(where[objs[i]], where[objs[j]]), text
        wordings.add(text.split(" a")[0].split(" an ")[0])
    assert len(wordings) >= 6


@pytest.mark.parametrize("text, objects, relations", [
    ("a red circle to the left of a blue square", [("red", "circle"), ("blue", "square")], [(0, "left", 1)]),
    ("two shapes: a green triangle above a yellow square", [("green", "triangle"), ("yellow", "square")],
     [(0, "above", 1)]),
    ("a black square, an orange circle and a red triangle from left to right",
     [("black", "square"), ("orange", "circle"), ("red", "triangle")], [(0, "left", 1), (1, "left", 2)]),
    ("A purple circle.", [("purple", "circle")], []),
])
def test_parse_caption(text, objects, relations):
    assert parse_caption(text) == Description(tuple(objects), tuple(relations))


def test_questions_are_unambiguous_and_canonical_answers_score():
    rng = np.random.default_rng(2)
    asked = {t: 0 for t in QUESTION_TYPES}
    for s in scenes(200, seed=2):
        facts = facts_of_scene(s)
        for qtype in QUESTION_TYPES:
            qa = ask(facts, qtype, rng)
            if qa is None:
                continue
            asked[qtype] += 1
            assert score(qa, qa.answer), qa
            if qtype == "colour":  # asked only about a kind the scene holds once
                assert sum(qa.question.rstrip("?.").endswith(k) for _, k in s.combos) == 1
            if qtype == "relation":
                shape = next(x for x in s.shapes if (x.colour, x.kind) == qa.expected)
                others = [x for x in s.shapes if x is not shape]
                assert others and all(clear_relations(shape.centre, o.centre) for o in others)
    assert min(asked.values()) >= 50


def test_score_rejects_wrong_or_hedged_answers():
    rng = np.random.default_rng(4)
    s = next(x for x in scenes(100, seed=4) if len({k for _, k in x.combos}) == len(x.combos) == 2)
    qa = ask(facts_of_scene(s), "colour", rng)
    other = next(c for c in COLOURS if c != qa.expected)
    assert score(qa, f"It is {qa.expected}.") and not score(qa, f"It is {other}.")
    assert not score(qa, f"It is {qa.expected} or {other}.")  # hedging between two colours is wrong
    count = ask(facts_of_scene(s), "count", np.random.default_rng(0))
    assert score(count, f"{count.expected}") and not score(count, "There are seven shapes.")


def test_text_only_facts_come_from_the_caption():
    desc = parse_caption("a red circle to the left of a blue square")
    facts = facts_of_description(desc)
    assert facts.extremes == {"left": 0, "right": 1} and facts.scene is None
    assert ask(facts, "describe", np.random.default_rng(0)) is None
    assert holds("left", (10, 50), (90, 60)) and not holds("above", (10, 50), (90, 40))
