"""Where the training samples come from and in what order: sources per task, and one batch dict per micro-step.

Item p of a StepDataset is this process's p-th micro-batch: {task: batch of micro_batch[task] samples}.
Every choice is a pure function of (seed, task, global sample index):
    global micro-batch  G = p * world_size + rank;   its samples  g = G * m .. G * m + m - 1   (m = micro batch)
    sample g -> epoch e = g // N, record perm(seed, task, e)[g % N]   (a fresh shuffle of the N records per epoch)
    caption dropout of sample g: one draw from rng(seed, task, g)
so batches do not depend on worker processes, W processes with m samples see exactly the samples of one process
with W * m, and resuming after k micro-batches is `make_loader(dataset, start=k)`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
from torch.utils.data import DataLoader, Dataset

from ..config import OmniMambaConfig
from .batches import Batch, BatchBuilder
from .prepare import INDEX, CodeShards
from .records import DataError, Record, load_items, load_jsonl
from .synthetic import synthetic_items

SYNTHETIC = "synthetic"
TASK_CODES = {"mmu": 1, "t2i": 2, "text": 3}  # stream ids for the per-task random generators
# named sources a program registers before training (e.g. the shapes world): name -> (task, config) -> records
NamedSource = Callable[[str, OmniMambaConfig], Sequence[Record]]
_NAMED_SOURCES: dict[str, NamedSource] = {}


def register_source(name: str, make: NamedSource) -> None:
    """Let `data: {task: name}` in a TrainConfig name records made in this process (workers inherit them)."""
    _NAMED_SOURCES[name] = make


def open_source(task: str, spec: str | os.PathLike | Iterable[dict], config: OmniMambaConfig) -> Sequence[Record]:
    """The records of one task: a JSONL file, a folder written by `prepare` (t2i), "synthetic", or dicts."""
    if isinstance(spec, (str, os.PathLike)):
        if str(spec) == SYNTHETIC:
            records = load_items(synthetic_items(task, config), task, f"synthetic {task} data", config)
        elif str(spec) in _NAMED_SOURCES:
            records = _NAMED_SOURCES[str(spec)](task, config)
        elif Path(spec).is_dir():
            if task != "t2i" or not (Path(spec) / INDEX).is_file():
                raise DataError(f"{spec} is a folder; only text-to-image data can be a folder written by "
                                f"`python -m omnimamba prepare` (with {INDEX}); give a JSONL file")
            records = CodeShards(spec, config)
        elif Path(spec).is_file():
            records = load_jsonl(spec, task, config)
        else:
            raise DataError(f"the {task} data {str(spec)!r} does not exist (a JSONL file, a prepared folder or "
                            f"{SYNTHETIC!r})")
    else:
        records = load_items(spec, task, f"{task} records", config)
    if task == "t2i" and not isinstance(records, CodeShards):
        _require_codes(records, spec)
    return records


def _require_codes(records: Sequence[Record], spec) -> None:
    raw = sum(1 for r in records if r.codes is None)
    if raw:
        raise DataError(f"{raw} of {len(records)} text-to-image records in {spec} are raw images; encode them "
                        f"once with `python -m omnimamba prepare {spec} --out DIR` and train on DIR")


def open_sources(data: Mapping[str, "str | os.PathLike | Iterable[dict]"], config: OmniMambaConfig,
                 tasks: Iterable[str]) -> dict[str, Sequence[Record]]:
    """open_source for every task in `tasks`; a task without data is an error that says how to give it."""
    missing = [t for t in tasks if t not in data]
    if missing:
        raise DataError(f"no data for task(s) {missing}: set data.<task> to a JSONL file, a prepared folder "
                        f"or {SYNTHETIC!r}")
    return {task: open_source(task, data[task], config) for task in tasks}


class StepDataset(Dataset):
    """Micro-batch p -> {task: batch}; see the module docstring for how samples are chosen."""

    def __init__(self, sources: Mapping[str, Sequence[Record]], micro_batch: Mapping[str, int],
                 builder: BatchBuilder, seed: int = 0, rank: int = 0, world_size: int = 1, length: int = 1):
        self.micro_batch = {t: m for t, m in micro_batch.items() if m > 0}
        unknown = [t for t in self.micro_batch if t not in sources or t not in TASK_CODES]
        if unknown:
            raise DataError(f"micro batch names tasks without a source: {unknown} (sources: {sorted(sources)})")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.sources, self.builder, self.seed = dict(sources), builder, seed
        self.rank, self.world_size, self.length = rank, world_size, length
        self._perms: dict[tuple[str, int], np.ndarray] = {}

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, position: int) -> dict[str, Batch]:
        micro = position * self.world_size + self.rank
        out = {}
        for task, m in self.micro_batch.items():
            samples = range(micro * m, micro * m + m)
            records = [self.sources[task][self.record_index(task, g)] for g in samples]
            out[task] = self._build(task, records, samples)
        return out

    def _build(self, task: str, records: list[Record], samples: range) -> Batch:
        if task == "mmu":
            return self.builder.mmu(records)
        if task == "t2i":
            return self.builder.t2i(records, [self.caption_dropped(g) for g in samples])
        return self.builder.text(records)

    def record_index(self, task: str, sample: int) -> int:
        """Which record global sample `sample` of `task` is."""
        epoch, at = divmod(sample, len(self.sources[task]))
        key = (task, epoch)
        if key not in self._perms:
            if len(self._perms) > 8:  # a worker moves through epochs in order; keep the recent ones
                self._perms.pop(next(iter(self._perms)))
            rng = np.random.default_rng([self.seed, TASK_CODES[task], epoch, 0])
            self._perms[key] = rng.permutation(len(self.sources[task]))
        return int(self._perms[key][at])

    def caption_dropped(self, sample: int) -> bool:
        p = self.builder.caption_dropout
        return p > 0 and bool(np.random.default_rng([self.seed, TASK_CODES["t2i"], sample, 1]).random() < p)


def _keep(item):
    return item  # items are whole batches already (module level: picklable for worker processes)


def make_loader(dataset: StepDataset, start: int = 0, num_workers: int = 0, pin_memory: bool = False,
                prefetch_factor: int | None = None) -> DataLoader:
    """Micro-batches start, start + 1, ... of `dataset`, in order, whatever num_workers is."""
    if not 0 <= start <= len(dataset):
        raise ValueError(f"start {start} outside the dataset's {len(dataset)} micro-batches")
    kwargs = {"prefetch_factor": prefetch_factor} if num_workers and prefetch_factor else {}
    return DataLoader(dataset, batch_size=None, sampler=range(start, len(dataset)), num_workers=num_workers,
                      collate_fn=_keep, pin_memory=pin_memory, **kwargs)
