"""The recipe's presets train exactly the paper's tensors, and a route that is off gets no gradient."""
from __future__ import annotations

import json

import pytest
import torch

from omnimamba import OmniMamba, OmniMambaConfig
from omnimamba.train import trainable
from omnimamba.train.batches import BatchBuilder
from omnimamba.train.config import PRESETS, ConfigError, TrainConfig, preset
from omnimamba.train.data import StepDataset, open_sources
from omnimamba.train.loop import warmup_cosine
from omnimamba.train.setup import training_init_

N_LAYER = OmniMambaConfig.tiny().n_layer
B = "llm_backbone.mamba.backbone."


def lora(task: str) -> set[str]:
    return {f"{B}layers.{i}.mixer.in_proj.{task}_lora_{ab}0.weight" for i in range(N_LAYER) for ab in "AB"}


def blocks() -> set[str]:
    per_layer = ["norm.weight", "mixer.dt_bias", "mixer.A_log", "mixer.D", "mixer.in_proj.weight",
                 "mixer.conv1d.weight", "mixer.conv1d.bias", "mixer.norm.weight", "mixer.out_proj.weight"]
    return {f"{B}layers.{i}.{name}" for i in range(N_LAYER) for name in per_layer}


PROJECTOR = {f"projector.projector.{i}.{w}" for i in (0, 2, 4) for w in ("weight", "bias")}
PROJECT_IN = {f"{B}img_embeddings.project_in.projector.{i}.{w}" for i in (0, 2, 4) for w in ("weight", "bias")}
CAPTION = {f"{B}caption_embed.cap_proj.fc1.weight", f"{B}caption_embed.cap_proj.fc2.weight"}
IMAGE_TABLE, TEXT_TABLE = f"{B}img_embeddings.word_embeddings.weight", f"{B}embedding.weight"
STAGE1_MMU = PROJECTOR | lora("mmu") | {f"{B}mmu_pos_embed"}
STAGE1_T2I = lora("t2i") | PROJECT_IN | CAPTION | {IMAGE_TABLE, f"{B}pos_embed"}
STAGE2 = (STAGE1_MMU | STAGE1_T2I | blocks() | {TEXT_TABLE, f"{B}norm_f.weight"})
EXPECTED = {"stage1-mmu": STAGE1_MMU, "stage1-t2i": STAGE1_T2I, "stage2": STAGE2, "full-finetune": STAGE2,
            "tiny-smoke": STAGE2, "lora-finetune": lora("mmu") | lora("t2i") | {IMAGE_TABLE, TEXT_TABLE}}


@pytest.fixture(scope="module")
def model() -> OmniMamba:
    torch.manual_seed(0)
    return training_init_(OmniMamba(OmniMambaConfig.tiny()), seed=0)


