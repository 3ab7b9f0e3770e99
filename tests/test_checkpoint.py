"""Loading the official checkpoint layout: fp16 pickle, strict report, tied heads, external groups."""
import collections

import pytest
import torch

from omnimamba import OmniMamba, OmniMambaConfig
from omnimamba.checkpoint import CheckpointError, read_state_dict

OWN_GROUPS = ("llm_backbone.mamba.", "projector.")


def official_layout(model: OmniMamba) -> collections.OrderedDict:
    """What OmniMamba-1.3b.pth holds: mamba + projector keys, fp16, tied heads stored as separate copies."""
    return collections.OrderedDict((k, v.detach().clone().half()) for k, v in model.state_dict().items()
                                   if k.startswith(OWN_GROUPS))


def test_fp16_checkpoint_in_the_official_layout_reproduces_the_saving_models_logits(tiny_model, tmp_path):
    path = tmp_path / "OmniMamba-tiny.pth"
    torch.save(official_layout(tiny_model), path)
    with torch.device("meta"):
        loaded = OmniMamba(OmniMambaConfig.tiny())
    report = loaded.load_official_state_dict(path)
    assert set(report.external_missing) == {"vision_backbone.", "llm_backbone.vqvae."}
    assert loaded.mamba.lm_head.weight is loaded.backbone.embedding.weight
    # the saving model with its weights rounded to fp16, as they were stored
    rounded = tiny_model
    with torch.no_grad():
        for name, p in rounded.named_parameters():
            if name.startswith(OWN_GROUPS):
                p.copy_(p.half().float())
    ids = torch.randint(0, 50000, (1, 9))
    image_ids = torch.randint(0, 64, (1, 64))
    prefix = torch.randint(0, 50000, (1, 16))
    with torch.no_grad():
        assert torch.equal(loaded.forward_mmu(ids), rounded.forward_mmu(ids))
        assert torch.equal(loaded.forward_t2i(prefix, image_ids), rounded.forward_t2i(prefix, image_ids))


def test_strict_report_names_missing_and_unexpected_keys(tiny_model):
    sd = official_layout(tiny_model)
    del sd["llm_backbone.mamba.backbone.layers.1.mixer.A_log"]
    sd["llm_backbone.mamba.backbone.layers.9.mixer.D"] = torch.zeros(8)
    with pytest.raises(CheckpointError) as err:
        tiny_model.load_official_state_dict(sd)
    assert "missing (1)" in str(err.value) and "layers.1.mixer.A_log" in str(err.value)
    assert "unexpected (1)" in str(err.value) and "layers.9.mixer.D" in str(err.value)


def test_wrong_shapes_are_reported(tiny_model):
    sd = official_layout(tiny_model)
    sd["projector.projector.4.bias"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=r"projector.projector.4.bias: checkpoint \[3\] vs model \[64\]"):
        tiny_model.load_official_state_dict(sd)


def test_a_partly_present_external_group_is_an_error(tiny_model):
    sd = official_layout(tiny_model)
    sd["llm_backbone.vqvae.quant_conv.bias"] = tiny_model.state_dict()["llm_backbone.vqvae.quant_conv.bias"]
    with pytest.raises(CheckpointError, match="missing"):
        tiny_model.load_official_state_dict(sd)


def test_a_stored_head_that_differs_from_its_table_wins_like_the_official_load(tiny_model):
    sd = official_layout(tiny_model)
    sd["llm_backbone.mamba.lm_head.weight"] = sd["llm_backbone.mamba.lm_head.weight"] + 1
    tiny_model.load_official_state_dict(sd)
    assert torch.equal(tiny_model.backbone.embedding.weight, sd["llm_backbone.mamba.lm_head.weight"].float())


def test_llamagen_vq_file_loads_strictly(tiny_model, tmp_path):
    vq_sd = {k: v.clone() + 0.5 for k, v in tiny_model.vq.state_dict().items()}
    torch.save({"model": vq_sd}, tmp_path / "vq_ds16_t2i.pt")
    with torch.device("meta"):
        fresh = OmniMamba(OmniMambaConfig.tiny())
    fresh.load_vq_state_dict(tmp_path / "vq_ds16_t2i.pt")
    assert torch.equal(fresh.vq.quantize.embedding.weight, vq_sd["quantize.embedding.weight"])
    torch.save({"state_dict": vq_sd}, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="expected a dict with key 'model'"):
        fresh.load_vq_state_dict(tmp_path / "wrong.pt")


class Payload:
    """Stands for any object a malicious pickle would build (and run code for)."""


def test_pickles_with_code_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"weights": torch.zeros(1), "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="will not be unpickled"):
        read_state_dict(path)


def test_truncated_files_get_a_redownload_hint(tiny_model, tmp_path):
    path = tmp_path / "cut.pth"
    torch.save(official_layout(tiny_model), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_state_dict(path)


def test_tower_weights_load_from_timm_layout_dicts(tiny_model):
    vb = tiny_model.vision_backbone
    dino = {k: v + 0.25 for k, v in vb.dino_featurizer.state_dict().items()}
    siglip = {k: v - 0.25 for k, v in vb.siglip_featurizer.state_dict().items()}
    with torch.device("meta"):
        fresh = OmniMamba(OmniMambaConfig.tiny())
    fresh.load_vision_state_dicts(dino, siglip)
    assert torch.equal(fresh.vision_backbone.dino_featurizer.pos_embed, dino["pos_embed"])
    assert torch.equal(fresh.vision_backbone.siglip_featurizer.patch_embed.proj.weight,
                       siglip["patch_embed.proj.weight"])
    del siglip["pos_embed"]
    with pytest.raises(CheckpointError, match="missing \\(1\\)"):
        fresh.load_vision_state_dicts(dino, siglip)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_an_empty_file_is_a_readable_checkpoint_error(tmp_path, suffix):
    path = tmp_path / f"OmniMamba-1.3b{suffix}"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty .0 bytes.*fetch it again") as info:
        read_state_dict(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_a_truncated_file_names_itself(tiny_model, tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    sd = {k: v.contiguous() for k, v in official_layout(tiny_model).items()}
    if suffix == ".pth":
        torch.save(sd, path)
    else:
        from safetensors.torch import save_file
        sd.pop("llm_backbone.mamba.lm_head.weight")
        sd.pop("llm_backbone.mamba.img_head.weight")
        save_file(sd, str(path))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        read_state_dict(path)
    assert str(path) in str(info.value)


def test_an_integer_tensor_for_a_float_weight_is_refused(tiny_model):
    sd = official_layout(tiny_model)
    key = "llm_backbone.mamba.backbone.layers.0.mixer.out_proj.weight"
    sd[key] = sd[key].to(torch.int64)
    with torch.device("meta"):
        loaded = OmniMamba(OmniMambaConfig.tiny())
    with pytest.raises(CheckpointError, match=f"non-float.*{key}: torch.int64"):
        loaded.load_official_state_dict(sd)
