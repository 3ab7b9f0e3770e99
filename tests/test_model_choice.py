"""Which model a name means (hub.choose_model), the same for the app and every command: the official weights when
cached, else the shipped shapes model (a packed safetensors file carrying its config), without the network."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import save_file

from omnimamba import OmniMambaConfig, hub
from omnimamba.checkpoint import CheckpointError

from .hub_fixture import build_cache, tiny_source_model


def write_packed(path, model=None, config=None):
    """A model in the shipped format: model.safetensors, the OmniMambaConfig JSON in its metadata."""
    model = model or tiny_source_model()
    sd = {k: v.contiguous() for k, v in model.state_dict().items() if k not in hub.checkpoint.TIED_KEYS}
    path.parent.mkdir(parents=True, exist_ok=True)
    config_json = config if config is not None else json.dumps(dataclasses.asdict(model.config))
    save_file(sd, str(path), metadata={hub.CONFIG_KEY: config_json})
    return model


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    path = tmp_path / "omnimamba" / "shapes" / "weights" / "model.safetensors"
    monkeypatch.setattr(hub, "SHIPPED_SHAPES", path)
    return path


@pytest.fixture
def no_official(monkeypatch, tmp_path):
    """An empty Hugging Face cache, and any attempt to reach the Hub fails the test."""
    monkeypatch.setattr(hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    real = hub.hf_hub_download

    def offline_only(*args, **kwargs):
        assert kwargs.get("local_files_only"), "the default model must never reach for the network"
        return real(*args, **{**kwargs, "cache_dir": str(tmp_path / "empty-hub")})
    monkeypatch.setattr(hub, "hf_hub_download", offline_only)


def test_without_cached_official_weights_the_default_is_the_shipped_model(shipped, no_official):
    source = write_packed(shipped)
    choice = hub.choose_model(None)
    assert choice.model == str(shipped) and "shapes" in choice.label
    assert "python -m omnimamba download" in choice.notice and "--model hustvl/OmniMamba" in choice.notice
    assert hub.choose_model("auto") == choice and hub.choose_model("shapes").model == str(shipped)
    model, _ = hub.load_model(choice.model, device="cpu", dtype=torch.float32)
    assert model.config == source.config
    assert model.mamba.lm_head.weight is model.backbone.embedding.weight
    for ours, theirs in zip(model.state_dict().values(), source.state_dict().values()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_engine_load_takes_the_names_the_cli_takes(shipped, no_official):
    """The Python API resolves "auto" and "shapes" as the CLI and the app do (hub.choose_model)."""
    from omnimamba.engine import Engine

    source = write_packed(shipped)
    for name in ("auto", "shapes"):
        engine = Engine.load(name, device="cpu", offline=True)
        assert engine.model.config == source.config and "shapes" in engine.label


def test_cached_official_weights_are_the_default(shipped, tmp_path, monkeypatch):
    write_packed(shipped)
    hub_cache = tmp_path / "hub"
    build_cache(hub_cache)
    assert hub.choose_model("auto", cache_dir=hub_cache) == hub.ModelChoice(
        hub.DEFAULT_MODEL, "OmniMamba-1.3B (hustvl/OmniMamba)")


def test_a_missing_shipped_model_is_named(shipped, no_official):
    with pytest.raises(hub.AssetUnavailable, match="shapes model that ships with the package is missing") as info:
        hub.choose_model("shapes")
    assert str(shipped) in str(info.value)


def test_tiny_random_and_other_names_pass_through(shipped):
    assert hub.choose_model("tiny-random").model == "tiny-random"
    assert "noise" in hub.choose_model("tiny-random").notice
    assert hub.choose_model("someone/OmniMamba-ft", "v2") == hub.ModelChoice(
        "someone/OmniMamba-ft", "OmniMamba-1.3B (someone/OmniMamba-ft@v2)")


def test_a_packed_file_with_a_broken_config_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "model.safetensors"
    write_packed(path, config='{"d_model": 64}')
    with pytest.raises(CheckpointError, match="omnimamba_config metadata is not an OmniMambaConfig"):
        hub.load_model(str(path), device="cpu", dtype=torch.float32)


def test_config_json_round_trips():
    for config in (OmniMambaConfig.tiny(), OmniMambaConfig.official()):
        assert hub.config_from_json(json.dumps(dataclasses.asdict(config))) == config


def test_a_trained_file_or_folder_is_not_called_the_released_model(tmp_path):
    from omnimamba.model import OmniMamba
    from omnimamba.train import checkpoints

    checkpoints.save(OmniMamba(OmniMambaConfig.tiny()), tmp_path / "run")
    for name in (str(tmp_path / "run"), str(tmp_path / "run" / "model.safetensors")):
        label = hub.choose_model(name).label
        assert "1.3B" not in label and "trained checkpoint" in label, label


def test_a_cpu_engine_decodes_from_bf16_copies_exactly_when_the_weights_are_bf16_values(tmp_path):
    """The shipped shapes model is stored in bf16: on the CPU its decode products read bf16 copies by default
    (its images within the 3 s budget); a model with fp32 values, or an explicit choice, keeps its own."""
    from omnimamba.engine import Engine

    model = tiny_source_model()
    write_packed(tmp_path / "fp32" / "model.safetensors", model)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    write_packed(tmp_path / "bf16" / "model.safetensors", model)

    def decode_weights(folder, **kwargs):
        engine = Engine.load(str(tmp_path / folder / "model.safetensors"), device="cpu", **kwargs)
        return engine.info()["decode_weights"]

    assert decode_weights("bf16") == "bf16"
    assert decode_weights("fp32") == "float32"
    assert decode_weights("bf16", bf16_decode=False) == "float32"
    assert decode_weights("bf16", int8_decode=True) == "int8"
    assert decode_weights("fp32", bf16_decode=True) == "bf16"