def test_every_parameter_has_one_group(model):
    counts = trainable.parameter_counts(model)
    assert sum(counts.values()) == sum(p.numel() for p in model.parameters())
    assert set(counts) == set(trainable.GROUPS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_trains_exactly_its_tensors(model, name):
    cfg = preset(name)
    names = trainable.select(model, cfg.trainable, cfg.tasks)
    assert set(names) == EXPECTED[name]
    assert {n for n, p in model.named_parameters() if p.requires_grad} == EXPECTED[name]
    # tied heads follow their tables (one tensor, trained once)
    assert model.mamba.img_head.weight.requires_grad == (IMAGE_TABLE in names)
    assert model.mamba.lm_head.weight.requires_grad == (TEXT_TABLE in names)
    assert not any(n.startswith(("vision_backbone.", "llm_backbone.vqvae.")) for n in names)


def test_stage1_runs_touch_disjoint_tensors(model):
    """The choice that lets the two stage-1 checkpoints merge exactly (the text table stays frozen in T2I)."""
    assert not STAGE1_MMU & STAGE1_T2I
    assert TEXT_TABLE not in STAGE1_T2I


def test_a_group_only_an_off_route_reads_is_refused(model):
    with pytest.raises(ValueError, match="off"):
        trainable.select(model, ("projector", "t2i_lora"), ("t2i",))


def _batches(model, tokenizer, tasks):
    builder = BatchBuilder(tokenizer, model.config, caption_dropout=0.0)
    sources = open_sources({t: "synthetic" for t in tasks}, model.config, tasks)
    return StepDataset(sources, {t: 2 for t in tasks}, builder)[0]


@pytest.mark.parametrize("name, on, off", [("stage1-mmu", "mmu", "t2i"), ("stage1-t2i", "t2i", "mmu")])
def test_route_that_is_off_gets_no_gradient(model, tokenizer, name, on, off):
    from omnimamba.train.losses import task_losses

    cfg = preset(name)
    names = set(trainable.select(model, cfg.trainable, cfg.tasks))
    model.zero_grad(set_to_none=True)
    losses = task_losses(model, _batches(model, tokenizer, cfg.tasks))
    assert set(losses) == {on}
    sum(losses.values()).backward()
    got = {n for n, p in model.named_parameters() if p.grad is not None}
    assert got == names  # every trained tensor learns, nothing else even gets a gradient
    assert not any(p.grad is not None for n, p in model.named_parameters() if trainable.group_of(n) in
                   trainable.ROUTE_ONLY[off])
    assert all(model.get_parameter(n).grad.abs().sum() > 0 for n in names if "lora_A" not in n)  # B = 0 at init


def test_stage2_both_routes_reach_every_trained_tensor(model, tokenizer):
    from omnimamba.train.losses import task_losses

    cfg = preset("stage2")
    names = set(trainable.select(model, cfg.trainable, cfg.tasks))
    model.zero_grad(set_to_none=True)
    sum(task_losses(model, _batches(model, tokenizer, cfg.tasks)).values()).backward()
    assert {n for n, p in model.named_parameters() if p.grad is not None} == names


def test_config_file_rejects_unknown_keys(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"preset": "stage2", "lr": 3e-5, "learning_rate": 1}))
    with pytest.raises(ConfigError, match="learning_rate"):
        TrainConfig.from_file(path)
    path.write_text(json.dumps({"preset": "stage2", "lr": 3e-5, "trainable": ["t2i_lora"], "batch": {"t2i": 8}}))
    cfg = TrainConfig.from_file(path)
    assert (cfg.lr, cfg.trainable, cfg.tasks, cfg.betas) == (3e-5, ("t2i_lora",), ("t2i",), (0.9, 0.95))


def test_config_round_trips_through_json():
    cfg = preset("stage2")
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_batch_must_split_over_processes_and_accumulation():
    cfg = preset("stage2").replace(grad_accum=4)
    assert cfg.micro_batch(2) == {"mmu": 3, "t2i": 48}  # the official per-GPU 3:48 on 8 GPUs
    with pytest.raises(ConfigError, match="divisible"):
        cfg.micro_batch(5)


def test_paper_hyperparameters():
    s1m, s1t, s2 = preset("stage1-mmu"), preset("stage1-t2i"), preset("stage2")
    assert (s1m.lr, s1m.warmup_steps, s1m.steps, s1m.batch) == (1e-3, 100, 5000, {"mmu": 256})
    assert (s1t.lr, s1t.warmup_steps, s1t.steps, s1t.batch) == (8e-4, 1000, 100_000, {"t2i": 720})
    assert (s2.lr, s2.warmup_steps, s2.steps) == (1e-4, 0, 150_000)
    assert s2.batch["t2i"] // s2.batch["mmu"] == 16  # 48:3
    assert s2.betas == (0.9, 0.95) and s2.weight_decay == 0 and s2.min_lr_ratio == 0.01


def test_warmup_then_cosine_to_the_floor():
    cfg = preset("stage1-mmu")  # 100 warm-up steps of 5000
    f = warmup_cosine(cfg)
    assert f(0) == pytest.approx(0.01) and f(99) == pytest.approx(1.0)
    assert f(100) == pytest.approx(1.0) and f(2550) == pytest.approx(0.505)
    assert f(5000) == pytest.approx(0.01) and f(9000) == pytest.approx(0.01)
