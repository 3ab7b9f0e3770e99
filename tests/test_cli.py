"""The command line's answer to a user's mistake: one `error: ...` message that says what to do, and exit status 1;
no traceback (unless --debug). Runs the commands in-process on the tiny model; one run in a real process."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from omnimamba import hub
from omnimamba.cli import main

from .hub_fixture import build_cache

ROOT = Path(__file__).resolve().parents[1]


def error_of(*argv: str) -> str:
    """The message a command exits with (it must be a mistake's message, not a traceback)."""
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    assert isinstance(info.value.code, str) and info.value.code.startswith("error: "), info.value.code
    return info.value.code


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A local Hub cache with the tiny assets; the network is off."""
    cache = tmp_path / "hub"
    build_cache(cache)
    monkeypatch.setattr(hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), "red").save(path)
    return path


def test_an_empty_checkpoint(tmp_path, hub_cache):
    empty = tmp_path / "OmniMamba-1.3b.pth"
    empty.write_bytes(b"")
    message = error_of("generate", "--model", str(empty), "--prompt", "a cat", "--device", "cpu")
    assert "empty (0 bytes)" in message and str(empty) in message


def test_a_corrupt_safetensors_file_is_named(tmp_path):
    broken = tmp_path / "model.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    message = error_of("chat", "--model", str(broken), "--question", "hi", "--device", "cpu")
    assert str(broken) in message and "safetensors" in message


def test_a_file_that_is_not_an_image(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert "could not be read as an image" in error_of("chat", "--model", "tiny-random", "--image", str(text),
                                                      "--question", "hi")
    assert "image file not found" in error_of("chat", "--model", "tiny-random", "--image", str(tmp_path / "no.png"),
                                              "--question", "hi")


@pytest.mark.parametrize("argv, words", [
    (["chat", "--temperature", "-1", "--question", "hi"], "temperature"),
    (["chat", "--max-new-tokens", "0", "--question", "hi"], "--max-new-tokens"),
    (["generate", "--num-images", "0", "--prompt", "a cat"], "--num-images"),
    (["generate", "--guidance-scale", "-2", "--prompt", "a cat"], "--guidance-scale"),
    (["generate", "--top-k", "-1", "--prompt", "a cat"], "top_k"),
])
def test_bad_values_are_refused_before_loading(argv, words, monkeypatch):
    monkeypatch.setattr("omnimamba.cli.load_engine", lambda args: pytest.fail("loaded a model for a bad value"))
    assert words in error_of(*argv, "--model", "tiny-random")


def test_generate_starts_from_the_models_suggested_settings_and_flags_win(monkeypatch, tmp_path):
    from omnimamba.engine import Engine
    from omnimamba.sampling import ImageDefaults

    asked = []

    def record(self, prompt, count, params, guidance_scale):
        asked.append((params.temperature, params.top_k, params.top_p, guidance_scale))
        return original(self, prompt, count, params, guidance_scale)

    original = Engine.text_to_image
    monkeypatch.setattr(Engine, "text_to_image", record)
    suggested = ImageDefaults(temperature=0.8, top_k=0, top_p=0.5, guidance_scale=2.0)
    real_load = Engine.load
    monkeypatch.setattr(Engine, "load", lambda *a, **k: real_load(*a, **{**k, "image_defaults": suggested}))
    main(["generate", "--model", "tiny-random", "--prompt", "a cat", "--out", str(tmp_path)])
    main(["generate", "--model", "tiny-random", "--prompt", "a cat", "--out", str(tmp_path), "--top-k", "1",
          "--guidance-scale", "1"])
    assert asked == [(0.8, 0, 0.5, 2.0), (0.8, 1, 0.5, 1.0)]
    assert (tmp_path / "image_0.png").is_file()


def test_a_question_longer_than_the_chat_fits(image):
    message = error_of("chat", "--model", "tiny-random", "--image", str(image), "--question", "why " * 300)
    assert "this model's chat holds at most" in message and "Shorten it" in message


def test_a_missing_tokenizer_points_at_the_tokenizer_option(tmp_path):
    message = error_of("chat", "--model", "tiny-random", "--tokenizer", str(tmp_path / "tokenizer.json"),
                       "--question", "hi")
    assert "--tokenizer" in message and "--model" not in message


def test_a_local_checkpoint_without_its_vq_says_where_the_vq_goes(tmp_path, monkeypatch):
    monkeypatch.setattr(hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "OmniMamba-1.3b.pth").write_bytes(b"x")
    message = error_of("chat", "--model", str(folder / "OmniMamba-1.3b.pth"), "--offline", "--question", "hi")
    assert "vq_ds16_t2i.pt" in message and f"into {folder}" in message
    assert "huggingface-cli download peizesun/llamagen_t2i vq_ds16_t2i.pt" in message


def test_an_unknown_model_name(tmp_path):
    message = error_of("chat", "--model", str(tmp_path / "nothing-here.pth"), "--question", "hi")
    assert "neither a file nor a folder" in message and "shapes" in message


def test_a_real_process_prints_one_error_line_and_no_traceback(tmp_path):
    run = subprocess.run([sys.executable, "-m", "omnimamba", "chat", "--model", "tiny-random", "--temperature", "-1",
                          "--question", "hi"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "temperature" in errors[0], run.stderr


def test_int8_and_bf16_decode_reach_the_engine(monkeypatch, tmp_path):
    from omnimamba.engine import Engine

    engines = []
    real_init = Engine.__init__

    def keep(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        engines.append(self)
    monkeypatch.setattr(Engine, "__init__", keep)
    main(["generate", "--model", "tiny-random", "--prompt", "a cat", "--out", str(tmp_path), "--int8-decode"])
    assert engines[-1].info()["decode_weights"] == "int8" and (tmp_path / "image_0.png").is_file()
    main(["generate", "--model", "tiny-random", "--prompt", "a cat", "--out", str(tmp_path / "b"), "--bf16-decode",
          "--device", "cpu"])
    assert engines[-1].info()["decode_weights"] == "bf16" and (tmp_path / "b" / "image_0.png").is_file()
