"""The proposed shapes preset: the official architecture's classes, within the 40 MB weight budget."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from omnimamba import OmniMamba
from omnimamba.model.vision import preprocess_image, stack_pixel_values
from omnimamba.shapes.preset import param_report, shapes_config
from omnimamba.shapes.vocab import world_token_ids
from omnimamba.tokenizer import OmniTokenizer
from omnimamba.shapes.world import render, sample_scene

MAX_BYTES = 40_000_000
SAFETENSORS_HEADER = 200_000  # generous bound on the JSON header of ~330 tensors


@pytest.fixture(scope="module")
def model() -> OmniMamba:
    torch.manual_seed(0)
    return OmniMamba(shapes_config()).eval()


def test_bf16_weights_fit_40mb_with_the_text_table_packed(model):
    unique = {t.data_ptr(): t for t in model.state_dict().values()}  # tied heads stored once
    table = model.backbone.embedding.weight
    used = world_token_ids(model.config, OmniTokenizer.from_file(), samples=200)
    # the shipped file keeps the world's rows and the one row the other ~50k share (packed_rows.py)
    packed_table = (len(used) + 1) * table.shape[1] * 2 + len(used) * 8
    rest = sum(t.numel() * 2 for p, t in unique.items() if p != table.data_ptr())
    assert rest + packed_table + SAFETENSORS_HEADER <= MAX_BYTES
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
