"""The app's programmatic endpoints, declared with `gr.api`: typed functions, JSON in and out, files as Gradio
FileData (gradio_client uploads `handle_file(...)` arguments and downloads returned files).

    /chat                   image, question, session_id, max_new_tokens, temperature, top_k, top_p, seed
                            -> stream of (answer so far, metrics, session_id)
    /text_to_image          prompt, num_images, seed, temperature, top_k, top_p, guidance_scale, previews
                            -> stream of (images, metrics)
    /compare_text_to_image  prompt, seed, showo_image, temperature, top_k, top_p, guidance_scale -> (picture, record)
    /compare_chat           image, question, showo_answer, max_new_tokens, temperature, top_k, top_p, seed
                            -> (answer, record)
    /compare_load           showo_files, showo_path -> loaded (with its set_id)
    /compare_pair           set_id, pair, seed, temperature, top_k, top_p, guidance_scale, max_new_tokens
                            -> (picture or None, record)
Defaults are the official greedy decoding; a seed of -1 draws one (the metrics say which). A Show-o set loaded
through the API is kept under a random set_id, as a chat is under its session_id, until it has been idle for an
hour or more than MAX_SETS are held.
"""
from __future__ import annotations

import functools
import inspect
import secrets
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr
from gradio import FileData
from gradio import utils as gradio_utils
from PIL import Image

from .chat import ChatHandlers
from .compare_one import CompareOneHandlers
from .compare_pairs import LOAD_LIMIT, ComparePairHandlers
from .gpu import by_images, by_tokens, gpu_event, one_pair
from .handlers import user_errors
from .images import ImageHandlers
from .inputs import COMPARE_NEW_TOKENS, DEFAULT_NEW_TOKENS, refuse
from .showo_set import CompareSet

MAX_SETS = 16  # Show-o sets the API holds at once (the least recently used one goes first)
SET_IDLE_S = 3600.0
OUTPUT_AGE_S = 3600.0  # image files written for API answers are removed after this
PRUNE_EVERY_S = 60.0


class OutputFiles:
    """PNG files for API answers in one temporary folder; files older than OUTPUT_AGE_S go, looked for at most
    once a PRUNE_EVERY_S (a stream of previews writes many files; one writer prunes at a time). The folder is
    inside Gradio's upload folder: an endpoint's returned file is served from where it is (not copied), and
    Gradio's file route serves only that folder, its cache and `allowed_paths` to a remote client."""

    def __init__(self):
        uploads = Path(gradio_utils.get_upload_folder())
        uploads.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="omnimamba-api-", dir=uploads))
        self.lock = threading.Lock()
        self.pruned_at = time.monotonic()

    def png(self, image: Image.Image) -> FileData:
        if time.monotonic() - self.pruned_at > PRUNE_EVERY_S:
            self.prune()
        path = self.folder / f"{secrets.token_hex(8)}.png"
        image.save(path)
        return FileData(path=str(path), mime_type="image/png")

    def prune(self) -> None:
        old = time.time() - OUTPUT_AGE_S
        with self.lock:
            self.pruned_at = time.monotonic()
            for path in self.folder.glob("*.png"):
                if path.stat().st_mtime < old:
                    path.unlink()


class ApiSets:
    """Show-o sets loaded through /compare_load, by set_id; bounded in count and idle time."""

    def __init__(self):
        self.sets: dict[str, tuple[CompareSet, float]] = {}
        self.lock = threading.Lock()

    def add(self, cset: CompareSet) -> str:
        set_id = secrets.token_urlsafe(12)
        with self.lock:
            self._expire()
            while len(self.sets) >= MAX_SETS:
                oldest = min(self.sets, key=lambda k: self.sets[k][1])
                self.sets.pop(oldest)[0].close()
            self.sets[set_id] = (cset, time.monotonic())
        return set_id

    def get(self, set_id: Any) -> CompareSet:
        with self.lock:
            self._expire()
            if not isinstance(set_id, str) or set_id not in self.sets:
                raise refuse("Unknown or expired set_id: load the Show-o set again with /compare_load.")
            cset = self.sets[set_id][0]
            self.sets[set_id] = (cset, time.monotonic())
            return cset

    def _expire(self) -> None:
        idle = time.monotonic() - SET_IDLE_S
        for set_id in [k for k, (_, used) in self.sets.items() if used < idle]:
            self.sets.pop(set_id)[0].close()


