"""With no --model and no weights reachable, the app still starts (the README's first command with no network)."""
from __future__ import annotations

import pytest

from demo.launch import open_engine_or_fallback, parse_args
from omnimamba import hub


@pytest.fixture
def nothing_reachable(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "SHIPPED_SHAPES", tmp_path / "missing.safetensors")
    monkeypatch.setattr(hub, "official_cached", lambda *a, **k: False)


def test_auto_with_nothing_reachable_starts_on_random_weights_and_says_so(nothing_reachable, monkeypatch):
    def unavailable(*args, **kwargs):
        raise hub.AssetUnavailable("OmniMamba weights are not in the Hugging Face cache")

    monkeypatch.setattr(hub, "load_model", unavailable)
    engine, choice = open_engine_or_fallback(parse_args(["--device", "cpu"]))
    assert engine.model.config.d_model == 64  # the tiny model
    assert "noise" in choice.notice and "python -m omnimamba download" in choice.notice


def test_a_model_named_explicitly_is_never_replaced(nothing_reachable, monkeypatch):
    def unavailable(*args, **kwargs):
        raise hub.AssetUnavailable("not cached")

    monkeypatch.setattr(hub, "load_model", unavailable)
    with pytest.raises(hub.AssetUnavailable):
        open_engine_or_fallback(parse_args(["--model", "hustvl/OmniMamba", "--device", "cpu"]))
