"""The shapes world as training data sources: record k of a task is a pure function of (seed, k).

Image chats and stage-0 text are made on demand by the data-loader workers (rendering a scene costs about a
millisecond), so a source can be as long as a run needs without holding images in memory. Text to image needs
VQ codes: `encode_t2i_corpus` renders a fixed corpus once, in worker processes, and encodes it with the trained
VQ on the training device (the recipe keeps it in the run folder in `prepare`'s format).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import OmniMambaConfig
from ..model.vq import VQModel
from ..train.records import Record, T2IRecord, parse_record
from .records import chat_records, t2i_records, text_records

STREAMS: dict[str, Callable[[int], Iterator[dict]]] = {"mmu": chat_records, "t2i": t2i_records,
                                                       "text": text_records}


def record_seed(seed: int, task: str, index: int) -> int:
    """One generator seed per (run seed, task, record): records never depend on which worker made them."""
    return int(np.random.SeedSequence([seed, list(STREAMS).index(task), index]).generate_state(1)[0])


def make_item(seed: int, task: str, index: int, chat_mix: dict[str, float] | None = None) -> dict:
    """Record `index` of a task; `chat_mix` changes how image chats draw their question types (records.py)."""
    extra = {"mix": chat_mix} if chat_mix is not None and task == "mmu" else {}
    return next(STREAMS[task](record_seed(seed, task, index), **extra))


class WorldRecords(Sequence):
    """`length` records of one task, made when asked for (the training data's Sequence interface)."""

    def __init__(self, task: str, length: int, seed: int, config: OmniMambaConfig,
                 chat_mix: dict[str, float] | None = None):
        if task not in ("mmu", "text"):
            raise ValueError(f"WorldRecords makes 'mmu' or 'text' records, not {task!r} (t2i needs VQ codes: "
                             f"use encode_t2i_corpus)")
        self.task, self.length, self.seed, self.config, self.chat_mix = task, length, seed, config, chat_mix

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Record:  # type: ignore[override]
        if not 0 <= index < self.length:
            raise IndexError(index)
        item = make_item(self.seed, self.task, index, self.chat_mix)
        return parse_record(item, f"shapes {self.task}[{index}]", self.task, Path("."), self.config)


class _RenderedT2I(Dataset):
    """Item k: (caption, image as uint8 (3, H, W)) of t2i record k (rendered in a worker)."""

    def __init__(self, seed: int, length: int):
        self.seed, self.length = seed, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[str, torch.Tensor]:
        item = make_item(self.seed, "t2i", index)
        pixels = torch.from_numpy(np.asarray(item["image"].convert("RGB"), dtype=np.uint8).copy())
        return item["caption"], pixels.permute(2, 0, 1)


def _captions_and_pixels(rows: list[tuple[str, torch.Tensor]]) -> tuple[list[str], torch.Tensor]:
    return [c for c, _ in rows], torch.stack([p for _, p in rows])


@torch.no_grad()
def encode_t2i_corpus(vq: VQModel, length: int, seed: int, device: torch.device, batch_size: int = 256,
                      num_workers: int = 8) -> list[T2IRecord]:
    """Render `length` t2i records and encode them with `vq`: the text-to-image source of a shapes run."""
    loader = DataLoader(_RenderedT2I(seed, length), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=_captions_and_pixels)
    vq = vq.to(device).eval()
    records: list[T2IRecord] = []
    for captions, pixels in loader:
        images = pixels.to(device, torch.float32) / 127.5 - 1.0  # (b, 3, 256, 256) in [-1, 1]
        codes = vq.encode_codes(images).cpu().tolist()
        records += [T2IRecord(caption=c, where=f"shapes t2i[{len(records) + i}]", codes=tuple(k))
                    for i, (c, k) in enumerate(zip(captions, codes))]
    return records

