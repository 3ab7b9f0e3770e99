"""The GPU step benchmark's inputs and FLOP count, checked on the tiny model (the timing itself needs a GPU)."""
from __future__ import annotations

import torch

from omnimamba import OmniMamba, OmniMambaConfig
from omnimamba.model.init import init_random_
from omnimamba.train.bench_step import step_flops, synthetic_batches
from omnimamba.train.losses import task_losses


def test_synthetic_batches_train_the_model():
    cfg = OmniMambaConfig.tiny()
    model = init_random_(OmniMamba(cfg))  # (a bare OmniMamba holds uninitialised memory)
    batches = synthetic_batches(cfg, t2i=2, mmu=2, mmu_text=6, device=torch.device("cpu"))
    assert batches["t2i"].num_tokens == 2 * (cfg.t2i_prefix_len + cfg.num_image_tokens)
    assert batches["mmu"].num_tokens == 2 * (4 + cfg.vision.num_patches + 6)
    losses = task_losses(model, batches)
    assert set(losses) == {"mmu", "t2i"} and all(torch.isfinite(v) for v in losses.values())


def test_t2i_flops_are_six_times_matmul_parameters_times_tokens():
    cfg = OmniMambaConfig.tiny()
    model = OmniMamba(cfg)
    batches = synthetic_batches(cfg, t2i=3, mmu=0, mmu_text=0, device=torch.device("cpu"))
    d, n = cfg.d_model, cfg.n_layer
    layers = n * (cfg.d_in_proj * d + d * cfg.d_inner)
    head = cfg.image_vocab_size * d
    project_in, caption = 4 * d * d + 4 * d * d + d * d, 2 * d * d
    prefix, image = 3 * cfg.t2i_prefix_len, 3 * cfg.num_image_tokens
    expected = 6 * (layers * (prefix + image) + head * image + project_in * image + caption * prefix)  # head: loss rows
    assert step_flops(model, batches) == expected
