"""Pre-step smoke tests on the CPU (tiny configs, a step or two): the pieces the GPU run relies on."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from omnimamba import OmniMamba, OmniMambaConfig
from omnimamba.model.vq import VQModel
from omnimamba.shapes.pretrain import ProbeHeads, Schedule, quantize_st, restart_dead_codes, train_towers, train_vq
from omnimamba.shapes.scene_batches import scene_item, scene_loader, tower_targets
from omnimamba.shapes.world import COLOURS, RELATIONS, Scene, Shape, render, sample_scene

CFG = OmniMambaConfig.tiny()


def test_straight_through_quantizer_matches_inference_codes():
    torch.manual_seed(0)
    vq = VQModel(CFG.vq)
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    h = vq.quant_conv(vq.encoder(images)).detach().requires_grad_(True)
    zq, codes, codebook_loss, commit_loss = quantize_st(vq, h)
    assert torch.equal(codes, vq.encode_codes(images))
    assert torch.allclose(zq, vq.quantize.lookup(codes, 8), atol=1e-6)  # forward value = the code vectors
    (zq.sum() + codebook_loss + commit_loss).backward()
    assert h.grad is not None and h.grad.abs().sum() > 0  # gradients pass straight through
    assert vq.quantize.embedding.weight.grad.abs().sum() > 0


def test_dead_codes_restart_at_encoder_outputs():
    vq = VQModel(CFG.vq)
    usage = torch.zeros(CFG.vq.codebook_size)
    usage[:10] = 3
    samples = torch.nn.functional.normalize(torch.randn(50, CFG.vq.codebook_dim), dim=1)
    before = vq.quantize.embedding.weight.detach().clone()
    assert restart_dead_codes(vq, usage, samples) == CFG.vq.codebook_size - 10
    after = vq.quantize.embedding.weight.detach()
    assert torch.equal(after[:10], before[:10]) and usage.sum() == 0
    assert all((samples - row).abs().sum(1).min() < 1e-6 for row in after[10:])


def test_train_vq_returns_a_strict_state_dict():
    sd = train_vq(CFG, steps=2, batch_size=2, device="cpu", log=lambda msg: None, image_size=64)
    vq = VQModel(CFG.vq)
    vq.load_state_dict(sd, strict=True)
    assert all(v.dtype == torch.float32 and v.device.type == "cpu" for v in sd.values())


def test_train_towers_state_dicts_load_into_the_model():
    report = {}
    dino, siglip = train_towers(CFG, steps=1, batch_size=4, device="cpu", log=lambda msg: None, report=report)
    model = OmniMamba(CFG)
    model.load_vision_state_dicts(dino, siglip)
    assert {"dino_patch_colour", "siglip_count", "dino_present", "dino_patch_extreme", "siglip_patch_position"} <= set(report)
    assert all(0.0 <= v <= 1.0 for v in report.values())


def test_tower_targets_match_the_scene():
    scene = sample_scene(np.random.default_rng(0))
    item = scene_item(scene, CFG.vision)
    assert item["image"].shape == (3, 256, 256) and item["dino"].shape == (3, 28, 28)
    assert item["patch_colour"].shape == (CFG.vision.num_patches,)
    assert item["colours"].sum() == len({s.colour for s in scene.shapes})
    assert int(item["count"]) == len(scene.shapes) - 1
    grid = CFG.vision.image_size // CFG.vision.patch_size
    heads = ProbeHeads(16, grid)
    batch = {k: v[None] for k, v in item.items()}
    assert heads.loss(torch.randn(1, CFG.vision.num_patches, 16), batch).isfinite()
    assert next(scene_loader(0, 3))["image"].dtype == torch.uint8
    assert render(scene).size == (256, 256)


def test_tower_targets_mark_the_clear_extremes_on_their_shapes_patches():
    # a red square top-left and a blue circle bottom-right: the square is left- and top-most, the circle right-
    # and bottom-most; the background is neither
    scene = Scene((Shape("square", "red", (16, 16, 80, 80)), Shape("circle", "blue", (160, 160, 240, 240))),
                  (240, 240, 240))
    grid = CFG.vision.image_size // CFG.vision.patch_size
    targets = tower_targets(scene, grid)
    extremes, colour = targets["patch_extreme"], targets["patch_colour"]
    red, blue = list(COLOURS).index("red") + 1, list(COLOURS).index("blue") + 1
    assert extremes.shape == (grid * grid, len(RELATIONS))
    assert (colour == red).any() and (colour == blue).any()
    assert (extremes[colour == red] == torch.tensor([1.0, 0.0, 1.0, 0.0])).all()  # left, right, above, below
    assert (extremes[colour == blue] == torch.tensor([0.0, 1.0, 0.0, 1.0])).all()
    assert (extremes[colour == 0] == 0).all()
    one = tower_targets(Scene(scene.shapes[:1], scene.background), grid)  # one shape: no relation to anything
    assert (one["patch_extreme"] == 0).all()


@pytest.mark.parametrize("shape_where", [False, True])
def test_where_probes_shape_the_tower_only_when_asked(shape_where):
    grid = CFG.vision.image_size // CFG.vision.patch_size
    heads = ProbeHeads(16, grid, shape_where)
    item = scene_item(sample_scene(np.random.default_rng(1)), CFG.vision)
    batch = {k: v[None] for k, v in item.items()}
    tokens = torch.randn(1, CFG.vision.num_patches, 16, requires_grad=True)
    _, _, extremes, row, column, *_ = heads(tokens)
    (extremes.sum() + row.sum() + column.sum()).backward()
    assert (tokens.grad is not None) == shape_where
    heads.zero_grad(set_to_none=True)
    heads.loss(tokens, batch).backward()
    assert heads.where.weight.grad is not None, "the where heads always learn to read the tokens (measured)"


def test_schedule_warms_up_then_decays():
    schedule = Schedule(steps=100, seconds=None, warmup=10)
    scales = [schedule.lr_scale(s) for s in (0, 9, 10, 50, 99)]
    assert scales[0] < scales[1] == 1.0 and abs(scales[2] - 1.0) < 0.05 and scales[4] < 0.15
