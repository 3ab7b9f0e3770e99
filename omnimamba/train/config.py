"""TrainConfig: one frozen description of a training run, and the paper's recipe as named presets.

The presets are OmniMamba's decoupled two-stage recipe (paper §3.5-3.6, Table 5; official configs in reference
§12) plus two fine-tuning modes for the released 1.3B and a CPU smoke run. `batch` is the GLOBAL batch per task
per optimizer step (what the paper's tables count); each process gets batch / (processes x grad_accum), so the
same config gives the same samples per step on one GPU or eight.

Choices where the paper and the official code are silent or odd (docs/training.md explains each):
  * stage-1 T2I keeps the text embedding frozen (official: trained, which via the tie moves lm_head and so the
    MMU route): the two stage-1 runs then touch disjoint tensors and merge exactly;
  * stage-1 MMU trains mmu_pos_embed (official: frozen at random init, §11 item 19); it is MMU-only;
  * caption dropout 0.1 in every T2I run: a dropped caption is the engine's all-[PAD] unconditional side, so
    classifier-free guidance has something to contrast with (official: configured but never used).
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASKS = ("mmu", "t2i", "text")
PRECISIONS = ("bf16", "no")


class ConfigError(ValueError):
    """A training configuration that cannot run; the message says which field and what is allowed."""


@dataclass(frozen=True)
class TrainConfig:
    stage: str  # a name for logs and the checkpoint metadata
    batch: dict[str, int]  # task -> global samples per optimizer step, e.g. {"mmu": 24, "t2i": 384}
    trainable: tuple[str, ...]  # parameter groups (trainable.GROUPS) that receive gradients
    model: str = "omnimamba-1.3b"  # OmniMambaConfig preset name
    init: tuple[str, ...] = ()  # checkpoints loaded before training; later ones add only their trained keys
    data: dict[str, str] = field(default_factory=dict)  # task -> JSONL file / prepared shard folder / "synthetic"
    tokenizer: str | None = None  # tokenizer.json (default: GPT-NeoX-20B from the Hub cache)
    lr: float = 1e-4
    warmup_steps: int = 0
    steps: int = 1000
    min_lr_ratio: float = 0.01  # cosine decays to lr x this (HF "cosine_with_min_lr", min_lr_rate 0.01)
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    grad_accum: int = 1
    mixed_precision: str = "bf16"  # "bf16" (autocast over fp32 weights) or "no" (fp32)
    seed: int = 0
    caption_dropout: float = 0.1  # T2I: probability that a caption becomes all [PAD] (the CFG unconditional side)
    lora_dropout: float = 0.05  # on the LoRA input, as the official adapter (inactive in eval)
    num_workers: int = 4
    log_every: int = 1
    save_every: int = 5000
    cpu: bool = False  # force the CPU even when a GPU is visible
    reference_kernels: bool = False  # GPU: run the PyTorch reference twins instead of the fast kernels (slower)

    def __post_init__(self) -> None:
        from .trainable import GROUPS  # the group names live with the selection code

        unknown = [t for t in self.batch if t not in TASKS]
        if unknown or not any(self.batch.values()):
            raise ConfigError(f"batch {self.batch}: tasks must be among {TASKS} with at least one batch > 0")
        bad = [g for g in self.trainable if g not in GROUPS]
        if bad or not self.trainable:
            raise ConfigError(f"trainable {list(self.trainable)}: unknown groups {bad}; choose from {sorted(GROUPS)}")
        if self.mixed_precision not in PRECISIONS:
            raise ConfigError(f"mixed_precision {self.mixed_precision!r}: choose one of {PRECISIONS}")
        for name in ("steps", "grad_accum", "log_every", "save_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.caption_dropout < 1.0 or not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError("caption_dropout and lora_dropout must lie in [0, 1)")

    @property
    def tasks(self) -> tuple[str, ...]:
        """Tasks with a non-zero batch, in a fixed order (the order their losses are computed and logged)."""
        return tuple(t for t in TASKS if self.batch.get(t, 0) > 0)

    def micro_batch(self, num_processes: int) -> dict[str, int]:
        """Samples per task per process per forward: batch / (processes x grad_accum), exactly."""
        split = num_processes * self.grad_accum
        bad = {t: b for t, b in self.batch.items() if b % split}
        if bad:
            raise ConfigError(f"batch {bad} is not divisible by processes x grad_accum = {num_processes} x "
                              f"{self.grad_accum}; change batch or grad_accum (--set grad_accum=N)")
        return {t: b // split for t, b in self.batch.items() if b > 0}

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **_coerce(changes))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Build from plain data; unknown keys are an error (a typo must not silently train the wrong thing).
        A "preset" key starts from that preset and overrides it with the other keys."""
        data = dict(data)
        base = data.pop("preset", None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; valid keys: {sorted(known)} (and 'preset')")
        if base is not None:
            return preset(base).replace(**data)
        missing = [k for k in ("stage", "batch", "trainable") if k not in data]
        if missing:
            raise ConfigError(f"config lacks {missing}; give them or start from a preset with \"preset\": NAME")
        return cls(**_coerce(data))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "TrainConfig":
        """A JSON file: either every field, or {"preset": NAME, ...overrides}. Relative data paths stay as
        written (they are resolved against the working directory when the data is opened)."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read the training config {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object of config keys, found {type(data).__name__}")
        return cls.from_dict(data)


def _coerce(data: dict[str, Any]) -> dict[str, Any]:
    """JSON gives lists where the dataclass holds tuples (frozen configs must stay hashable-ish and immutable)."""
    out = dict(data)
    for key in ("trainable", "init", "betas"):
        if key in out and isinstance(out[key], (list, str)):
            out[key] = (out[key],) if isinstance(out[key], str) else tuple(out[key])
    return out


# parameter groups per recipe step (names: trainable.GROUPS)
STAGE1_MMU = ("projector", "mmu_lora", "mmu_pos_embed")
STAGE1_T2I = ("t2i_lora", "image_table", "project_in", "caption_embed", "pos_embed")
STAGE2 = ("projector", "mmu_lora", "t2i_lora", "mmu_pos_embed", "pos_embed", "text_embedding", "image_table",
          "project_in", "caption_embed", "blocks", "norm_f")
# stage 1 starts from the pretrained towers + VQ and the Mamba-2 1.3B LM; stage 2 from both stage-1 runs merged
STAGE1_INIT = ("hub-towers", "mamba2:state-spaces/mamba2-1.3b")
LORA_FINETUNE = ("mmu_lora", "t2i_lora", "text_embedding", "image_table")  # text table = lm_head, image = img_head


def _presets() -> dict[str, TrainConfig]:
    return {
        # paper stage 1 (align): Mamba-2 LM init; one route each; 8 GPUs x 32 MMU / x 90 T2I in the official run
        "stage1-mmu": TrainConfig("stage1-mmu", {"mmu": 256}, STAGE1_MMU, init=STAGE1_INIT, lr=1e-3,
                                  warmup_steps=100, steps=5000),
        "stage1-t2i": TrainConfig("stage1-t2i", {"t2i": 720}, STAGE1_T2I, init=STAGE1_INIT, lr=8e-4,
                                  warmup_steps=1000, steps=100_000),
        # paper stage 2 (unify): both losses summed; 3 MMU + 48 T2I per GPU x 8 GPUs
        "stage2": TrainConfig("stage2", {"mmu": 24, "t2i": 384}, STAGE2, init=("runs/stage1-mmu", "runs/stage1-t2i"),
                              lr=1e-4, warmup_steps=0, steps=150_000),
        # the released 1.3B on a small dataset
        "lora-finetune": TrainConfig("lora-finetune", {"mmu": 8, "t2i": 32}, LORA_FINETUNE, init=("hub",),
                                     lr=2e-4, warmup_steps=50, steps=2000, save_every=500),
        "full-finetune": TrainConfig("full-finetune", {"mmu": 8, "t2i": 32}, STAGE2, init=("hub",), lr=2e-5,
                                     warmup_steps=50, steps=2000, save_every=500),
        # the tiny model on built-in synthetic data, on the CPU in well under 3 minutes
        "tiny-smoke": TrainConfig("tiny-smoke", {"mmu": 4, "t2i": 8}, STAGE2, model="tiny",
                                  data={"mmu": "synthetic", "t2i": "synthetic"}, lr=3e-3, warmup_steps=3, steps=30,
                                  mixed_precision="no", num_workers=0, save_every=15, cpu=True, lora_dropout=0.0),
    }


PRESETS = tuple(_presets())


def preset(name: str) -> TrainConfig:
    presets = _presets()
    if name not in presets:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
    return presets[name]
