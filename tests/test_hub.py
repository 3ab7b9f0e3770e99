"""Weights from the Hub: resolution from a local cache offline, one-time conversion, reuse, clear errors."""
import pytest
import torch
from timm.layers import resample_abs_pos_embed

from omnimamba import OmniMambaConfig
from omnimamba import hub
from omnimamba.checkpoint import CheckpointError
from omnimamba.engine import Engine

from .hub_fixture import build_cache, dino_checkpoint_with_larger_grid, put

TINY = OmniMambaConfig.tiny()


@pytest.fixture
def cache(tmp_path):
    hub_cache = tmp_path / "hub"
    source = build_cache(hub_cache)
    return hub_cache, source, tmp_path / "converted"


def load(hub_cache, converted, model="hustvl/OmniMamba", revision=None):
    return hub.load_model(model, revision, "cpu", torch.float32, config=TINY, cache_dir=hub_cache, offline=True,
                          converted_dir=converted)


def logits(model):
    ids = torch.arange(5)[None] * 1000
    pixels = {k: torch.linspace(-1, 1, 3 * 28 * 28).view(1, 3, 28, 28) for k in ("dino", "siglip")}
    with torch.no_grad():
        return (model.forward_mmu(ids, pixel_values=pixels),
                model.forward_t2i(torch.arange(16)[None] * 100, torch.arange(64)[None]),
                model.decode_images(torch.arange(64)[None]))


def rounded_like_the_checkpoint(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("llm_backbone.mamba.", "projector.")):
                p.copy_(p.half().float())
    return model


def test_offline_resolution_converts_once_and_reproduces_the_weights(cache):
    hub_cache, source, converted = cache
    model, report = load(hub_cache, converted)
    assert report["converted_now"] and report["converted"].endswith("model.safetensors")
    assert set(report["sources"]) == {"omnimamba", "vq", "dino", "siglip"}
    assert model.mamba.lm_head.weight is model.backbone.embedding.weight  # ties restored after safetensors
    for ours, theirs in zip(logits(model), logits(rounded_like_the_checkpoint(source))):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_second_load_maps_the_safetensors_and_reads_no_pickle(cache, monkeypatch):
    hub_cache, _, converted = cache
    first, _ = load(hub_cache, converted)

    def no_pickles(*args, **kwargs):
        raise AssertionError("a pickle was read on the second load")
    monkeypatch.setattr(torch, "load", no_pickles)
    second, report = load(hub_cache, converted)
    assert not report["converted_now"]
    for a, b in zip(logits(first), logits(second)):
        assert torch.equal(a, b)


def test_a_new_revision_converts_again(cache, tmp_path):
    hub_cache, _, converted = cache
    _, first = load(hub_cache, converted)
    new_weights = tmp_path / "v2.pth"
    sd = torch.load(first["sources"]["omnimamba"], weights_only=True)
    torch.save({k: v + 1 for k, v in sd.items()}, new_weights)
    put(hub_cache, "hustvl/OmniMamba", "OmniMamba-1.3b.pth", new_weights, revision="v2", commit="f" * 40)
    model, second = load(hub_cache, converted, revision="v2")
    assert second["converted_now"] and second["converted"] != first["converted"]
    assert torch.allclose(model.backbone.norm_f.weight, sd["llm_backbone.mamba.backbone.norm_f.weight"].float() + 1)


def test_dino_positions_are_resampled_like_timm_pretrained_loading(cache, tmp_path):
    hub_cache, source, converted = cache
    saved = dino_checkpoint_with_larger_grid(source, tmp_path / "dino.safetensors")
    put(hub_cache, hub.ASSETS["dino"].repo_id, "model.safetensors", tmp_path / "dino.safetensors", commit="e" * 40)
    model, _ = load(hub_cache, converted)
    expected = resample_abs_pos_embed(saved["pos_embed"], [2, 2], [3, 3], num_prefix_tokens=0)
    torch.testing.assert_close(model.vision_backbone.dino_featurizer.pos_embed.data, expected)


def test_nothing_cached_offline_names_the_asset_and_the_ways_out(tmp_path):
    with pytest.raises(hub.AssetUnavailable) as err:
        load(tmp_path / "empty", tmp_path / "converted")
    message = str(err.value)
    assert "hustvl/OmniMamba" in message and "OmniMamba-1.3b.pth" in message
    assert "python -m omnimamba download" in message and "--model /path/to/OmniMamba-1.3b.pth" in message


