"""The evaluation harness: a perfect stand-in scores 100%, wrong or degenerate models score low."""
from __future__ import annotations

from PIL import Image

from omnimamba.shapes.quality import evaluate_chat, evaluate_t2i
from omnimamba.shapes.questions import QUESTION_TYPES

from .oracles import oracle_answer, oracle_draw


def test_chat_oracle_scores_everything():
    result = evaluate_chat(oracle_answer, n=12, seed=0)
    for qtype in (*QUESTION_TYPES, "overall"):
        assert result[qtype] == 1.0, (qtype, result["mistakes"])
    assert result["n_held_out_overall"] > 0 and result["mistakes"] == []
    # the two kinds of scene split every question between them
    assert result["n_seen_overall"] + result["n_held_out_overall"] == result["n_overall"]


def test_seen_and_held_out_scores_are_told_apart(monkeypatch):
    import omnimamba.shapes.quality as quality
    from omnimamba.shapes.world import HELD_OUT

    scene_of, render = {}, quality.render

    def remember(scene):  # which scene each rendered image shows
        image = render(scene)
        scene_of[id(image)] = scene
        return image

    def fails_on_held_out(image, question):  # right unless the scene holds a held-out combination
        return "wrong" if any(c in HELD_OUT for c in scene_of[id(image)].combos) else oracle_answer(image, question)

    monkeypatch.setattr(quality, "render", remember)
    result = evaluate_chat(fails_on_held_out, n=12, seed=0)
    assert result["seen_overall"] == 1.0 and result["held_out_overall"] == 0.0


def test_chat_constant_answer_scores_low():
    result = evaluate_chat(lambda image, q: "The red circle is on the left. There are two shapes.", n=12, seed=0)
    assert result["overall"] < 0.35 and len(result["mistakes"]) == 5


def test_t2i_oracle_and_failures():
    good = evaluate_t2i(lambda prompt, k: oracle_draw(prompt, k), n=8, seed=0)
    assert good["colours_found"] == good["objects_found"] == good["relation_holds"] == good["diverse"] == 1.0
    assert good["n_held_out_objects_found"] > 0
    blank = evaluate_t2i(lambda prompt, k: [Image.new("RGB", (256, 256), "white")] * k, n=4, seed=0)
    assert blank["colours_found"] == 0.0 and blank["diverse"] == 0.0
    fixed = oracle_draw("a red circle to the left of a blue square", 1)[0]
    same = evaluate_t2i(lambda prompt, k: [fixed] * k, n=6, seed=1)
    assert same["objects_found"] < 0.5 and same["diverse"] == 0.0
