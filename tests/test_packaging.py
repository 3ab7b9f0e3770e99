"""The package installs like its peers: one list of run-time requirements, extras for the rest, the tokenizer
inside the package, a console script that exists."""
import importlib
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def test_requirements_txt_is_what_pyproject_declares_and_test_tools_are_extras():
    deps = PROJECT["project"]["dependencies"]
    assert deps == _requirements()
    extras = PROJECT["project"]["optional-dependencies"]
    names = {d.split(">")[0].split("<")[0].split("=")[0].lower() for d in deps}
    for tool in ("pytest", "playwright", "gradio_client", "matplotlib", "transformers"):
        assert tool not in names and any(d.lower().startswith(tool) for d in extras["test"])


def test_the_tokenizer_and_the_shapes_model_ship_as_package_data_and_the_console_script_exists():
    patterns = PROJECT["tool"]["setuptools"]["package-data"]["omnimamba"]
    for data in ("assets/gpt-neox-20b-tokenizer.json", "shapes/weights/model.safetensors"):
        assert any(Path("omnimamba").joinpath(data).match("omnimamba/" + p) for p in patterns), data
    module, function = PROJECT["project"]["scripts"]["omnimamba"].split(":")
    assert callable(getattr(importlib.import_module(module), function))
