"""`prepare`: pre-tokenize a text-to-image JSONL with the VQ into shards, and read those shards back.

    OUT/shard-00000.safetensors   "codes": int32 (n, image_grid^2); metadata: the n captions (JSON), fingerprint
    OUT/index.json                format, fingerprint, shard files and sizes, model sizes

A shard is written to a temporary name and renamed when complete, so an interrupted run restarts at the first
missing shard. The fingerprint (the JSONL bytes, shard size, image size, code count and vocabulary) guards a
folder against mixing shards of different data; a folder made with other VQ weights must be deleted by hand.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..config import OmniMambaConfig
from ..model import OmniMamba
from .records import DataError, T2IRecord, load_image, load_jsonl, t2i_pixels

log = logging.getLogger(__name__)

INDEX = "index.json"
FORMAT = "omnimamba-t2i-codes/1"
OPEN_SHARDS = 32  # shard handles (and caption lists) a reader keeps per process


def prepare_t2i(jsonl: str | os.PathLike, out_dir: str | os.PathLike, model: OmniMamba, batch_size: int = 32,
                shard_size: int = 1024, device: str | torch.device = "cpu", num_workers: int = 0) -> Path:
    """Encode every image of a text-to-image JSONL with `model.vq` (moved to `device`) into OUT; returns OUT.
    Finished shards of an earlier run of the same data are kept; records that already carry codes skip the VQ."""
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size and shard_size must be >= 1, got {batch_size} and {shard_size}")
    config = model.config
    records = load_jsonl(jsonl, "t2i", config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fingerprint = _fingerprint(Path(jsonl), shard_size, config)
    _check_folder(out, fingerprint)
    ranges = [(s, min(s + shard_size, len(records))) for s in range(0, len(records), shard_size)]
    done = [_finished(out / _shard_name(k), fingerprint, stop - start) for k, (start, stop) in enumerate(ranges)]
    vq = model.vq.to(device).eval()
    with tqdm(total=len(records), unit="img", desc="prepare t2i",
              initial=sum(stop - start for (start, stop), d in zip(ranges, done) if d)) as bar:
        for k, (start, stop) in enumerate(ranges):
            if not done[k]:
                codes = _encode(records[start:stop], vq, config.image_size, batch_size, num_workers, bar)
                _write_shard(out / _shard_name(k), codes, [r.caption for r in records[start:stop]], fingerprint)
    _write_index(out, fingerprint, ranges, config, str(Path(jsonl).resolve()))
    log.info("prepared %d text-to-image samples in %d shards under %s", len(records), len(ranges), out)
    return out


def write_prepared(out_dir: str | os.PathLike, codes: torch.Tensor, captions: list[str], fingerprint: str,
                   config: OmniMambaConfig, source: str, shard_size: int = 1024) -> Path:
    """Codes encoded elsewhere, (n, image tokens) with their n captions -> a prepared folder (what `prepare_t2i`
    writes and CodeShards reads); the index, written last, marks it complete."""
    if len(codes) != len(captions):
        raise ValueError(f"{len(codes)} code rows for {len(captions)} captions")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ranges = [(s, min(s + shard_size, len(captions))) for s in range(0, len(captions), shard_size)]
    for k, (start, stop) in enumerate(ranges):
        _write_shard(out / _shard_name(k), codes[start:stop].to(torch.int32), captions[start:stop], fingerprint)
    _write_index(out, fingerprint, ranges, config, source)
    return out


def _shard_name(k: int) -> str:
    return f"shard-{k:05d}.safetensors"


def _fingerprint(jsonl: Path, shard_size: int, config: OmniMambaConfig) -> str:
    digest = hashlib.sha256(jsonl.read_bytes())
    digest.update(f"|{shard_size}|{config.image_size}|{config.num_image_tokens}|{config.image_vocab_size}".encode())
    return digest.hexdigest()[:32]


def _check_folder(out: Path, fingerprint: str) -> None:
    index = out / INDEX
    if index.is_file() and json.loads(index.read_text()).get("fingerprint") != fingerprint:
        raise DataError(f"{out} holds shards of other data (or another shard size / model); "
                        f"choose a new output folder or delete it")


def _finished(path: Path, fingerprint: str, count: int) -> bool:
    if not path.is_file():
        return False
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("fingerprint") != fingerprint:
        raise DataError(f"{path} was made from other data (or another shard size / model); "
                        f"choose a new output folder or delete it")
    return int(meta.get("num_samples", -1)) == count


class _Pixels(Dataset):
    """Records -> VQ input pixels, decoded in DataLoader workers."""

    def __init__(self, records: Sequence[T2IRecord], size: int):
        self.records, self.size = records, size

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> torch.Tensor:
        record = self.records[i]
        return t2i_pixels(load_image(record.image, record.where), self.size)


@torch.inference_mode()
def _encode(records: Sequence[T2IRecord], vq, size: int, batch_size: int, num_workers: int, bar: tqdm) -> torch.Tensor:
    """(n, image tokens) int32 codes; records that carry codes keep them."""
    todo = [i for i, r in enumerate(records) if r.codes is None]
    codes = [torch.tensor(r.codes, dtype=torch.int32) if r.codes is not None else None for r in records]
    bar.update(len(records) - len(todo))
    param = next(vq.parameters())
    loader = DataLoader(_Pixels([records[i] for i in todo], size), batch_size=batch_size, num_workers=num_workers)
    at = 0
    for pixels in loader:
        batch_codes = vq.encode_codes(pixels.to(param.device, param.dtype)).to("cpu", torch.int32)
        for row in batch_codes:
            codes[todo[at]] = row
            at += 1
        bar.update(len(batch_codes))
    return torch.stack(codes)


def _write_shard(path: Path, codes: torch.Tensor, captions: list[str], fingerprint: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({"codes": codes.contiguous()}, str(tmp), metadata={
        "captions": json.dumps(captions), "fingerprint": fingerprint, "num_samples": str(len(captions))})
    os.replace(tmp, path)  # a shard exists only once complete: resume skips exactly the finished ones


def _write_index(out: Path, fingerprint: str, ranges: list[tuple[int, int]], config: OmniMambaConfig,
                 source: str) -> None:
    index = {"format": FORMAT, "fingerprint": fingerprint, "source": source,
             "num_samples": ranges[-1][1] if ranges else 0, "image_tokens": config.num_image_tokens,
             "codebook_size": config.image_vocab_size, "image_size": config.image_size,
             "shards": [{"file": _shard_name(k), "num_samples": stop - start} for k, (start, stop) in enumerate(ranges)]}
    (out / INDEX).write_text(json.dumps(index, indent=1))


class CodeShards(Sequence):
    """A prepared folder as a random-access sequence of T2IRecord (caption + codes). Shards are opened lazily
    and a few are kept open per process; safe to hand to DataLoader workers."""

    def __init__(self, folder: str | os.PathLike, config: OmniMambaConfig | None = None):
        self.folder = Path(folder)
        try:
            index = json.loads((self.folder / INDEX).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{self.folder}: no readable {INDEX} ({exc}); is this a folder written by "
                            f"`python -m omnimamba prepare`?") from exc
        if index.get("format") != FORMAT:
            raise DataError(f"{self.folder}/{INDEX}: format {index.get('format')!r}, expected {FORMAT!r}")
        if config is not None and (index["image_tokens"], index["codebook_size"]) != (
                config.num_image_tokens, config.image_vocab_size):
            raise DataError(f"{self.folder}: codes for {index['image_tokens']} tokens from a {index['codebook_size']}"
                            f"-code VQ; this model uses {config.num_image_tokens} from {config.image_vocab_size}; "
                            f"prepare the data again with this model")
        self.fingerprint = index.get("fingerprint")  # what the folder was made from (prepare's or its writer's)
        self.files = [self.folder / s["file"] for s in index["shards"]]
        self.starts = [0]
        for s in index["shards"]:
            self.starts.append(self.starts[-1] + s["num_samples"])
        self._open: OrderedDict[int, tuple] = OrderedDict()

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, i: int) -> T2IRecord:
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} of {len(self)}")
        k = bisect.bisect_right(self.starts, i) - 1
        handle, captions = self._shard(k)
        j = i - self.starts[k]
        codes = handle.get_slice("codes")[j:j + 1][0]
        return T2IRecord(captions[j], f"{self.files[k]}#{j}", codes=tuple(codes.tolist()))

    def _shard(self, k: int) -> tuple:
        if k in self._open:
            self._open.move_to_end(k)
            return self._open[k]
        handle = safe_open(str(self.files[k]), "pt")
        self._open[k] = (handle, json.loads(handle.metadata()["captions"]))
        if len(self._open) > OPEN_SHARDS:
            self._open.popitem(last=False)
        return self._open[k]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": OrderedDict()}  # handles do not cross process boundaries