def file_path(file: Any, what: str) -> str | None:
    """A FileData argument (as gradio_client's handle_file sends it, already checked into Gradio's upload
    folder) -> its path on the server; None when it was left out."""
    if file is None or file == "":
        return None
    path = file.get("path") if isinstance(file, dict) else getattr(file, "path", None)
    if not isinstance(path, str) or not path:
        raise refuse(f"{what} must be a file sent with gradio_client's handle_file(path), got {type(file).__name__}")
    return path


IMAGE_SETTINGS = ("temperature", "top_k", "top_p", "guidance_scale")  # what a model's checkpoint suggests


def with_defaults(fn: Callable[..., Iterator], defaults: dict[str, Any]) -> Callable[..., Iterator]:
    """A streaming endpoint whose named parameters default to `defaults`: in the signature that gr.api publishes
    (gradio_client fills left-out arguments from it) and for a call that leaves them out."""
    signature = inspect.signature(fn)
    signature = signature.replace(parameters=[p.replace(default=defaults[p.name]) if p.name in defaults else p
                                              for p in signature.parameters.values()])

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Iterator:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        yield from fn(*bound.args, **bound.kwargs)
    call.__signature__ = signature  # type: ignore[attr-defined]
    return call


def yielding(fn: Callable, outputs: Any) -> Callable:
    """A streaming endpoint that gr.api reads as `outputs` (a tuple type: one API output per element) instead of
    one output holding the whole yielded tuple."""
    @functools.wraps(fn)
    def stream(*args: Any, **kwargs: Any) -> Iterator:
        yield from fn(*args, **kwargs)
    stream.__signature__ = inspect.signature(fn).replace(return_annotation=outputs)  # type: ignore[attr-defined]
    return stream


