"""The app's examples suit the model it runs: the shapes model gets scenes and prompts of its own world."""
import copy
import json
import runpy
from pathlib import Path

from PIL import Image

import app
from demo.launch import EXAMPLES, load_examples
from omnimamba import OmniMamba, OmniMambaConfig
from omnimamba.engine import Engine

ROOT = Path(__file__).resolve().parents[2]


def test_the_shapes_examples_are_what_their_script_draws(tmp_path):
    committed = {p.name: p.read_bytes() for p in (EXAMPLES / "shapes_world").glob("*.png")}
    committed_json = (EXAMPLES / "examples_shapes.json").read_text()
    runpy.run_path(str(ROOT / "assets" / "make_shapes_examples.py"))["main"](tmp_path)
    assert {p.name: p.read_bytes() for p in (tmp_path / "shapes_world").glob("*.png")} == committed
    assert (tmp_path / "examples_shapes.json").read_text() == committed_json


def test_each_chat_example_is_a_world_scene_with_a_question():
    examples = load_examples(shapes_world=True)
    assert len(examples["chat"]) >= 4 and len(examples["text_to_image"]) >= 4
    for example in examples["chat"]:
        with Image.open(EXAMPLES / example["image"]) as image:
            assert image.size == (256, 256)
        assert example["question"].endswith("?") or example["question"].startswith("Describe")


def _shown_texts(engine: Engine) -> str:
    demo = app.build_demo(engine)
    return json.dumps(demo.get_config_file(), default=str)


def test_the_app_shows_the_shapes_world_examples_for_a_shapes_model(tokenizer, tiny_model_shared):
    shapes = Engine(OmniMamba(OmniMambaConfig.shapes()).eval(), tokenizer, use_cuda_graphs=False)
    shown = _shown_texts(shapes)
    assert "a red circle to the left of a blue square" in shown and "Which shape is on the left?" in shown
    assert "double-decker" not in shown
    other = _shown_texts(Engine(copy.deepcopy(tiny_model_shared), tokenizer, use_cuda_graphs=False))
    assert "double-decker" in other and "a red circle to the left of a blue square" not in other
