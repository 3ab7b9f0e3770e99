"""OmniMamba beside Show-o: the items (manifests of results), importers for Show-o's outputs, pairing.

Show-o cannot share our environment, so its outputs are imported (a folder of images plus the prompts file they
were made from, or a manifest) and OmniMamba's are produced here under recorded settings. docs/compare.md
describes the manifest and how to make Show-o outputs that fit; `runs.py` makes OmniMamba's side and
`report.py` draws the grids and the report.

Image paths: on disk a manifest stores them relative to its own folder. In memory, the items that
`import_showo`, `generate_item` and `answer_item` return carry absolute paths; `read_manifest` returns them as
stored, so pass the manifest's folder as the base directory to `render_grid` and `write_report`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from PIL import Image

from ..model.vision import MAX_IMAGE_PIXELS

log = logging.getLogger(__name__)

TASKS = ("t2i", "mmu")  # text to image; multimodal understanding (image chat)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MANIFEST = "manifest.jsonl"


class CompareError(ValueError):
    """Inputs to a comparison that cannot be used as given; the message says what to change."""


@dataclass
class Item:
    """One result of either model: a generated image (t2i) or an answer about an image (mmu)."""
    task: str  # "t2i" or "mmu"
    prompt: str  # the t2i prompt or the mmu question
    image: str | None = None  # t2i: the output image; mmu: the input image (None for a text-only chat)
    answer: str | None = None  # mmu only
    seed: int | None = None
    resolution: int | None = None  # side in pixels: of the output (t2i) or of the model's view of the input (mmu)
    sampler: dict = field(default_factory=dict)  # steps, guidance_scale, temperature, top_k, top_p, ...
    seconds: float | None = None  # wall time of this item alone, after warm-up
    peak_vram_gib: float | None = None
    model: str = ""
    revision: str | None = None
    device: str | None = None  # e.g. "NVIDIA H100 80GB HBM3 (bfloat16)"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Item":
        """Validate and build; raises CompareError naming the first field that is wrong."""
        if not isinstance(data, dict):
            raise CompareError(f"expected a JSON object, found {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise CompareError(f"unknown field(s) {unknown}; the fields are {names}")
        for name in ("task", "prompt"):
            if name not in data:
                raise CompareError(f"missing field {name!r}")
        item = cls(**data)
        item._check()
        return item

    def _check(self) -> None:
        if self.task not in TASKS:
            raise CompareError(f"task must be one of {list(TASKS)}, found {self.task!r}")
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise CompareError(f"prompt must be non-empty text, found {self.prompt!r}")
        if self.task == "t2i" and not isinstance(self.image, str):
            raise CompareError(f"a t2i item needs 'image' (the path of the generated image), found {self.image!r}")
        if self.task == "mmu" and not isinstance(self.answer, str):
            raise CompareError(f"an mmu item needs 'answer' (the model's text), found {self.answer!r}")
        for name, kind in (("image", str), ("answer", str), ("seed", int), ("resolution", int), ("seconds", float),
                           ("peak_vram_gib", float), ("revision", str), ("device", str)):
            _check_type(name, getattr(self, name), kind)
        if not isinstance(self.model, str):
            raise CompareError(f"model must be text, found {self.model!r}")
        if not isinstance(self.sampler, dict):
            raise CompareError(f"sampler must be an object of settings, found {self.sampler!r}")
        for name in ("resolution", "seconds", "peak_vram_gib"):
            if (getattr(self, name) or 0) < 0:
                raise CompareError(f"{name} must be >= 0, found {getattr(self, name)}")


def _check_type(name: str, value: object, kind: type) -> None:
    accepted = (int, float) if kind is float else kind  # JSON writes 2.0 as 2
    # bool is an int in Python, but `"seed": true` is a mistake worth reporting
    if value is not None and (isinstance(value, bool) or not isinstance(value, accepted)):
        what = {str: "text", int: "a whole number", float: "a number"}[kind]
        raise CompareError(f"{name} must be {what} or null, found {value!r}")


# ---------------------------------------------------------------------------------------------- manifests
def read_manifest(path: str | Path) -> list[Item]:
    """Items of a JSONL manifest, image paths as stored (relative to the manifest's folder)."""
    path = Path(path)
    if not path.is_file():
        raise CompareError(f"manifest not found: {path}")
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(Item.from_dict(json.loads(line)))
        except json.JSONDecodeError as exc:
            raise CompareError(f"{path} line {number}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
        except CompareError as exc:
            raise CompareError(f"{path} line {number}: {exc}") from exc
    if not items:
        raise CompareError(f"{path} holds no items; write one JSON object per line (see docs/compare.md)")
    return items


def write_manifest(items: Iterable[Item], path: str | Path) -> Path:
    """One JSON object per line; absolute image paths are stored relative to the manifest's folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for item in items:
        if item.image is not None and Path(item.image).is_absolute():
            item = dataclasses.replace(item, image=os.path.relpath(item.image, path.parent.resolve()))
        lines.append(json.dumps(item.to_dict(), ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- importing
def import_showo(source: str | Path, prompts_file: str | Path | None = None) -> list[Item]:
    """Show-o's results, image paths made absolute. `source` is a manifest (.jsonl file) or a folder of images
    that `prompts_file` made, one image per line in the natural order of the file names (2.png before 10.png)."""
    source = Path(source)
    if source.is_file():
        return _import_manifest(source)
    if source.is_dir():
        if prompts_file is None:
            raise CompareError(f"{source} is a folder of images: also give the prompts file they were made from "
                               "(--prompts), or a manifest instead")
        return _import_folder(source, Path(prompts_file))
    raise CompareError(f"Show-o outputs not found at {source}: give a folder of images or a manifest .jsonl")


def _import_manifest(path: Path) -> list[Item]:
    items = read_manifest(path)
    for number, item in enumerate(items, start=1):
        if item.image is not None:
            image = (path.parent / item.image).resolve()
            check_image_file(image, f"{path} item {number}")
            items[number - 1] = dataclasses.replace(item, image=str(image))
    return items


def _import_folder(folder: Path, prompts_file: Path) -> list[Item]:
    prompts = read_prompts(prompts_file)
    images = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")),
                    key=natural_key)
    if len(images) != len(prompts):
        raise CompareError(f"{folder} has {len(images)} images but {prompts_file} has {len(prompts)} prompts; "
                           "Show-o writes one image per prompt line, so the counts must match")
    items = []
    for prompt, image in zip(prompts, images):
        width, _ = check_image_file(image, str(folder))
        items.append(Item("t2i", prompt, image=str(image.resolve()), resolution=width, model="Show-o"))
    return items


def natural_key(path: Path) -> list:
    """'img_2.png' sorts before 'img_10.png'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def check_image_file(path: Path, where: str) -> tuple[int, int]:
    """(width, height) of a readable image; CompareError naming the file otherwise."""
    if not path.is_file():
        raise CompareError(f"{where}: image file {path} is missing")
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:  # checked from the header, before decoding
                raise CompareError(f"{where}: image {path} is {image.width}x{image.height}; images up to "
                                   f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels are accepted")
            image.load()
            return image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, CompareError):
            raise
        raise CompareError(f"{where}: could not read image {path} ({exc}); re-save it as PNG or remove it") from exc


def read_prompts(path: str | Path) -> list[str]:
    """One prompt per line, as Show-o's inference script reads them; a blank line inside the file is refused,
    since Show-o would make an (unconditional) image for it."""
    path = Path(path)
    if not path.is_file():
        raise CompareError(f"prompts file not found: {path}")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line:
            raise CompareError(f"{path} line {number} is blank; remove it (and its image, if Show-o made one)")
    if not lines:
        raise CompareError(f"{path} holds no prompts; write one prompt per line")
    return lines


def read_questions(path: str | Path) -> list[tuple[Path | None, str]]:
    """Lines 'image_path<TAB>question' (path relative to the file's folder; empty for a text-only chat).
    Blank lines and lines starting with '#' are skipped."""
    path = Path(path)
    if not path.is_file():
        raise CompareError(f"questions file not found: {path}")
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        image, tab, question = line.partition("\t")
        if not tab or not question.strip():
            raise CompareError(f"{path} line {number}: expected 'image_path<TAB>question', found {line!r}")
        image_path = (path.parent / image.strip()).resolve() if image.strip() else None
        if image_path is not None:
            check_image_file(image_path, f"{path} line {number}")
        questions.append((image_path, question.strip()))
    if not questions:
        raise CompareError(f"{path} holds no questions; write lines 'image_path<TAB>question'")
    return questions


# ---------------------------------------------------------------------------------------------- pairing
def pair_key(item: Item) -> tuple:
    """t2i items pair by prompt; mmu items by question and input image file name."""
    image_name = Path(item.image).name if item.task == "mmu" and item.image else None
    return item.task, item.prompt, image_name


def pair_items(showo: list[Item], ours: list[Item]) -> list[tuple[Item, Item]]:
    """(Show-o, OmniMamba) pairs in OmniMamba's order; a repeated prompt pairs by occurrence. Every item on both
    sides must find its partner."""
    waiting: dict[tuple, list[Item]] = defaultdict(list)
    for item in showo:
        waiting[pair_key(item)].append(item)
    pairs, lonely_ours = [], []
    for item in ours:
        partners = waiting[pair_key(item)]
        if partners:
            pairs.append((partners.pop(0), item))
        else:
            lonely_ours.append(item)
    lonely_showo = [item for items in waiting.values() for item in items]
    if lonely_ours or lonely_showo:
        raise CompareError(_unmatched_message(lonely_showo, lonely_ours))
    return pairs


def _unmatched_message(lonely_showo: list[Item], lonely_ours: list[Item]) -> str:
    def describe(items: list[Item]) -> str:
        shown = [f"{i.task} {i.prompt!r}" + (f" ({Path(i.image).name})" if i.task == "mmu" and i.image else "")
                 for i in items[:3]]
        return "; ".join(shown) + (f"; and {len(items) - 3} more" if len(items) > 3 else "")

    parts = []
    if lonely_showo:
        parts.append(f"{len(lonely_showo)} Show-o item(s) have no OmniMamba partner: {describe(lonely_showo)}")
    if lonely_ours:
        parts.append(f"{len(lonely_ours)} OmniMamba item(s) have no Show-o partner: {describe(lonely_ours)}")
    return (". ".join(parts) + ". Both sides must use the same prompts and questions (same text, same number of "
            "times; image chats also the same image file name).")