class Endpoints:
    """The typed functions behind the API; each adapts files and images around one tab's handler."""

    def __init__(self, chat: ChatHandlers, images: ImageHandlers, one: CompareOneHandlers,
                 pairs: ComparePairHandlers, image_defaults: dict[str, Any] | None = None):
        """image_defaults: the model's suggested text-to-image settings (Engine.info()["image_defaults"]), the
        defaults of every endpoint that draws, as in the Text to image tab (the official model's are greedy
        without guidance; the shapes model's greedy image is its background alone)."""
        self.chat_ui, self.images_ui, self.one, self.pairs = chat, images, one, pairs
        self.files, self.sets = OutputFiles(), ApiSets()
        self.image_defaults = {k: v for k, v in (image_defaults or {}).items() if k in IMAGE_SETTINGS}

    def chat(self, image: FileData | None = None, question: str = "", session_id: str = "",
             max_new_tokens: float = DEFAULT_NEW_TOKENS, temperature: float = 1.0, top_k: float = 1,
             top_p: float = 0.0, seed: float = -1, request: gr.Request = None) -> Iterator[tuple[str, dict, str]]:
        """Stream the answer. An image starts a new conversation; no image and the session_id of an earlier call
        asks a follow-up (the model's state is reused); neither: a chat without an image."""
        yield from self.chat_ui.api_chat(file_path(image, "image"), question, session_id, max_new_tokens,
                                         temperature, top_k, top_p, seed, request)

    def text_to_image(self, prompt: str = "", num_images: float = 1, seed: float = -1, temperature: float = 1.0,
                      top_k: float = 1, top_p: float = 0.0, guidance_scale: float = 1.0, previews: bool = False
                      ) -> Iterator[tuple[list[FileData], dict]]:
        """Stream (images, metrics): previews when asked, then the final images (PNG)."""
        for images, metrics in self.images_ui.api_text_to_image(prompt, num_images, seed, temperature, top_k, top_p,
                                                                guidance_scale, previews):
            yield [self.files.png(image) for image in images or []], metrics

    def compare_text_to_image(self, prompt: str = "", seed: float = -1, showo_image: FileData | None = None,
                              temperature: float = 1.0, top_k: float = 1, top_p: float = 0.0,
                              guidance_scale: float = 1.0) -> Iterator[tuple[FileData, dict]]:
        """(a grid page, Show-o left and OmniMamba right, or OmniMamba's image alone; the manifest record)."""
        for picture, record in self.one.api_compare_images(prompt, seed, file_path(showo_image, "showo_image"),
                                                           temperature, top_k, top_p, guidance_scale):
            yield self.files.png(picture), record

    def compare_chat(self, image: FileData | None = None, question: str = "", showo_answer: str = "",
                     max_new_tokens: float = COMPARE_NEW_TOKENS, temperature: float = 1.0, top_k: float = 1,
                     top_p: float = 0.0, seed: float = -1) -> Iterator[tuple[str, dict]]:
        """(OmniMamba's answer to the question Show-o answered, the manifest record of both)."""
        yield from self.one.api_compare_answers(file_path(image, "image"), question, showo_answer, max_new_tokens,
                                                temperature, top_k, top_p, seed)

    def compare_load(self, showo_files: list[FileData] | None = None, showo_path: str = "") -> dict:
        """Load a Show-o set (its images and prompts .txt, or a manifest .jsonl and its images); the answer lists
        its items and the set_id that /compare_pair takes."""
        if showo_files is not None and not isinstance(showo_files, list):
            raise refuse("showo_files must be a list of files sent with handle_file(path)")
        paths = [path for f in showo_files or [] if (path := file_path(f, "each of showo_files"))]
        loaded, cset = self.pairs.api_compare_load(paths, showo_path)
        return {"set_id": self.sets.add(cset), **loaded}

    def compare_pair(self, set_id: str = "", pair: float = 1, seed: float = -1, temperature: float = 1.0,
                     top_k: float = 1, top_p: float = 0.0, guidance_scale: float = 1.0,
                     max_new_tokens: float = COMPARE_NEW_TOKENS) -> Iterator[tuple[FileData | None, dict]]:
        """OmniMamba's side of pair number `pair` (1 = the first) of a loaded set: (its image, or None for an
        image-chat pair; both sides' record). A seed of -1 is the pair's default (Show-o's seed, else its index)."""
        cset = self.sets.get(set_id)
        for image, record in self.pairs.api_compare_pair(cset, pair, seed, temperature, top_k, top_p,
                                                            guidance_scale, max_new_tokens):
            yield (FileData(path=image, mime_type="image/png") if image else None), record


def register(endpoints: Endpoints) -> None:
    """Declare every endpoint in the current Blocks: the GPU-bound ones in the GPU queue (on ZeroGPU, each call
    reserves what its arguments ask for), the set loader two at a time."""
    def api(name: str, fn: Callable, outputs: Any, duration: Callable | None = None) -> None:
        listener = gpu_event(fn, duration) if duration else dict(fn=user_errors(fn), **LOAD_LIMIT)
        fn = listener.pop("fn")
        gr.api(yielding(fn, outputs) if inspect.isgeneratorfunction(fn) else fn, api_name=name, **listener)

    api("chat", endpoints.chat, tuple[str, dict, str], by_tokens(3))
    drawing = functools.partial(with_defaults, defaults=endpoints.image_defaults)
    api("text_to_image", drawing(endpoints.text_to_image), tuple[list[FileData], dict], by_images(1, 6))
    api("compare_text_to_image", drawing(endpoints.compare_text_to_image), tuple[FileData, dict],
        by_images(None, 6))
    api("compare_chat", endpoints.compare_chat, tuple[str, dict], by_tokens(3))
    api("compare_load", endpoints.compare_load, dict)
    api("compare_pair", endpoints.compare_pair, tuple[FileData | None, dict], one_pair(guidance=6, tokens=7))


__all__ = ["Endpoints", "register"]
