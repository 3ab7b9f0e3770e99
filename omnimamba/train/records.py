"""Training records: the documented JSONL formats, validated, and the images they point to (docs/training.md#data).

    image chat       {"image": "imgs/1.png" | null, "conversations": [{"from": "human", "value": "..."},
                                                                       {"from": "gpt", "value": "..."}, ...]}
    text to image    {"image": "imgs/1.png", "caption": "..."}   or, prepared / synthetic, {"caption", "codes"}
    plain text       {"text": "..."}

Image paths are relative to the JSONL file's folder. The same dicts may come from a Python iterable, where
"image" may also be a PIL image. Every problem is reported as `file:line: what is wrong` (up to MAX_ERRORS at
once) before any training starts; images are only decoded when a batch needs them.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Union

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..config import OmniMambaConfig, VisionConfig
from ..images import ImageFileError, open_image
from ..model.vision import resize_image

MAX_ERRORS = 20
HUMAN, GPT = ("human", "user"), ("gpt", "assistant")  # LLaVA's role names, and the chat-API ones
IMAGE_PLACEHOLDER = "<image>"  # LLaVA marks the image in the first question; the image block replaces it
ImageRef = Union[Path, Image.Image, None]


class DataError(ValueError):
    """Training data that cannot be used; the message names file:line and what is wrong."""


@dataclass(frozen=True)
class ChatRecord:
    turns: tuple[tuple[str, str], ...]  # (question, answer) pairs, in order
    image: ImageRef  # None: a text-only chat (trained with the zero image block)
    where: str  # "file.jsonl:12", for errors found later (an image that does not decode)


@dataclass(frozen=True)
class T2IRecord:
    caption: str
    where: str
    image: ImageRef = None  # raw image (needs `prepare`), or
    codes: tuple[int, ...] | None = None  # its VQ codes (prepared shards, synthetic data)


@dataclass(frozen=True)
class TextRecord:
    text: str
    where: str


Record = Union[ChatRecord, T2IRecord, TextRecord]
TASKS = ("mmu", "t2i", "text")


def load_jsonl(path: str | os.PathLike, task: str, config: OmniMambaConfig | None = None) -> list[Record]:
    """Every record of a JSONL file of `task` records ("mmu", "t2i" or "text"), validated."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the {task} data file {path}: {exc}") from exc
    items = []
    for lineno, line in enumerate(lines, 1):
        if line.strip():
            items.append((f"{path}:{lineno}", line))
    return _parse_all(((where, _json(line, where)) for where, line in items), task, path.parent, config, str(path))


def load_items(items: Iterable[dict], task: str, name: str = "records",
               config: OmniMambaConfig | None = None) -> list[Record]:
    """Records from Python dicts (the same keys as the JSONL lines); errors name `name[index]`."""
    return _parse_all(((f"{name}[{i}]", item) for i, item in enumerate(items)), task, Path.cwd(), config, name)


def _parse_all(items: Iterable[tuple[str, Any]], task: str, base: Path, config: OmniMambaConfig | None,
               source: str) -> list[Record]:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")
    records, errors = [], []
    for where, obj in items:
        try:
            records.append(parse_record(obj, where, task, base, config))
        except DataError as exc:
            errors.append(str(exc))
            if len(errors) == MAX_ERRORS:
                break
    if errors:
        more = " (the first ones; fix them and run again)" if len(errors) == MAX_ERRORS else ""
        raise DataError(f"{len(errors)} problem(s) in the {task} data {source}{more}:\n  " + "\n  ".join(errors))
    if not records:
        raise DataError(f"the {task} data {source} holds no records")
    return records


def _json(line: str, where: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        return _Invalid(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})")


@dataclass(frozen=True)
class _Invalid:
    message: str


def parse_record(obj: Any, where: str, task: str, base: Path, config: OmniMambaConfig | None = None) -> Record:
    """One record dict -> a validated record of `task`; DataError naming `where` otherwise."""
    if isinstance(obj, _Invalid):
        raise DataError(obj.message)
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, found {type(obj).__name__}")
    kinds = [k for k, key in (("mmu", "conversations"), ("t2i", "caption"), ("text", "text")) if key in obj]
    if len(kinds) != 1:
        found = "none of" if not kinds else "more than one of"
        raise DataError(f"{where}: a record needs exactly one of \"conversations\" (image chat), \"caption\" "
                        f"(text to image) or \"text\" (plain text); found {found} them (keys: {sorted(obj)})")
    if kinds[0] != task:
        raise DataError(f"{where}: a {kinds[0]} record in the {task} data; give each task its own file")
    if task == "mmu":
        return ChatRecord(_turns(obj["conversations"], where), _image(obj.get("image"), where, base), where)
    if task == "t2i":
        return _t2i(obj, where, base, config)
    return TextRecord(_text(obj["text"], where, "\"text\""), where)