def test_a_truncated_download_says_how_to_recover(cache, tmp_path):
    hub_cache, _, converted = cache
    cut = tmp_path / "cut.pth"
    path = hub.fetch(hub.ASSETS["omnimamba"], hub_cache, offline=True)
    cut.write_bytes(path.read_bytes()[:1000])
    put(hub_cache, "hustvl/OmniMamba", "OmniMamba-1.3b.pth", cut, revision="broken", commit="b" * 40)
    with pytest.raises(CheckpointError, match="truncated or corrupt: delete it and download it again"):
        load(hub_cache, converted, revision="broken")


def test_a_checkpoint_of_another_model_gets_the_strict_key_report(cache, tmp_path):
    hub_cache, _, converted = cache
    torch.save({"model.layers.0.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"missing \(\d+\)[\s\S]*unexpected \(1\)"):
        load(hub_cache, converted, model=str(tmp_path / "other.pth"))


def test_local_file_and_folder_are_accepted(cache, tmp_path):
    hub_cache, source, converted = cache
    path = hub.fetch(hub.ASSETS["omnimamba"], hub_cache, offline=True)
    folder = tmp_path / "local"
    folder.mkdir()
    (folder / "OmniMamba-1.3b.pth").write_bytes(path.read_bytes())
    by_file, _ = load(hub_cache, converted, model=str(folder / "OmniMamba-1.3b.pth"))
    by_folder, _ = load(hub_cache, converted, model=str(folder))
    assert torch.equal(by_file.backbone.embedding.weight, by_folder.backbone.embedding.weight)
    with pytest.raises(hub.AssetUnavailable, match="neither a file nor a folder, nor a Hub id"):
        load(hub_cache, converted, model=str(tmp_path / "missing") + "/")


def test_from_pretrained_and_the_engine_loader(cache, monkeypatch):
    hub_cache, _, converted = cache
    monkeypatch.setenv("OMNIMAMBA_CACHE", str(converted))
    model = hub.from_pretrained("hustvl/OmniMamba", device="cpu", dtype=torch.float32, config=TINY,
                                cache_dir=hub_cache, offline=True)
    assert model.dtype == torch.float32 and not model.backbone.embedding.weight.is_meta
    engine = Engine.load("tiny-random", offline=True, cache_dir=str(hub_cache))
    assert "tiny-random" in engine.label and len(engine.tokenizer) == 50287


def test_a_missing_asset_says_only_the_ways_out_that_work_for_it(tmp_path):
    for key, hint in [("omnimamba", "--model /path/to/OmniMamba-1.3b.pth"), ("vq", "into the folder of OmniMamba-1.3b.pth"),
                      ("siglip", None)]:
        with pytest.raises(hub.AssetUnavailable) as error:
            hub.fetch(hub.ASSETS[key], tmp_path / "empty", offline=True)
        message = str(error.value)
        assert "python -m omnimamba download" in message
        assert (hint in message) if hint else "--model" not in message


def test_a_trained_checkpoint_of_another_size_is_not_called_the_1p3b(tmp_path):
    from omnimamba.model import OmniMamba
    from omnimamba.train import checkpoints

    checkpoints.save(OmniMamba(TINY), tmp_path / "run")
    engine = Engine.load(str(tmp_path / "run"), device="cpu", offline=True)
    assert engine.model.config == TINY
    assert "1.3B" not in engine.label and str(tmp_path / "run") in engine.label


def test_a_trained_checkpoint_suggests_its_image_settings_and_a_bad_suggestion_is_refused(tmp_path):
    import json

    from safetensors.torch import load_file, save_file

    from omnimamba.checkpoint import IMAGE_DEFAULTS_KEY
    from omnimamba.model import OmniMamba
    from omnimamba.sampling import ImageDefaults
    from omnimamba.train import checkpoints

    checkpoints.save(OmniMamba(TINY), tmp_path / "run")
    assert Engine.load(str(tmp_path / "run"), device="cpu").image_defaults == ImageDefaults()  # official: greedy
    file = tmp_path / "run" / "model.safetensors"
    sd, metadata = load_file(str(file)), checkpoints.read_metadata(file)
    suggested = {"temperature": 0.9, "top_k": 0, "top_p": 0.0, "guidance_scale": 3.0}
    save_file(sd, str(file), metadata={**metadata, IMAGE_DEFAULTS_KEY: json.dumps(suggested)})
    engine = Engine.load(str(file), device="cpu")
    assert engine.image_defaults == ImageDefaults(**suggested) and engine.info()["image_defaults"] == suggested
    save_file(sd, str(file), metadata={**metadata, IMAGE_DEFAULTS_KEY: json.dumps({**suggested, "top_k": -3})})
    with pytest.raises(CheckpointError, match=f"{IMAGE_DEFAULTS_KEY}.*top_k"):
        Engine.load(str(file), device="cpu")
