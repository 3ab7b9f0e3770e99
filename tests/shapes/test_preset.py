"""The proposed shapes preset: the official architecture's classes, within the 40 MB weight budget."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from omnimamba import OmniMamba
from omnimamba.model.vision import preprocess_image, stack_pixel_values
from omnimamba.shapes.preset import param_report, shapes_config
from omnimamba.shapes.world import render, sample_scene

MAX_BYTES = 40_000_000
SAFETENSORS_HEADER = 200_000  # generous bound on the JSON header of ~330 tensors


@pytest.fixture(scope="module")
def model() -> OmniMamba:
    torch.manual_seed(0)
    return OmniMamba(shapes_config()).eval()


def test_bf16_weights_fit_40mb(model):
    unique = {t.data_ptr(): t for t in model.state_dict().values()}  # tied heads stored once
    assert sum(t.numel() * 2 for t in unique.values()) + SAFETENSORS_HEADER <= MAX_BYTES
    report = param_report(model)
    assert report["total"] == sum(p.numel() for p in unique.values() if p.is_floating_point()) - 65536  # codebook_used
    assert report["llm_backbone.mamba"] > 0.8 * report["total"]


def test_same_architecture_at_small_size(model):
    cfg = model.config
    assert (cfg.image_size, cfg.image_grid, cfg.padded_text_vocab) == (256, 16, 50288)
    dino, siglip = model.vision_backbone.dino_featurizer, model.vision_backbone.siglip_featurizer
    assert dino.num_reg_tokens == 4 and siglip.global_pool == "map"
    assert cfg.vision.num_patches == 256 and cfg.caption_len >= 20


@torch.no_grad()
def test_forwards_run(model):
    image = render(sample_scene(np.random.default_rng(0)))
    pixels = stack_pixel_values([preprocess_image(image, model.config.vision)])
    logits = model.forward_mmu(torch.tensor([[510, 6325, 27]]), pixels)
    assert logits.shape == (1, 4 + 256 + 3, 50288)
    prefix = torch.full((1, model.config.t2i_prefix_len), 50277)
    assert model.forward_t2i(prefix, torch.zeros(1, 256, dtype=torch.long)).shape == (1, 32 + 256, 1024)
