"""The loop: exact resume, the tiny-smoke command, checkpoints that load back, several processes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from omnimamba import OmniMamba, OmniMambaConfig
from omnimamba.train import checkpoints
from omnimamba.train.cli import main
from omnimamba.train.config import preset
from omnimamba.train.init_from import load_init
from omnimamba.train.loop import train
from omnimamba.train.runlog import read_log
from omnimamba.train.setup import training_init_

ROOT = Path(__file__).resolve().parents[2]


def small(tokenizer_file, **changes):
    """tiny-smoke at the smallest batch: a CPU step takes about a second."""
    base = dict(batch={"mmu": 2, "t2i": 2}, tokenizer=str(tokenizer_file), save_every=2, steps=10, warmup_steps=2)
    return preset("tiny-smoke").replace(**{**base, **changes})


def losses(out: Path) -> list[tuple[int, float, float, float]]:
    return [(r["step"], r["loss"], r["loss_mmu"], r["loss_t2i"]) for r in read_log(out)]


def test_resume_gives_the_losses_of_an_uninterrupted_run(tmp_path, tokenizer_file):
    cfg = small(tokenizer_file, caption_dropout=0.5, lora_dropout=0.05)  # random draws must resume too
    train(cfg, tmp_path / "straight", max_steps=3)
    train(cfg, tmp_path / "resumed", max_steps=2)
    train(cfg, tmp_path / "resumed", max_steps=3, resume=True)
    assert losses(tmp_path / "resumed") == losses(tmp_path / "straight")  # exact in fp32 on the CPU
    assert [r["lr"] for r in read_log(tmp_path / "resumed")] == [r["lr"] for r in read_log(tmp_path / "straight")]


def test_a_deadline_saves_the_step_it_stops_at_and_resuming_finishes_the_same_run(tmp_path, tokenizer_file):
    import time

    cfg = small(tokenizer_file, save_every=100)
    train(cfg, tmp_path / "straight", max_steps=3)
    train(cfg, tmp_path / "cut", max_steps=3, deadline=time.monotonic())  # already past: stops after one step
    assert [p.name for p in (tmp_path / "cut" / "checkpoints").iterdir()] == ["step_1"]
    train(cfg, tmp_path / "cut", max_steps=3, resume=True)
    assert losses(tmp_path / "cut") == losses(tmp_path / "straight")


def test_resume_without_a_checkpoint_says_so(tmp_path, tokenizer_file):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(small(tokenizer_file), tmp_path, max_steps=1, resume=True)


def test_a_fresh_run_refuses_a_folder_with_checkpoints(tmp_path, tokenizer_file):
    (tmp_path / "checkpoints" / "step_2").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="--resume"):
        train(small(tokenizer_file), tmp_path, max_steps=1)


def test_saved_model_loads_back_strictly(tmp_path, tokenizer_file):
    out = train(small(tokenizer_file, save_every=100), tmp_path, max_steps=1)
    trained = checkpoints.load_trained(out, "cpu", torch.float32)
    assert trained.config == OmniMambaConfig.tiny()
    sd = checkpoints.read(out)[0]
    for key, value in trained.state_dict().items():
        assert torch.equal(value, sd[checkpoints.checkpoint.TIED_KEYS.get(key, key)]), key
    fresh = OmniMamba(OmniMambaConfig.tiny())
    report = fresh.load_official_state_dict(out)  # the folder, through the official loader
    assert not report.external_missing
    assert torch.equal(fresh.mamba.lm_head.weight, trained.mamba.lm_head.weight)
    meta = checkpoints.read_metadata(out)
    assert set(checkpoints.trained_keys(out)) == {n for n, p in trained.named_parameters()
                                                   if not n.startswith(("vision_backbone", "llm_backbone.vqvae"))}
    assert "tiny-smoke" in meta["train_config"]


def test_hub_loader_takes_a_trained_folder(tmp_path, tokenizer_file):
    from omnimamba.hub import load_model

    out = train(small(tokenizer_file, save_every=100), tmp_path, max_steps=1)
    net, report = load_model(str(out), device="cpu")
    assert report["sources"]["trained"].endswith("model.safetensors") and net.config == OmniMambaConfig.tiny()


def test_init_merges_two_stage1_runs(tmp_path, tokenizer_file):
    """stage 2 starts from the MMU run, plus exactly the tensors the T2I run trained."""
    mmu = train(small(tokenizer_file, stage="s1m", batch={"mmu": 2}, trainable=("projector", "mmu_lora")),
                tmp_path / "mmu", max_steps=1)
    t2i = train(small(tokenizer_file, stage="s1t", batch={"t2i": 2}, trainable=("t2i_lora", "caption_embed")),
                tmp_path / "t2i", max_steps=1)
    merged = OmniMamba(OmniMambaConfig.tiny())
    load_init(merged, (str(mmu), str(t2i)))
    a, b = checkpoints.read(mmu)[0], checkpoints.read(t2i)[0]
    t2i_keys = set(checkpoints.trained_keys(t2i))
    for key, value in merged.state_dict().items():
        if key not in checkpoints.checkpoint.TIED_KEYS:
            assert torch.equal(value, (b if key in t2i_keys else a)[key]), key


def test_a_config_file_needs_known_keys(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text('{"preset": "tiny-smoke", "stpes": 3}')
    with pytest.raises(SystemExit, match="stpes"):
        main(["train", "--config", str(path), "--out", str(tmp_path / "run")])


@pytest.mark.slow
def test_tiny_smoke_command_trains(tmp_path, tokenizer_file):
    """The documented first command: loss falls, the model file is written and loads back."""
    main(["train", "--preset", "tiny-smoke", "--max-steps", "20", "--out", str(tmp_path),
          "--set", f"tokenizer={tokenizer_file}"])
    log = read_log(tmp_path)
    assert [r["step"] for r in log] == list(range(1, 21))
    first, last = sum(r["loss"] for r in log[:3]) / 3, sum(r["loss"] for r in log[-3:]) / 3
    assert last < 0.8 * first, (first, last)
    assert all(r["loss"] == pytest.approx(r["loss_mmu"] + r["loss_t2i"], rel=1e-5) for r in log)
    assert checkpoints.load_trained(tmp_path, "cpu").config == OmniMambaConfig.tiny()


def _launch(out: Path, tokenizer_file: Path, processes: int, batch: str) -> list[tuple]:
    args = ["train", "--preset", "tiny-smoke", "--max-steps", "2", "--out", str(out), "--set",
            f"tokenizer={tokenizer_file}", "--set", f"batch={batch}", "--set", "caption_dropout=0.0",
            "--set", "lora_dropout=0.0"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
           "-m", "omnimamba.train.cli", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, capture_output=True, timeout=300)
    return losses(out)


@pytest.mark.slow
def test_two_processes_give_the_losses_of_one(tmp_path, tokenizer_file):
    """Same global batch: 1 process x 4 samples vs 2 processes x 2 (gloo on the CPU)."""
    one = _launch(tmp_path / "one", tokenizer_file, 1, '{"mmu": 4, "t2i": 4}')
    two = _launch(tmp_path / "two", tokenizer_file, 2, '{"mmu": 4, "t2i": 4}')
    assert [r[0] for r in two] == [1, 2]
    for a, b in zip(one, two):
        assert b[3] == pytest.approx(a[3], rel=1e-4)  # T2I: every row has 256 targets, means agree exactly
        assert b[2] == pytest.approx(a[2], rel=1e-3)  # MMU: per-process means over unequal answer lengths


def test_prepare_command_then_train_on_the_shards(tmp_path, tokenizer_file):
    """prepare with a trained tiny folder's VQ, then train the T2I route on the folder it wrote."""
    from PIL import Image

    model_dir = tmp_path / "model"
    checkpoints.save(OmniMamba(OmniMambaConfig.tiny()), model_dir)
    size = OmniMambaConfig.tiny().image_size
    for i, colour in enumerate(["red", "blue"]):
        Image.new("RGB", (size, size), colour).save(tmp_path / f"{i}.png")
    (tmp_path / "t2i.jsonl").write_text('{"image": "0.png", "caption": "red"}\n{"image": "1.png", "caption": "blue"}\n')
    main(["prepare", str(tmp_path / "t2i.jsonl"), "--out", str(tmp_path / "shards"), "--model", str(model_dir),
          "--device", "cpu", "--num-workers", "0"])
    cfg = small(tokenizer_file, stage="t2i-only", batch={"t2i": 2}, trainable=("t2i_lora",),
                data={"t2i": str(tmp_path / "shards")})
    train(cfg, tmp_path / "run", max_steps=1)
    assert [r["step"] for r in read_log(tmp_path / "run")] == [1]


