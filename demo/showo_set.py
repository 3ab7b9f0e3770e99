"""A Show-o set loaded for comparison in the app: import from uploads or a path, one pair's view, and the
manifest of both sides. Plain Python (no Gradio), so the app keeps only layout and events."""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from omnimamba.compare import IMAGE_SUFFIXES, CompareError, Item, import_showo, read_manifest, read_prompts, write_manifest
from .format import pair_table

BASE_SEED = 0  # a pair without a recorded Show-o seed gets BASE_SEED + its index, as in the compare command

SET_MANIFEST = "comparison.jsonl"  # the download: both sides of a loaded set


@dataclass
class CompareSet:
    """One browser tab's Show-o set and OmniMamba's side of it (made on demand, by index), kept in gr.State.
    Uploads and OmniMamba's images live in `folder`, a temporary folder removed with the state."""
    showo: list[Item] = field(default_factory=list)
    ours: dict[int, Item] = field(default_factory=dict)
    folder: str | None = None
    source: str = ""  # what was loaded, for the status line

    def default_seed(self, index: int) -> int:
        seed = self.showo[index].seed
        return seed if seed is not None else BASE_SEED + index

    def close(self) -> None:
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)


def load_showo_set(files: list[str] | None, path: str | None, allow_paths: bool) -> CompareSet:
    """Uploaded files (Show-o's images plus its prompts .txt, or a manifest .jsonl plus its images), or a folder or
    manifest on this machine -> a CompareSet in a new temporary folder. CompareError says what to change."""
    uploads, path = [Path(f) for f in files or []], (path or "").strip()
    if path and not allow_paths:
        raise CompareError("Loading from a path on the server is turned off here: upload the files instead.")
    folder = Path(tempfile.mkdtemp(prefix="omnimamba-set-")).resolve()
    try:
        items, source = import_path(Path(path).expanduser(), uploads) if path else import_uploads(uploads, folder)
    except BaseException as exc:
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, CompareError):
            raise CompareError(tidy(str(exc), [folder, *{u.parent for u in uploads}])) from None
        raise
    return CompareSet(items, {}, str(folder), source)


def tidy(message: str, folders: list[Path]) -> str:
    """A message about uploaded files, without the server's temporary folders in it."""
    for folder in folders:
        message = message.replace(str(folder) + os.sep, "").replace(str(folder), "upload")
    return message


def sort_uploads(uploads: list[Path]) -> tuple[list[Path], Path | None, Path | None]:
    """(images, prompts .txt, manifest .jsonl) of an upload; refuses other files, repeated names, two of a kind."""
    kinds: dict[str, list[Path]] = {"image": [], ".txt": [], ".jsonl": []}
    for upload in uploads:
        kind = "image" if upload.suffix.lower() in IMAGE_SUFFIXES else upload.suffix.lower()
        if kind not in kinds:
            raise CompareError(f"{upload.name}: expected Show-o's images ({', '.join(IMAGE_SUFFIXES)}), "
                               "the prompts .txt they were made from, or a manifest .jsonl")
        kinds[kind].append(upload)
    names = [upload.name for upload in uploads]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise CompareError(f"Two uploaded files are named {repeated[0]}: give every file its own name.")
    images, texts, manifests = kinds["image"], kinds[".txt"], kinds[".jsonl"]
    if len(texts) > 1 or len(manifests) > 1 or (texts and manifests):
        raise CompareError("Upload one prompts .txt or one manifest .jsonl (a manifest holds its prompts), found "
                           + ", ".join(u.name for u in texts + manifests) + ".")
    return images, texts[0] if texts else None, manifests[0] if manifests else None