def _turns(conversations: Any, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(conversations, list) or not conversations:
        raise DataError(f"{where}: \"conversations\" must be a non-empty list of {{\"from\", \"value\"}} turns")
    if len(conversations) % 2:
        raise DataError(f"{where}: {len(conversations)} turns; a conversation alternates human/gpt and ends "
                        f"with a gpt answer, so it has an even number of turns")
    texts = []
    for i, turn in enumerate(conversations):
        roles = HUMAN if i % 2 == 0 else GPT
        if not isinstance(turn, dict) or turn.get("from") not in roles:
            got = turn.get("from") if isinstance(turn, dict) else turn
            raise DataError(f"{where}: turn {i} must come from {roles[0]!r}, found {got!r} (turns alternate "
                            f"human, gpt, human, ... starting with human)")
        value = _text(turn.get("value"), where, f"turn {i} \"value\"").replace(IMAGE_PLACEHOLDER, "").strip()
        if not value:
            raise DataError(f"{where}: turn {i} holds only the {IMAGE_PLACEHOLDER} placeholder; it needs text")
        texts.append(value)
    return tuple(zip(texts[0::2], texts[1::2]))


def _text(value: Any, where: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: {what} must be non-empty text, found {value!r}")
    return value.strip()


def _image(value: Any, where: str, base: Path, required: bool = False) -> ImageRef:
    if value is None and not required:
        return None
    if isinstance(value, Image.Image):
        return value
    if not isinstance(value, str) or not value:
        raise DataError(f"{where}: \"image\" must be a file path{'' if required else ' or null'}, found {value!r}")
    path = base / value
    if not path.is_file():
        raise DataError(f"{where}: image {value!r} not found (looked for {path}; paths are relative to the "
                        f"JSONL file's folder)")
    return path


def _t2i(obj: dict, where: str, base: Path, config: OmniMambaConfig | None) -> T2IRecord:
    caption = _text(obj["caption"], where, "\"caption\"")
    if obj.get("codes") is not None:
        return T2IRecord(caption, where, codes=_codes(obj["codes"], where, config))
    if obj.get("image") is None:
        raise DataError(f"{where}: a text-to-image record needs \"image\" (a file) or \"codes\" (its VQ ids)")
    return T2IRecord(caption, where, image=_image(obj["image"], where, base, required=True))


def _codes(codes: Any, where: str, config: OmniMambaConfig | None) -> tuple[int, ...]:
    if isinstance(codes, Tensor):
        codes = codes.tolist()
    if not isinstance(codes, (list, tuple)) or not all(isinstance(c, int) for c in codes):
        raise DataError(f"{where}: \"codes\" must be a list of integers (VQ ids)")
    if config is not None:
        n, vocab = config.num_image_tokens, config.image_vocab_size
        if len(codes) != n or not all(0 <= c < vocab for c in codes):
            raise DataError(f"{where}: \"codes\" must be {n} ids in [0, {vocab}) for this model, found "
                            f"{len(codes)} ids in [{min(codes, default=0)}, {max(codes, default=0)}]")
    return tuple(codes)


# ----------------------------------------------------------------- images -> model inputs
def load_image(image: ImageRef, where: str) -> Image.Image:
    """The record's image, upright and RGB; DataError naming the record if the file does not decode."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    try:
        return open_image(image)
    except ImageFileError as exc:
        raise DataError(f"{where}: {exc}") from exc


def mmu_pixels(record: ChatRecord, vision: VisionConfig) -> torch.Tensor:
    """uint8 (3, S, S): the resize of the model's own vision transform (the engine's at inference); the loss
    applies the rest, `vision.normalize_pixels`."""
    return resize_image(load_image(record.image, record.where), vision)


def t2i_pixels(image: Image.Image, size: int) -> Tensor:
    """RGB image -> (3, size, size) in [-1, 1] for the VQ: bicubic resize of the short side, centre crop."""
    scale = size / min(image.size)
    w, h = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    image = image.resize((w, h), Image.BICUBIC)
    left, top = (w - size) // 2, (h - size) // 2
    image = image.crop((left, top, left + size, top + size))
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0)
    return pixels.permute(2, 0, 1).contiguous()