def test_init_from_a_mamba2_language_model(tmp_path):
    """The official stage-1 start: a state-spaces Mamba-2 LM's blocks, text table and final norm."""
    donor = training_init_(OmniMamba(OmniMambaConfig.tiny()), seed=1)
    prefix = "llm_backbone.mamba."
    lm = {k.removeprefix(prefix): v.clone() for k, v in donor.state_dict().items()
          if k.startswith(prefix + "backbone.") and ("layers." in k and "lora" not in k or "embedding.weight" == k[-16:]
                                                     or "norm_f" in k)}
    lm["lm_head.weight"] = lm["backbone.embedding.weight"]
    torch.save(lm, tmp_path / "pytorch_model.bin")
    model = training_init_(OmniMamba(OmniMambaConfig.tiny()), seed=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    load_init(model, (f"mamba2:{tmp_path / 'pytorch_model.bin'}",))
    got = model.state_dict()
    assert all(torch.equal(got[prefix + k], v) for k, v in lm.items() if k != "lm_head.weight")
    assert torch.equal(model.mamba.lm_head.weight, lm["backbone.embedding.weight"])
    untouched = [k for k in got if k.removeprefix(prefix) not in lm and k not in checkpoints.checkpoint.TIED_KEYS]
    assert any("lora" in k for k in untouched) and any("pos_embed" in k for k in untouched)
    assert all(torch.equal(got[k], before[k]) for k in untouched)  # LoRA, positions, image side: as initialised