def import_uploads(uploads: list[Path], folder: Path) -> tuple[list[Item], str]:
    """Uploaded Show-o outputs, copied flat into `folder`, as items; and a line naming what was loaded."""
    images, prompts, manifest = sort_uploads(uploads)
    for image in images:
        shutil.copy(image, folder / image.name)
    what = f"{len(images)} image{'s' if len(images) != 1 else ''}"
    if manifest is not None:
        return import_showo(flat_manifest(manifest, {image.name for image in images}, folder)), \
            f"{manifest.name} + {what}"
    if prompts is None:
        raise CompareError("Also upload the prompts .txt that Show-o's images were made from (one prompt per line; "
                           "image i is line i, in the natural order of the file names), or a manifest .jsonl."
                           if images else "Nothing to load: upload Show-o's images and its prompts .txt, or a "
                                          "manifest .jsonl and the images it names.")
    lines = read_prompts(shutil.copy(prompts, folder / prompts.name))
    if len(lines) != len(images):
        raise CompareError(f"{what} uploaded but {prompts.name} has {len(lines)} prompts: Show-o makes one image "
                           "per prompt line, so the counts must match.")
    return import_showo(folder, folder / prompts.name), f"{what} + {prompts.name}"


def flat_manifest(manifest: Path, uploaded: set[str], folder: Path) -> Path:
    """An uploaded manifest rewritten into `folder` with each image cut to its file name, so that it finds the
    uploaded images (kept flat there) and nothing else on the server."""
    items = read_manifest(manifest)
    names = [item.image.replace("\\", "/").rsplit("/", 1)[-1] if item.image else None for item in items]
    missing = sorted({name for name in names if name} - uploaded)
    if missing:
        raise CompareError(f"{manifest.name} names {len(missing)} image(s) that were not uploaded: "
                           f"{', '.join(missing[:4])}{' …' if len(missing) > 4 else ''}. Upload them with it.")
    flat = [dataclasses.replace(item, image=name) for item, name in zip(items, names)]
    return write_manifest(flat, folder / manifest.name)


def import_path(path: Path, uploads: list[Path]) -> tuple[list[Item], str]:
    """A folder of Show-o images (its prompts file uploaded, or kept in it as prompts.txt) or a manifest on this
    machine, as items; and a line naming what was loaded."""
    if len(uploads) > 1 or any(upload.suffix.lower() != ".txt" for upload in uploads):
        raise CompareError("With a path, upload nothing but the prompts .txt of a folder of images.")
    prompts = uploads[0] if uploads else path / "prompts.txt" if (path / "prompts.txt").is_file() else None
    if path.is_dir() and prompts is None:
        raise CompareError(f"{path} is a folder of images: also upload the prompts .txt they were made from (or "
                           "keep it there as prompts.txt), or give the path of a manifest .jsonl instead.")
    return import_showo(path, prompts), str(path) + (f" + {prompts.name}" if path.is_dir() else "")


def image_size(path: str | None) -> tuple[int, int] | None:
    if not path:
        return None
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


@dataclass
class PairView:
    """What the set browser shows for one pair, as plain values; `pair_updates` turns them into components."""
    index: int
    showo: Item
    ours: Item | None
    sizes: tuple[tuple[int, int] | None, tuple[int, int] | None]  # native sizes: Show-o's image (or input), ours
    seed: int  # the seed OmniMamba used, or would use by default

    @property
    def table(self) -> str:
        return pair_table(self.showo, self.ours, self.sizes if self.showo.task == "t2i" else (None, None))


def pair_view(cset: CompareSet, index: float | None) -> PairView:
    """Pair `index` of the loaded set (clamped to the set), with OmniMamba's side when it has been made."""
    if not cset.showo:
        raise CompareError("Load a Show-o set first: upload its images and prompts .txt, or a manifest.")
    index = min(max(int(index or 0), 0), len(cset.showo) - 1)
    showo, ours = cset.showo[index], cset.ours.get(index)
    sizes = (image_size(showo.image), image_size(ours.image) if ours is not None and ours.task == "t2i" else None)
    return PairView(index, showo, ours, sizes, ours.seed if ours is not None else cset.default_seed(index))


def write_set_manifest(cset: CompareSet) -> Path:
    """Both sides so far in one JSONL: Show-o's items, then OmniMamba's (in set order), paths relative to it."""
    ours = [cset.ours[index] for index in sorted(cset.ours)]
    return write_manifest([*cset.showo, *ours], Path(cset.folder) / SET_MANIFEST)
