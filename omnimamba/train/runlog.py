"""What a run reports: DIR/log.jsonl (one JSON line per optimizer step), a tqdm bar, TensorBoard when installed.

Only the main process writes. On resume, lines past the resumed step (written after the checkpoint by the
interrupted run) are dropped first, so log.jsonl always reads as one uninterrupted run.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from .config import TrainConfig

log = logging.getLogger(__name__)


class RunLog:
    def __init__(self, out: Path, accelerator, cfg: TrainConfig, start_step: int = 0):
        self.accelerator, self.cfg, self.main = accelerator, cfg, accelerator.is_main_process
        self.path = out / "log.jsonl"
        self.bar = None
        if not self.main:
            return
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
        _truncate(self.path, start_step)
        self.file = self.path.open("a")
        if accelerator.log_with:
            accelerator.init_trackers(cfg.stage, config=_flat(cfg.to_dict()))
        from tqdm.auto import tqdm

        self.bar = tqdm(total=cfg.steps, initial=start_step, desc=cfg.stage, unit="step", dynamic_ncols=True)

    def step(self, step: int, record: dict[str, float]) -> None:
        if not self.main:
            return
        line = {"step": step, **{k: _round(v) for k, v in record.items()}}
        self.file.write(json.dumps(line) + "\n")
        self.file.flush()
        if self.accelerator.log_with:
            self.accelerator.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=step)
        self.bar.update(1)
        if step % self.cfg.log_every == 0:
            shown = {k.removeprefix("loss_"): f"{v:.3f}" for k, v in record.items() if k.startswith("loss")}
            self.bar.set_postfix(**shown, lr=f"{record['lr']:.2e}", tok_s=f"{record['tokens_per_s']:,.0f}")

    def close(self) -> None:
        if self.main:
            self.bar.close()
            self.file.close()


def read_log(path: str | Path) -> list[dict]:
    """The lines of a log.jsonl (or of DIR/log.jsonl)."""
    path = Path(path)
    path = path / "log.jsonl" if path.is_dir() else path
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _truncate(path: Path, start_step: int) -> None:
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= start_step]
    path.write_text("".join(line + "\n" for line in kept))


def _round(value):
    return float(f"{value:.7g}") if isinstance(value, float) else value


def _flat(d: dict) -> dict:
    """TensorBoard's hparams take scalars and strings only."""
    return {k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v) for k, v in d.items()}
