"""The training loop on HF accelerate: one optimizer step = grad_accum micro-steps over every task's batch.

    python -m omnimamba train --preset stage2 --out runs/stage2             # one GPU
    accelerate launch --num_processes 8 -m omnimamba train --preset stage2   # eight

Per micro-step each task contributes one batch; the task losses are summed for one backward (paper §3.6).
DIR holds log.jsonl (one line per optimizer step), model.safetensors (latest weights, official layout) and
checkpoints/step_N/ (accelerate state: model, optimizer, scheduler, RNG, data position) for exact resume.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor, nn

from ..model import OmniMamba
from . import checkpoints, trainable
from .config import TrainConfig
from .runlog import RunLog
from .setup import build_model, open_batches

log = logging.getLogger(__name__)


class Progress:
    """What a checkpoint must hold beyond model, optimizer, scheduler and RNG: how far the run got. The data
    position is micro_steps (data.py makes micro-batch k a pure function of k)."""

    def __init__(self) -> None:
        self.micro_steps, self.step = 0, 0

    def state_dict(self) -> dict[str, int]:
        return {"micro_steps": self.micro_steps, "step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.micro_steps, self.step = int(state["micro_steps"]), int(state["step"])


class TaskLosses(nn.Module):
    """The model behind one forward (what DDP and autocast wrap): batches -> {task: mean CE}."""

    def __init__(self, model: OmniMamba, reference_kernels: bool = False):
        super().__init__()
        self.model, self.reference_kernels = model, reference_kernels

    def forward(self, batches: dict) -> dict[str, Tensor]:
        from ..model import kernels
        from .losses import task_losses

        with kernels.reference_only() if self.reference_kernels else contextlib.nullcontext():
            return task_losses(self.model, batches)


def warmup_cosine(cfg: TrainConfig):
    """lr multiplier at optimizer step s: linear warm-up, then cosine from 1 down to min_lr_ratio."""
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def make_accelerator(cfg: TrainConfig, out: Path):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, is_tensorboard_available

    return Accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum,
                       cpu=cfg.cpu, step_scheduler_with_optimizer=False,  # our schedule counts optimizer steps
                       log_with="tensorboard" if is_tensorboard_available() else None,
                       project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "tb")),
                       # the projector idles in a micro-batch whose chats are all text-only; DDP must allow it
                       kwargs_handlers=[DistributedDataParallelKwargs(
                           find_unused_parameters="projector" in cfg.trainable)])


def train(cfg: TrainConfig, out: str | Path, max_steps: int | None = None, resume: bool = False,
          deadline: float | None = None) -> Path:
    """Run (or resume) `cfg` into folder `out`; stop after `max_steps` optimizer steps in all, or, saved and
    resumable, at the first step that ends after `deadline` (a time.monotonic() value). Returns out."""
    out = Path(out)
    accelerator = make_accelerator(cfg, out)
    from accelerate.utils import set_seed

    set_seed(cfg.seed)
    model = build_model(cfg)
    names = trainable.select(model, cfg.trainable, cfg.tasks)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, betas=cfg.betas,
                                  weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg))
    wrapped, optimizer, scheduler = accelerator.prepare(TaskLosses(model, cfg.reference_kernels), optimizer,
                                                        scheduler)
    progress = Progress()
    accelerator.register_for_checkpointing(progress)
    if resume:
        _resume(accelerator, out, progress)
    elif latest_checkpoint(out) is not None:
        raise FileExistsError(f"{out} holds checkpoints of an earlier run: continue it with --resume, or give a "
                              f"new --out (or delete {out / 'checkpoints'})")
    batches = open_batches(cfg, model, accelerator, progress.micro_steps)
    runlog = RunLog(out, accelerator, cfg, start_step=progress.step)
    end = min(cfg.steps, max_steps if max_steps is not None else cfg.steps)
    while progress.step < end:
        record = train_step(cfg, accelerator, wrapped, optimizer, scheduler, batches, progress)
        runlog.step(progress.step, record)
        out_of_time = _past(deadline, accelerator)
        if progress.step % cfg.save_every == 0 or progress.step == end or out_of_time:
            save(accelerator, model, cfg, names, out, progress)
        if out_of_time:
            log.info("step %d: out of time, saved; continue with resume", progress.step)
            break
    runlog.close()
    accelerator.end_training()
    return out


def _past(deadline: float | None, accelerator) -> bool:
    """Whether any process is past `deadline` (all processes must agree to stop at the same step)."""
    if deadline is None:
        return False
    late = torch.tensor([float(time.monotonic() >= deadline)], device=accelerator.device)
    return bool(accelerator.reduce(late, "sum").item() > 0)


def train_step(cfg: TrainConfig, accelerator, wrapped: nn.Module, optimizer, scheduler, loader: Iterator[dict],
               progress: Progress) -> dict[str, float]:
    """grad_accum micro-steps then one optimizer step. Returns the step's losses (mean over micro-steps and
    processes), lr, gradient norm and the tokens processed by all processes."""
    t0, lr = time.perf_counter(), scheduler.get_last_lr()[0]  # the lr this step uses
    sums: dict[str, Tensor] = {}
    tokens = 0
    for _ in range(cfg.grad_accum):
        batches = {task: b.to(accelerator.device, non_blocking=True) for task, b in next(loader).items()}
        with accelerator.accumulate(wrapped):
            losses = wrapped(batches)
            accelerator.backward(sum(losses.values()))
            grad_norm = _optimizer_step(cfg, accelerator, wrapped, optimizer, scheduler)
        progress.micro_steps += 1
        tokens += sum(int(b.num_tokens) for b in batches.values())
        for task, loss in losses.items():
            sums[task] = sums.get(task, 0.0) + loss.detach() / cfg.grad_accum
    progress.step += 1
    means = {task: accelerator.reduce(v, "mean").item() for task, v in sums.items()}  # the step's one host sync
    grad_norm = float(grad_norm)
    tokens *= accelerator.num_processes
    seconds = time.perf_counter() - t0
    return {"loss": sum(means.values()), **{f"loss_{t}": v for t, v in means.items()},
            "lr": lr, "grad_norm": grad_norm, "tokens": tokens,
            "tokens_per_s": tokens / seconds, "step_s": seconds}


def _optimizer_step(cfg: TrainConfig, accelerator, wrapped: nn.Module, optimizer, scheduler) -> Tensor | float:
    """Clip, step and zero when this micro-step closes an accumulation; returns the pre-clip gradient norm (a
    tensor, read after the step, so the optimizer's kernels are queued without waiting for the backward)."""
    grad_norm: Tensor | float = float("nan")
    if accelerator.sync_gradients:
        if getattr(scheduler, "scheduler", scheduler).last_epoch == 0:  # a fresh run's first step: check grads
            check_gradients(accelerator.unwrap_model(wrapped).model)
        grad_norm = accelerator.clip_grad_norm_(wrapped.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return grad_norm


def check_gradients(model: OmniMamba) -> None:
    """Every trainable tensor must have received a gradient (e.g. a GPU kernel without a backward would leave
    them None and the run would train nothing while reporting normal speed)."""
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None
               and trainable.group_of(n) != "projector"]  # (idle when a batch's chats are all text-only)
    if missing:
        raise RuntimeError(f"{len(missing)} trainable tensors received no gradient after the first step, e.g. "
                           f"{missing[:4]}; their route is off or a kernel on the path is not differentiable")


def save(accelerator, model: OmniMamba, cfg: TrainConfig, names: list[str], out: Path, progress: Progress) -> None:
    """checkpoints/step_N (resumable state) and model.safetensors (the weights, loadable with --model DIR)."""
    accelerator.wait_for_everyone()
    accelerator.save_state(str(out / "checkpoints" / f"step_{progress.step}"))  # safetensors
    if accelerator.is_main_process:
        checkpoints.save(accelerator.unwrap_model(model), out, cfg.to_dict(), names)
        log.info("step %d: saved %s", progress.step, out / checkpoints.FILENAME)
    accelerator.wait_for_everyone()


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted((out / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    return found[-1] if found else None


def _resume(accelerator, out: Path, progress: Progress) -> None:
    ckpt = latest_checkpoint(out)
    if ckpt is None:
        raise FileNotFoundError(f"--resume: no checkpoint under {out / 'checkpoints'}; start without --resume")
    accelerator.load_state(str(ckpt))
    log.info("resumed from %s at step %d", ckpt, progress.step)
