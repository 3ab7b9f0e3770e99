"""OmniMamba demo: image chat and text-to-image from one Mamba-2 model, with a live speed / memory panel.

    python app.py                       # the official weights from the Hub, on http://127.0.0.1:7860
    python app.py --model tiny-random   # a random tiny model: try the interface without weights
    python app.py --help                # every flag; each also reads an OMNIMAMBA_* environment variable

Layout, events and formatting only: the shared `Engine` (omnimamba/engine.py) owns the model, the sessions and the
GPU lock; demo/format.py draws the panel. Per-request settings travel as handler arguments; the browser
session's chat state and loaded Show-o set live in gr.State; nothing per request is stored on the engine object.
"""
from __future__ import annotations

import argparse
import functools
import inspect
import json
import logging
import math
import os
import random
import sys
import tempfile
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr
from PIL import Image, ImageOps, UnidentifiedImageError

from omnimamba.compare import (IMAGE_SUFFIXES, CompareError, Item, answer_item, generate_item, read_prompts,
                                read_questions)
from omnimamba.compare import render_grid
from demo.showo_set import CompareSet, PairView, image_size, load_showo_set, pair_view, write_set_manifest
from omnimamba.engine import MAX_IMAGE_PIXELS, MAX_IMAGES_PER_PROMPT, Engine, EngineError
from omnimamba.metrics import RequestMetrics
from omnimamba.sampling import SamplingParams
from demo.format import (header_html, image_captions, item_metrics, pair_choices, pair_table, panel_html,
                                 set_status, side_label, t2i_note)

log = logging.getLogger("omnimamba.app")

# ---------------------------------------------------------------------------------------------- limits
QUEUE_SIZE = 32  # waiting requests beyond this are refused with "queue full"
GPU_QUEUE = "gpu"  # every GPU-bound handler shares this concurrency id, one at a time
GPU_SECONDS = 120  # ZeroGPU: the longest one GPU call may hold the card
MAX_NEW_TOKENS = 1024
DEFAULT_NEW_TOKENS = 256
MAX_QUESTION_CHARS = 4000
MAX_PROMPT_CHARS = 2000  # the model keeps only its first 68 tokens anyway (the note says so)
MAX_SEED = 2**31 - 1
PREVIEW_EVERY = 32  # text-to-image previews every this many tokens (two rows of the official 16x16 grid)
DEFAULT_QUESTION = "Describe this image in detail."
COMPARE_NEW_TOKENS = 100  # the compare command's default answer length
ROOT = Path(__file__).resolve().parent
ASSETS = ROOT / "assets"
EXAMPLES = ASSETS / "examples"
STYLE = ASSETS / "style.css"

ZERO_GPU = "SPACES_ZERO_GPU" in os.environ  # set on Hugging Face ZeroGPU hardware
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")  # served only here, the Compare tab may read Show-o sets by path

try:  # Hugging Face ZeroGPU: a GPU is attached only while a decorated call runs
    import spaces

    def on_gpu(fn: Callable) -> Callable:
        return spaces.GPU(duration=GPU_SECONDS)(fn)
except ImportError:
    def on_gpu(fn: Callable) -> Callable:
        return fn


def refuse(message: str) -> gr.Error:
    """An error the user sees as a toast; expected, so the server log does not get its traceback."""
    return gr.Error(message, print_exception=False)


@contextmanager
def as_messages(name: str) -> Iterator[None]:
    """Failures inside -> messages for the user (never a traceback). The engine keeps serving after an EngineError;
    anything unexpected is logged here in full."""
    try:
        yield
    except gr.Error:
        raise
    except (EngineError, CompareError) as exc:
        raise refuse(str(exc)) from None
    except Exception:
        log.exception("handler %s failed", name)
        raise refuse("Something went wrong on the server (it is logged there). Please try again.") from None


def user_errors(fn: Callable) -> Callable:
    """Handler (streamed or not) -> the same handler, with failures turned into messages (see `as_messages`)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args: Any, **kwargs: Any) -> Iterator:
            with as_messages(fn.__name__):
                yield from fn(*args, **kwargs)
        return stream

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        with as_messages(fn.__name__):
            return fn(*args, **kwargs)
    return call


# ---------------------------------------------------------------------------------------------- input checks
def is_whole(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and int(value) == value


def sampling(temperature: float, top_k: float, top_p: float, seed: float | None) -> SamplingParams:
    """Settings -> SamplingParams with a concrete seed (drawn when `seed` is empty or -1), so a turn can be replayed."""
    if seed is None or (is_whole(seed) and seed < 0):
        seed = random.randint(0, MAX_SEED)
    if not is_whole(seed) or seed > MAX_SEED:
        raise refuse(f"seed must be a whole number in 0..{MAX_SEED} (or -1 for a random one), got {seed}")
    if not is_whole(top_k):
        raise refuse(f"top_k must be a whole number (1 = greedy, 0 = off), got {top_k}")
    for name, value in (("temperature", temperature), ("top_p", top_p)):
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise refuse(f"{name} must be a number, got {value}")
    try:
        return SamplingParams(float(temperature), int(top_k), float(top_p), int(seed))
    except ValueError as exc:
        raise refuse(str(exc)) from None


def whole_number(value: float | None, what: str, low: int, high: int) -> int:
    if not is_whole(value) or not low <= value <= high:
        raise refuse(f"{what} must be a whole number in {low}..{high}, got {value}")
    return int(value)


def text_input(text: str | None, what: str, limit: int) -> str:
    text = (text or "").strip()
    if not text:
        raise refuse(f"The {what} is empty: type something first.")
    if len(text) > limit:
        raise refuse(f"The {what} is {len(text):,} characters long; the limit is {limit:,}.")
    return text


def open_image(path: str | Path) -> Image.Image:
    """An uploaded file -> an RGB image, refusing non-images and oversized ones before decoding them."""
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise refuse(f"The image is {image.width}×{image.height}; images up to "
                             f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels are accepted.")
            return ImageOps.exif_transpose(image).convert("RGB")
    except gr.Error:
        raise
    except Image.DecompressionBombError:
        raise refuse(f"The image is far too large (a possible decompression bomb); images up to "
                     f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels are accepted.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise refuse("That file could not be read as an image; upload a PNG, JPEG or WebP file.") from None


def input_box(busy: bool = False) -> gr.MultimodalTextbox:
    """The chat input while an answer streams (emptied, locked, a stop button) or when ready for the next message."""
    if busy:
        return gr.MultimodalTextbox(value=None, interactive=False, submit_btn=False, stop_btn=True)
    return gr.MultimodalTextbox(interactive=True, submit_btn=True, stop_btn=False)


# ---------------------------------------------------------------------------------------------- chat state
@dataclass
class Turn:
    question: str
    params: SamplingParams  # with the seed that was used
    tokens: int  # answer tokens generated: replaying with this limit rebuilds the same context


@dataclass
class Conversation:
    """One browser tab's chat, kept in gr.State. The engine session holds the model state; `turns` can rebuild it
    (after a retry, or when the engine dropped an old session)."""
    image: str | None = None  # the uploaded file
    session_id: str | None = None
    turns: list[Turn] = field(default_factory=list)
    pending: str | None = None  # the question waiting for its answer


# ---------------------------------------------------------------------------------------------- a Show-o set
class App:
    """The handlers: thin streaming wrappers over one shared Engine."""

    def __init__(self, engine: Engine, server_paths: bool = False):
        self.engine = engine
        self.server_paths = server_paths  # may the Compare tab load a set from a path on this machine?
        self.info = engine.info()
        self.grid = engine.model.config.image_grid  # token rows per image, for the progress line

    def panel(self, metrics: RequestMetrics | None = None, progress: str = "") -> str:
        return panel_html(self.info, metrics, progress)

    # ------------------------------------------------------------------ image chat (UI)
    def add_message(self, message: dict | None, history: list, conv: Conversation) -> tuple[list, Any, Conversation]:
        """The user's message goes into the chat at once (no GPU); `respond` answers it from the GPU queue."""
        message = message or {}
        files = message.get("files") or []
        if len(files) > 1:
            raise refuse("Attach one image per message: a conversation is about one image.")
        text = (message.get("text") or "").strip()
        if not text and not files:
            raise refuse("Type a question, or attach an image (it will be described).")
        text = text_input(text or DEFAULT_QUESTION, "question", MAX_QUESTION_CHARS)
        if files:
            path = files[0]["path"] if isinstance(files[0], dict) else str(files[0])
            open_image(path)  # refuse a bad file now, before it is shown
            if conv.turns:
                gr.Info("New image: a new conversation starts.")
            self.forget(conv)
            conv, history = Conversation(image=path), [{"role": "user", "content": {"path": path}}]
        conv.pending = text
        return history + [{"role": "user", "content": text}], input_box(busy=True), conv

    def respond(self, history: list, conv: Conversation, max_new_tokens: float, temperature: float, top_k: float,
                top_p: float, seed: float | None) -> Iterator[tuple[list, Conversation, str]]:
        if conv.pending is None:  # nothing to answer (the message was refused)
            yield gr.skip(), gr.skip(), gr.skip()
            return
        params = sampling(temperature, top_k, top_p, seed)
        limit = whole_number(max_new_tokens, "max new tokens", 1, MAX_NEW_TOKENS)
        question, conv.pending = conv.pending, None
        needs_setup = conv.session_id not in self.engine.sessions
        yield history, conv, self.panel(progress="reading the image…" if needs_setup and conv.image else "starting")
        session = self.session(conv)
        history = history + [{"role": "assistant", "content": ""}]
        turn, event = None, None
        with closing(self.engine.chat(session, question, params, limit)) as events:
            for event in events:
                if turn is None:
                    turn = Turn(question, params, 0)
                    conv.turns.append(turn)
                turn.tokens = event.metrics.tokens  # kept current, so a stopped answer replays as far as it went
                history[-1] = {"role": "assistant", "content": event.text}
                yield history, conv, self.panel(event.metrics)
        if event is not None and event.note:
            gr.Info(event.note)

    def session(self, conv: Conversation) -> str:
        """The engine session of `conv`, rebuilt (image, then every earlier turn with its own settings) when the
        engine no longer has it: after a retry, after eviction, or on ZeroGPU where each call is a fresh process."""
        if conv.session_id in self.engine.sessions:
            return conv.session_id
        if conv.image and not Path(conv.image).is_file():
            raise refuse("This conversation's image is no longer on the server; attach it again to go on.")
        conv.session_id = self.engine.new_session(open_image(conv.image) if conv.image else None)
        for turn in conv.turns:
            for _ in self.engine.chat(conv.session_id, turn.question, turn.params, max(turn.tokens, 1)):
                pass
        return conv.session_id

    def retry(self, history: list, conv: Conversation) -> tuple[list, Conversation, Any]:
        """Drop the last answer; `respond` then answers the same question again with the current settings."""
        if not conv.turns:
            raise refuse("There is no answer to retry yet.")
        turn = conv.turns.pop()
        while history and history[-1].get("role") == "assistant":
            history = history[:-1]
        self.forget(conv)  # its state includes the dropped answer; `session` rebuilds it without
        conv.pending = turn.question
        return history, conv, input_box(busy=True)

    def clear(self, conv: Conversation) -> tuple[list, Conversation, str]:
        self.forget(conv)
        return [], Conversation(), self.panel()

    def forget(self, conv: Conversation) -> None:
        if conv.session_id is not None:
            self.engine.end_session(conv.session_id)
            conv.session_id = None

    # ------------------------------------------------------------------ text to image (UI)
    def images(self, prompt: str, num_images: float, seed: float | None, temperature: float, top_k: float,
               top_p: float, guidance_scale: float, previews: bool) -> Iterator[tuple[Any, str, str]]:
        """Stream (gallery, note, panel): grey-bottomed previews while tokens arrive, then the final PNGs."""
        count = whole_number(num_images, "number of images", 1, MAX_IMAGES_PER_PROMPT)
        for event, seed_used in self.image_events(prompt, num_images, seed, temperature, top_k, top_p,
                                                  guidance_scale, previews):
            gallery = gr.skip()
            if event.images:
                columns = 1 if count == 1 else 2 if count in (2, 4) else 3 if count in (3, 5, 6) else 4
                gallery = gr.Gallery(value=list(zip(event.images, image_captions(seed_used, count))),
                                     columns=columns)
            size = event.images[0].width if event.images else None
            note = t2i_note(seed_used, count, size, event.note, event.done)
            progress = f"row {event.rows_done} of {self.grid}"
            yield gallery, note, self.panel(event.metrics, "" if event.done else progress)

    def image_events(self, prompt: str, num_images: float, seed: float | None, temperature: float, top_k: float,
                     top_p: float, guidance_scale: float, previews: bool) -> Iterator[tuple[Any, int]]:
        """Checked inputs -> the engine's ImageEvents, each with the seed used; warns once when truncated."""
        prompt = text_input(prompt, "prompt", MAX_PROMPT_CHARS)
        count = whole_number(num_images, "number of images", 1, MAX_IMAGES_PER_PROMPT)
        params = sampling(temperature, top_k, top_p, seed)
        guidance_scale = check_guidance(guidance_scale)
        if count > 1 and params.greedy:
            gr.Info("Greedy decoding makes the same image every time; raise top-k for different ones.")
        warned = False
        with closing(self.engine.text_to_image(prompt, count, params, float(guidance_scale),
                                               PREVIEW_EVERY if previews else 0)) as events:
            for event in events:
                if event.note and not warned:
                    gr.Warning(event.note)
                    warned = True
                yield event, params.seed

    # ------------------------------------------------------------------ OmniMamba beside Show-o
    def compare_images(self, prompt: str, seed: float | None, showo_image: str | None, temperature: float,
                       top_k: float, top_p: float, guidance_scale: float
                       ) -> tuple[Image.Image, dict, Item, Item | None]:
        """OmniMamba's image for `prompt` under recorded settings; beside Show-o's (when given) as a grid page."""
        prompt = text_input(prompt, "prompt", MAX_PROMPT_CHARS)
        params = sampling(temperature, top_k, top_p, seed)
        showo = None
        if showo_image:
            showo = Item("t2i", prompt, image=str(showo_image), resolution=open_image(showo_image).width,
                         model="Show-o")
        with tempfile.TemporaryDirectory(prefix="omnimamba-compare-") as out_dir:
            ours = generate_item(self.engine, prompt, params.seed, params, check_guidance(guidance_scale),
                                 Path(out_dir), 0)
            if showo is not None:
                picture = render_grid([(showo, ours)], ROOT, ROOT, per_page=1)[0]
            else:
                picture = open_image(ours.image)
        return picture, manifest_record(showo, ours), ours, showo

    def compare_answers(self, image: str | None, question: str, showo_answer: str | None, max_new_tokens: float,
                        temperature: float, top_k: float, top_p: float, seed: float | None
                        ) -> tuple[str, dict, Item, Item | None]:
        """OmniMamba's answer to `question` about `image`, recorded beside Show-o's answer (when given)."""
        question = text_input(question, "question", MAX_QUESTION_CHARS)
        params = sampling(temperature, top_k, top_p, seed)
        limit = whole_number(max_new_tokens, "max new tokens", 1, MAX_NEW_TOKENS)
        if image:
            open_image(image)  # the same checks (and messages) as the chat
        ours = answer_item(self.engine, image or None, question, params, limit)
        showo = None
        if (showo_answer or "").strip():
            showo = Item("mmu", question, image=str(image) if image else None, answer=showo_answer.strip(),
                         model="Show-o")
        return ours.answer, manifest_record(showo, ours), ours, showo

    def compare_images_ui(self, *args: Any) -> Iterator[tuple[Any, Any, str, str]]:
        """(picture, record, both sides' table, panel); Show-o's time is not known for a single upload."""
        yield gr.skip(), gr.skip(), gr.skip(), self.panel(progress="comparing: OmniMamba is drawing…")
        picture, record, ours, showo = self.compare_images(*args)
        sizes = (image_size(showo.image) if showo else None, (ours.resolution, ours.resolution))
        table = pair_table(showo or Item("t2i", ours.prompt, model="Show-o"), ours, sizes)
        yield picture, record, table, self.panel(item_metrics(self.info, ours))

    def compare_answers_ui(self, *args: Any) -> Iterator[tuple[Any, Any, str, str]]:
        yield gr.skip(), gr.skip(), gr.skip(), self.panel(progress="comparing: OmniMamba is answering…")
        answer, record, ours, showo = self.compare_answers(*args)
        table = pair_table(showo or Item("mmu", ours.prompt, model="Show-o"), ours, (None, None))
        yield answer, record, table, self.panel(item_metrics(self.info, ours))

    def api_compare_images(self, prompt: str, seed: float | None, showo_image: str | None, temperature: float,
                           top_k: float, top_p: float, guidance_scale: float) -> Iterator[tuple[Image.Image, dict]]:
        """(grid page or OmniMamba's image, manifest record of both sides)."""
        yield self.compare_images(prompt, seed, showo_image, temperature, top_k, top_p, guidance_scale)[:2]

    def api_compare_answers(self, image: str | None, question: str, showo_answer: str | None, max_new_tokens: float,
                            temperature: float, top_k: float, top_p: float, seed: float | None
                            ) -> Iterator[tuple[str, dict]]:
        """(OmniMamba's answer, manifest record of both sides)."""
        yield self.compare_answers(image, question, showo_answer, max_new_tokens, temperature, top_k, top_p,
                                   seed)[:2]

    # ------------------------------------------------------------------ a Show-o set, browsed pair by pair
    def load_set(self, files: list[str] | None, path: str | None, cset: CompareSet) -> tuple:
        """Load (replacing this tab's earlier set) and show the first pair."""
        loaded = load_showo_set(files, path, self.server_paths)
        cset.close()
        return self.set_outputs(loaded, 0, choices=True)

    def show_pair(self, cset: CompareSet, index: float | None) -> tuple:
        return self.set_outputs(cset, index, files=False)

    def previous_pair(self, cset: CompareSet, index: float | None) -> tuple:
        return self.set_outputs(cset, (index or 0) - 1, files=False)

    def next_pair(self, cset: CompareSet, index: float | None) -> tuple:
        return self.set_outputs(cset, (index or 0) + 1, files=False)

    def set_outputs(self, cset: CompareSet, index: float | None, choices: bool = False, files: bool = True) -> tuple:
        """(state, picker, status, download, *the pair's components); the list and the manifest when asked."""
        view = pair_view(cset, index)
        picker = gr.Dropdown(choices=pair_choices(cset.showo), value=view.index) if choices else view.index
        status = set_status(cset.source, cset.showo, len(cset.ours)) if files else gr.skip()
        download = gr.DownloadButton(value=str(write_set_manifest(cset)), visible=True) if files else gr.skip()
        return cset, picker, status, download, *pair_updates(view)

    def make_pair(self, cset: CompareSet, index: float | None, seed: float | None, temperature: float,
                  top_k: float, top_p: float, guidance_scale: float, max_new_tokens: float) -> Iterator[tuple]:
        """OmniMamba's side of the pair on show, with the seed in the box (its default when empty)."""
        view = pair_view(cset, index)
        params = self.set_params(view.seed if seed is None else seed, temperature, top_k, top_p)
        yield *[gr.skip()] * 11, self.panel(progress=f"comparing: pair {view.index + 1}…")
        cset.ours[view.index] = self.make_side(cset, view.index, params, guidance_scale, max_new_tokens)
        yield *self.set_outputs(cset, view.index), self.panel(item_metrics(self.info, cset.ours[view.index]))

    def make_all(self, cset: CompareSet, temperature: float, top_k: float, top_p: float, guidance_scale: float,
                 max_new_tokens: float) -> Iterator[tuple]:
        """OmniMamba's side of every pair that has none yet, each with its default seed, shown as it comes."""
        pair_view(cset, 0)
        todo = [index for index in range(len(cset.showo)) if index not in cset.ours]
        if not todo:
            gr.Info("OmniMamba's side is made for every pair already; use “Make OmniMamba's side” to redo one.")
            yield *[gr.skip()] * 12,
        for done, index in enumerate(todo):
            yield *[gr.skip()] * 11, self.panel(progress=f"comparing: pair {index + 1} ({done + 1} of {len(todo)})")
            params = self.set_params(cset.default_seed(index), temperature, top_k, top_p)
            cset.ours[index] = self.make_side(cset, index, params, guidance_scale, max_new_tokens)
            yield *self.set_outputs(cset, index), self.panel(item_metrics(self.info, cset.ours[index]))

    def set_params(self, seed: float, temperature: float, top_k: float, top_p: float) -> SamplingParams:
        if not is_whole(seed) or seed < 0:
            raise refuse(f"seed must be a whole number in 0..{MAX_SEED}, got {seed}")
        return sampling(temperature, top_k, top_p, seed)

    def make_side(self, cset: CompareSet, index: int, params: SamplingParams, guidance_scale: float,
                  max_new_tokens: float) -> Item:
        """OmniMamba's item for pair `index`: an image in the set's folder, or an answer about Show-o's input."""
        showo = cset.showo[index]
        if showo.task == "t2i":
            prompt = text_input(showo.prompt, "prompt", MAX_PROMPT_CHARS)
            return generate_item(self.engine, prompt, params.seed, params, check_guidance(guidance_scale),
                                 Path(cset.folder) / "omnimamba", index)
        question = text_input(showo.prompt, "question", MAX_QUESTION_CHARS)
        if showo.image:
            open_image(showo.image)  # the chat's checks (and messages)
        return answer_item(self.engine, showo.image, question, params,
                           whole_number(max_new_tokens, "max new tokens", 1, MAX_NEW_TOKENS))

    def api_compare_load(self, files: list[str] | None, path: str | None, cset: CompareSet
                         ) -> tuple[dict, CompareSet]:
        """(the loaded Show-o items, this client session's set): /compare_pair then makes OmniMamba's side."""
        loaded = load_showo_set(files, path, self.server_paths)
        cset.close()
        return {"pairs": len(loaded.showo), "source": loaded.source,
                "showo": [item_record(item) for item in loaded.showo]}, loaded

    def api_compare_pair(self, cset: CompareSet, pair: float, seed: float | None, temperature: float, top_k: float,
                         top_p: float, guidance_scale: float, max_new_tokens: float
                         ) -> Iterator[tuple[str | None, dict, CompareSet]]:
        """(OmniMamba's image or None, both sides' record, the set) for pair number `pair` (1 = the first) of the
        set /compare_load loaded; a seed of -1 (or empty) is the pair's default (Show-o's seed, else its index)."""
        pair_view(cset, 0)  # a set is loaded
        index = whole_number(pair, "pair", 1, len(cset.showo)) - 1
        default = seed is None or (is_whole(seed) and seed < 0)
        params = self.set_params(cset.default_seed(index) if default else seed, temperature, top_k, top_p)
        ours = cset.ours[index] = self.make_side(cset, index, params, guidance_scale, max_new_tokens)
        yield ours.image if ours.task == "t2i" else None, {"pair": index + 1, **manifest_record(
            cset.showo[index], ours)}, cset

    # ------------------------------------------------------------------ API (gradio_client)
    def api_chat(self, image: str | None, question: str, session_id: str | None, max_new_tokens: float,
                 temperature: float, top_k: float, top_p: float, seed: float | None
                 ) -> Iterator[tuple[str, dict, str]]:
        """Stream (answer so far, metrics, session_id). An image starts a new conversation; no image and a
        session_id from an earlier call asks a follow-up (the model's state is reused); neither: text only."""
        question = text_input(question, "question", MAX_QUESTION_CHARS)
        params = sampling(temperature, top_k, top_p, seed)
        limit = whole_number(max_new_tokens, "max new tokens", 1, MAX_NEW_TOKENS)
        if image:
            session_id = self.engine.new_session(open_image(image))
        elif session_id:
            if session_id not in self.engine.sessions:
                raise refuse("Unknown or expired session_id: start a new conversation (send the image again).")
        else:
            session_id = self.engine.new_session(None)
        with closing(self.engine.chat(session_id, question, params, limit)) as events:
            for event in events:
                yield event.text, {**event.metrics.as_dict(), "seed": params.seed, "note": event.note}, session_id

    def api_text_to_image(self, prompt: str, num_images: float, seed: float | None, temperature: float,
                          top_k: float, top_p: float, guidance_scale: float, previews: bool
                          ) -> Iterator[tuple[Any, dict]]:
        """Stream (images, metrics): previews (when asked) while generating, then the final images; an empty list
        while there is nothing to show yet (the metrics still update every 16 tokens)."""
        for event, seed_used in self.image_events(prompt, num_images, seed, temperature, top_k, top_p,
                                                  guidance_scale, previews):
            metrics = {**event.metrics.as_dict(), "seed": seed_used, "note": event.note, "rows_done": event.rows_done}
            yield event.images, metrics


def item_record(item: Item | None) -> dict | None:
    """A manifest item (docs/compare.md) with its image path shortened to the file name."""
    if item is None:
        return None
    return {**item.to_dict(), "image": Path(item.image).name if item.image else None}


def manifest_record(showo: Item | None, ours: Item) -> dict:
    """Both sides as manifest items; image paths shortened to file names."""
    return {"showo": item_record(showo), "omnimamba": item_record(ours)}


def check_guidance(guidance_scale: float | None) -> float:
    if guidance_scale is None or not 0.0 <= guidance_scale <= 20.0:
        raise refuse(f"guidance scale must be in [0, 20] (1 = off, the official setting), got {guidance_scale}")
    return float(guidance_scale)


def pair_updates(view: PairView) -> tuple:
    """The pair's components: both pictures, the answers (image chat), the table of both sides, the seed box.
    Text to image: Show-o's image | OmniMamba's. Image chat: the image both were asked about, then both answers."""
    showo, ours, t2i = view.showo, view.ours, view.showo.task == "t2i"
    if t2i:
        left = side_label("Show-o", view.sizes[0], showo.seed)
        right = side_label("OmniMamba", view.sizes[1], ours.seed) if ours else "OmniMamba · not made yet"
    else:
        left = side_label("Asked to both", view.sizes[0]) if showo.image else "Text only: no image"
        right = "OmniMamba"
    return (gr.Image(value=open_image(showo.image) if showo.image else None, label=left),
            gr.Image(value=ours.image if t2i and ours else None, label=right, visible=t2i),
            gr.Row(visible=not t2i),
            gr.skip() if t2i else showo.answer or "",
            gr.skip() if t2i else ours.answer if ours else "(not made yet)",
            view.table, view.seed)


# ---------------------------------------------------------------------------------------------- layout
def compare_inputs() -> tuple[list[str], list[list[str]]]:
    """The compare command's prompt and question files (assets/), for the Compare tab's pickers."""
    try:
        prompts = read_prompts(ASSETS / "prompts.txt")
    except CompareError:
        prompts = []
    try:
        questions = [[str(image), question] for image, question in read_questions(ASSETS / "questions.txt")
                     if image is not None]
    except CompareError:
        questions = []
    return prompts, questions


def load_examples() -> dict:
    path = EXAMPLES / "examples.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"chat": [], "text_to_image": []}


def sampling_controls(seed_label: str = "Seed (-1 = random)", seed: int = -1, with_seed: bool = True
                      ) -> list[gr.components.Component]:
    """Temperature, top-k, top-p and (unless left out) seed; the defaults are the official greedy decoding."""
    return [
        gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Temperature", info="used only when top-k ≠ 1"),
        gr.Slider(0, 1000, value=1, step=1, label="Top-k", info="1 = greedy (official), 0 = off"),
        gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Top-p", info="0 = off"),
        *([gr.Number(value=seed, precision=0, minimum=-1, maximum=MAX_SEED, label=seed_label)] if with_seed else []),
    ]


def gpu_event(ui_fn: Callable) -> dict:
    """Keyword arguments shared by every GPU-bound listener: one at a time, errors as messages, ZeroGPU-aware."""
    return dict(fn=on_gpu(user_errors(ui_fn)), concurrency_limit=1, concurrency_id=GPU_QUEUE)


def chat_tab(ui: App, panel: gr.HTML, examples: list[dict]) -> None:
    conv = gr.State(Conversation(), delete_callback=ui.forget)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(height=520, show_label=False, elem_id="om-chat", layout="bubble",
                                 buttons=["copy"], feedback_options=None,
                                 placeholder="**Ask about an image.** Attach one with the paperclip (or drop it "
                                             "here), then ask anything; follow-ups remember the picture.")
            box = gr.MultimodalTextbox(file_types=["image"], file_count="single", show_label=False,
                                       placeholder="Ask about the image… (Enter to send)", stop_btn=False,
                                       elem_id="om-chat-input")
            gr.Examples([{"text": e["question"], "files": [str(EXAMPLES / e["image"])]} for e in examples],
                        inputs=box, label="Try an example", examples_per_page=6, api_visibility="private")
        with gr.Column(scale=1, min_width=260):
            with gr.Accordion("Generation settings", open=True):
                max_new = gr.Slider(1, MAX_NEW_TOKENS, value=DEFAULT_NEW_TOKENS, step=1, label="Max new tokens")
                settings = [max_new, *sampling_controls()]
            gr.Markdown("Greedy decoding (top-k = 1) is the official setting. A new image starts a new "
                        "conversation; follow-ups reuse the model's state instead of re-reading the image.",
                        elem_classes="om-hint")
    ready = dict(fn=input_box, outputs=box, api_visibility="private", queue=False)
    answer = dict(inputs=[chatbot, conv, *settings], outputs=[chatbot, conv, panel], api_visibility="private",
                  **gpu_event(ui.respond))
    answering = []
    sent = box.submit(ui.add_message, [box, chatbot, conv], [chatbot, box, conv], api_visibility="private",
                      concurrency_limit=None)
    retried = chatbot.retry(ui.retry, [chatbot, conv], [chatbot, conv, box],
                            api_visibility="private", concurrency_limit=None)
    for start in (sent, retried):
        answering.append(start.success(**answer))
        answering[-1].then(**ready)
        start.failure(**ready)
    box.stop(None, cancels=answering, api_visibility="private")
    chatbot.clear(ui.clear, [conv], [chatbot, conv, panel], cancels=answering, api_visibility="private")


def t2i_tab(ui: App, panel: gr.HTML, prompts: list[str]) -> None:
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            prompt = gr.Textbox(label="Prompt", lines=3, max_lines=8, autofocus=False,
                                placeholder="A watercolor painting of a fox in an autumn forest.")
            with gr.Row():
                go = gr.Button("Generate", variant="primary", scale=3)
                stop = gr.Button("Stop", variant="secondary", scale=1)
            count = gr.Slider(1, MAX_IMAGES_PER_PROMPT, value=1, step=1, label="Number of images",
                              info="with greedy decoding (top-k = 1, official) every image is the same; "
                                   "set top-k to 0 or above 1 for variety")
            with gr.Accordion("Sampling settings", open=False):
                temperature, top_k, top_p, seed = sampling_controls()
                guidance = gr.Slider(0.0, 10.0, value=1.0, step=0.25, label="Guidance scale",
                                     info="1 = off (official); above 1 adds classifier-free guidance")
                previews = gr.Checkbox(value=True, label="Show progressive previews")
            gr.Examples([[p] for p in prompts], inputs=prompt, label="Try a prompt", api_visibility="private")
        with gr.Column(scale=3):
            gallery = gr.Gallery(label="Images", columns=2, height=560, format="png", object_fit="contain",
                                 buttons=["download", "download_all", "fullscreen"], interactive=False,
                                 elem_id="om-gallery")
            note = gr.Markdown(elem_classes="om-note")
    inputs = [prompt, count, seed, temperature, top_k, top_p, guidance, previews]
    generating = gr.on([go.click, prompt.submit], inputs=inputs, outputs=[gallery, note, panel],
                       api_visibility="private", **gpu_event(ui.images))
    stop.click(None, cancels=[generating], api_visibility="private")


COMPARE_INTRO = """Put OmniMamba beside [Show-o](https://github.com/showlab/Show-o). Show-o runs in its own
environment: bring its outputs (a folder's images with the prompts file they were made from, or a manifest), browse
the pairs, and OmniMamba makes its side of each here, timed, under recorded settings; or compare one prompt or
question. For grid pages and an HTML report of a whole set, use `python -m omnimamba compare` (docs/compare.md)."""
SET_FILES_HINT = ("Drop Show-o's images together with the prompts .txt they were made from (one prompt per line: "
                  "image i is line i, in the natural order of the file names), or a manifest .jsonl with the images "
                  "it names (it may hold image chats too, and Show-o's seeds and times).")
T2I, MMU = "Text to image", "Image chat"


def compare_tab(ui: App, panel: gr.HTML) -> None:
    prompts, questions = compare_inputs()
    gr.Markdown(COMPARE_INTRO, elem_classes="om-hint")
    with gr.Tabs():
        with gr.Tab("Show-o set", id="compare-set"):
            compare_set_view(ui, panel)
        with gr.Tab("One prompt or question", id="compare-one"):
            task = gr.Radio([T2I, MMU], value=T2I, show_label=False, container=False)
            with gr.Column(visible=True) as t2i_side:
                compare_images_side(ui, panel, prompts)
            with gr.Column(visible=False) as mmu_side:
                compare_answers_side(ui, panel, questions)
    task.change(lambda t: (gr.Column(visible=t == T2I), gr.Column(visible=t == MMU)), task, [t2i_side, mmu_side],
                queue=False, api_visibility="private")


def compare_set_view(ui: App, panel: gr.HTML) -> None:
    """Load a Show-o set, browse its pairs, make OmniMamba's side of one or all (cached in the tab's state)."""
    cset = gr.State(CompareSet(), delete_callback=CompareSet.close)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            files = gr.File(file_count="multiple", file_types=[*IMAGE_SUFFIXES, ".txt", ".jsonl"], height=210,
                            label="Show-o's outputs", elem_id="om-set-files")
            gr.Markdown(SET_FILES_HINT, elem_classes="om-hint")
            path = gr.Textbox(label="…or a folder or manifest on this machine", visible=ui.server_paths,
                              placeholder="~/showo-out/256  or  ~/showo-out/256/manifest.jsonl")
            load = gr.Button("Load the set", elem_id="om-set-load")
            status = gr.Markdown(set_status("", [], 0), elem_id="om-set-status", latex_delimiters=[])
            with gr.Accordion("OmniMamba's settings", open=False):
                settings = [*sampling_controls(with_seed=False),
                            gr.Slider(0.0, 10.0, value=1.0, step=0.25, label="Guidance scale (1 = off)"),
                            gr.Slider(1, MAX_NEW_TOKENS, value=COMPARE_NEW_TOKENS, step=1,
                                      label="Max new tokens (image chat)")]
            download = gr.DownloadButton("Download manifest (both sides, JSONL)", visible=False, size="md")
        with gr.Column(scale=5):
            with gr.Row(equal_height=True):
                pick = gr.Dropdown([], value=None, label="Pair", scale=3, elem_id="om-set-pick")
                seed = gr.Number(value=None, precision=0, minimum=0, maximum=MAX_SEED, scale=1, min_width=220,
                                 label="OmniMamba's seed", info="default: Show-o's, else the pair's index")
            with gr.Row():
                back = gr.Button("◀ Previous", min_width=150)
                forward = gr.Button("Next ▶", min_width=100)
                make = gr.Button("Make OmniMamba's side", variant="primary", scale=3, elem_id="om-set-make")
                make_all = gr.Button("Make all", min_width=90)
                stop = gr.Button("Stop", variant="stop", min_width=80)
            with gr.Row(equal_height=True):
                showo_pic, ours_pic = (gr.Image(label=name, format="png", interactive=False, height=330,
                                                buttons=["download", "fullscreen"], elem_id=f"om-set-{key}")
                                       for name, key in (("Show-o", "showo"), ("OmniMamba", "ours")))
            with gr.Row(visible=False) as answers:
                showo_answer, ours_answer = (gr.Textbox(label=f"{name}'s answer", lines=6, interactive=False)
                                             for name in ("Show-o", "OmniMamba"))
            table = gr.Markdown(elem_id="om-set-table", latex_delimiters=[])
    outputs = [cset, pick, status, download, showo_pic, ours_pic, answers, showo_answer, ours_answer, table, seed]
    browse = dict(outputs=outputs, api_visibility="private", concurrency_limit=None)
    load.click(user_errors(ui.load_set), [files, path, cset], **browse)
    pick.input(user_errors(ui.show_pair), [cset, pick], **browse)
    back.click(user_errors(ui.previous_pair), [cset, pick], **browse)
    forward.click(user_errors(ui.next_pair), [cset, pick], **browse)
    making = [make.click(inputs=[cset, pick, seed, *settings], outputs=[*outputs, panel], api_visibility="private",
                         **gpu_event(ui.make_pair)),
              make_all.click(inputs=[cset, *settings], outputs=[*outputs, panel], api_visibility="private",
                             **gpu_event(ui.make_all))]
    stop.click(None, cancels=making, api_visibility="private")


def compare_images_side(ui: App, panel: gr.HTML, prompts: list[str]) -> None:
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            prompt = gr.Dropdown(prompts, value=prompts[0] if prompts else None, allow_custom_value=True,
                                 label="Prompt (the one Show-o was given): pick one or type a new one")
            showo_image = gr.Image(type="filepath", label="Show-o's image (optional)", height=240,
                                   sources=["upload", "clipboard"], elem_id="om-showo-image")
            with gr.Accordion("OmniMamba's settings", open=False):
                temperature, top_k, top_p, seed = sampling_controls("Seed", seed=0)
                guidance = gr.Slider(0.0, 10.0, value=1.0, step=0.25, label="Guidance scale (1 = off)")
            go = gr.Button("Make OmniMamba's image", variant="primary")
        with gr.Column(scale=3):
            picture = gr.Image(label="Show-o (left) · OmniMamba (right)", format="png", interactive=False,
                               height=420, buttons=["download", "fullscreen"], elem_id="om-compare-picture")
            table = gr.Markdown(latex_delimiters=[], elem_id="om-compare-table")
            with gr.Accordion("Manifest record", open=False):
                record = gr.JSON(show_label=False)
    go.click(inputs=[prompt, seed, showo_image, temperature, top_k, top_p, guidance],
             outputs=[picture, record, table, panel], api_visibility="private", **gpu_event(ui.compare_images_ui))


def compare_answers_side(ui: App, panel: gr.HTML, questions: list[list[str]]) -> None:
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            image = gr.Image(type="filepath", label="Image", height=240, sources=["upload", "clipboard"])
            question = gr.Textbox(label="Question (the one Show-o answered)", lines=2)
            showo_answer = gr.Textbox(label="Show-o's answer (optional)", lines=3)
            with gr.Accordion("OmniMamba's settings", open=False):
                max_new = gr.Slider(1, MAX_NEW_TOKENS, value=COMPARE_NEW_TOKENS, step=1, label="Max new tokens")
                settings = [max_new, *sampling_controls("Seed", seed=0)]
            ask = gr.Button("Get OmniMamba's answer", variant="primary")
            if questions:
                gr.Examples(questions, inputs=[image, question], label="Questions from assets/questions.txt",
                            api_visibility="private")
        with gr.Column(scale=3):
            answer = gr.Textbox(label="OmniMamba's answer", lines=8, interactive=False, buttons=["copy"])
            table = gr.Markdown(latex_delimiters=[])
            with gr.Accordion("Manifest record", open=False):
                record = gr.JSON(show_label=False)
    ask.click(inputs=[image, question, showo_answer, *settings], outputs=[answer, record, table, panel],
              api_visibility="private", **gpu_event(ui.compare_answers_ui))


def api_endpoints(ui: App) -> None:
    """Endpoints for gradio_client with plain inputs (file paths, text, numbers), hidden from the page. The
    settings' defaults are the official greedy decoding; a seed of -1 draws one (it comes back in the metrics).
    A Show-o set: /compare_load keeps it in the client's session, then /compare_pair compares one pair a call."""
    def endpoint(name: str, fn: Callable, inputs: list, outputs: list, gpu: bool = True) -> None:
        listener = gpu_event(fn) if gpu else dict(fn=user_errors(fn), concurrency_limit=None)
        gr.Button(name).click(inputs=inputs, outputs=outputs, api_name=name, **listener)

    with gr.Column(visible=False):
        image, showo_image = (gr.File(file_types=["image"], type="filepath", label=n) for n in ("image", "showo_image"))
        question, session, prompt, showo_answer = (gr.Textbox(label=n) for n in
                                                   ("question", "session_id", "prompt", "showo_answer"))
        max_new, count = (gr.Number(value=v, precision=0, label=n) for v, n in
                          [(DEFAULT_NEW_TOKENS, "max_new_tokens"), (1, "num_images")])
        temperature, top_k, top_p, seed, guidance = (gr.Number(value=v, label=n) for v, n in [
            (1.0, "temperature"), (1, "top_k"), (0.0, "top_p"), (-1, "seed"), (1.0, "guidance_scale")])
        previews = gr.Checkbox(value=False, label="previews")
        answer, metrics, record = gr.Textbox(label="answer"), gr.JSON(label="metrics"), gr.JSON(label="record")
        images, picture = gr.Gallery(format="png", label="images"), gr.Image(format="png", label="picture")
        sampler = [temperature, top_k, top_p]
        endpoint("chat", ui.api_chat, [image, question, session, max_new, *sampler, seed], [answer, metrics, session])
        endpoint("text_to_image", ui.api_text_to_image, [prompt, count, seed, *sampler, guidance, previews],
                 [images, metrics])
        endpoint("compare_text_to_image", ui.api_compare_images, [prompt, seed, showo_image, *sampler, guidance],
                 [picture, record])
        endpoint("compare_chat", ui.api_compare_answers, [image, question, showo_answer, max_new, *sampler, seed],
                 [answer, record])
        cset = gr.State(CompareSet(), delete_callback=CompareSet.close)
        showo_files, showo_path = gr.File(file_count="multiple", label="showo_files"), gr.Textbox(label="showo_path")
        pair, loaded = gr.Number(value=1, precision=0, label="pair"), gr.JSON(label="loaded")
        endpoint("compare_load", ui.api_compare_load, [showo_files, showo_path, cset], [loaded, cset], gpu=False)
        endpoint("compare_pair", ui.api_compare_pair, [cset, pair, seed, *sampler, guidance, max_new],
                 [picture, record, cset])


def build_demo(engine: Engine, server_paths: bool = False) -> gr.Blocks:
    """The whole app around one shared engine. Styling is passed at launch (see `serve`). `server_paths` lets the
    Compare tab load a Show-o set from a path on this machine: for local use only, never on a public server."""
    ui, examples = App(engine, server_paths), load_examples()
    with gr.Blocks(title="OmniMamba", delete_cache=(3600, 3600)) as demo:
        gr.HTML(header_html(ui.info), elem_id="om-header")
        panel = gr.HTML(ui.panel(), elem_id="om-panel", js_on_load=None)
        with gr.Tabs():
            with gr.Tab("Image chat", id="chat"):
                chat_tab(ui, panel, examples["chat"])
            with gr.Tab("Text to image", id="t2i"):
                t2i_tab(ui, panel, examples["text_to_image"])
            with gr.Tab("Compare", id="compare"):
                compare_tab(ui, panel)
        api_endpoints(ui)
    return demo


def look() -> dict:
    """Theme and CSS: Gradio 6 takes them at launch()."""
    theme = gr.themes.Soft(primary_hue="indigo", secondary_hue="violet", neutral_hue="slate",
                           font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
                           font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"])
    return {"theme": theme, "css_paths": [STYLE] if STYLE.is_file() else None}


def serve(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
          block: bool = True, queue_size: int = QUEUE_SIZE) -> str:
    """Queue (bounded) and launch; returns the local URL (when `block` is False)."""
    _, url, _ = demo.queue(max_size=queue_size).launch(
        server_name=host, server_port=port, share=share, prevent_thread_lock=not block, show_error=False,
        quiet=not block, **look())
    return url


# ---------------------------------------------------------------------------------------------- command line
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from omnimamba.config import DTYPES

    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=env("OMNIMAMBA_MODEL", "hustvl/OmniMamba"),
                   help="Hub id, local OmniMamba-1.3b.pth or folder, or 'tiny-random' (env OMNIMAMBA_MODEL)")
    p.add_argument("--revision", default=env("OMNIMAMBA_REVISION"), help="Hub revision (env OMNIMAMBA_REVISION)")
    p.add_argument("--device", default=env("OMNIMAMBA_DEVICE"), help="cuda, cuda:1, cpu (env OMNIMAMBA_DEVICE)")
    p.add_argument("--dtype", default=env("OMNIMAMBA_DTYPE"), choices=sorted(DTYPES),
                   help="default: bf16 on GPU, fp32 on CPU (env OMNIMAMBA_DTYPE)")
    p.add_argument("--tokenizer", default=env("OMNIMAMBA_TOKENIZER"),
                   help="a GPT-NeoX-20B tokenizer.json instead of the shipped copy (env OMNIMAMBA_TOKENIZER)")
    p.add_argument("--offline", action="store_true", default=env("OMNIMAMBA_OFFLINE", "") not in ("", "0"),
                   help="use only the local Hugging Face cache (env OMNIMAMBA_OFFLINE=1)")
    p.add_argument("--host", default=env("OMNIMAMBA_HOST") or env("GRADIO_SERVER_NAME") or "127.0.0.1",
                   help="address to serve on; 0.0.0.0 for all interfaces (env OMNIMAMBA_HOST)")
    p.add_argument("--port", type=int, default=int(env("OMNIMAMBA_PORT") or env("GRADIO_SERVER_PORT") or 7860),
                   help="(env OMNIMAMBA_PORT)")
    p.add_argument("--share", action="store_true", default=env("OMNIMAMBA_SHARE", "") not in ("", "0"),
                   help="also open a public *.gradio.live link (off by default; env OMNIMAMBA_SHARE=1)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   default=env("OMNIMAMBA_WARMUP", "1") not in ("", "0"),
                   help="serve at once instead of running one short request of each kind first on a GPU "
                        "(env OMNIMAMBA_WARMUP=0)")
    p.add_argument("--queue-size", type=int, default=int(env("OMNIMAMBA_QUEUE_SIZE") or QUEUE_SIZE),
                   help="requests that may wait for the GPU before new ones are refused")
    args = p.parse_args(argv)
    if args.dtype is not None and args.dtype not in DTYPES:  # argparse does not check defaults from the environment
        p.error(f"OMNIMAMBA_DTYPE must be one of {sorted(DTYPES)}, got {args.dtype!r}")
    return args


def warm_up(engine: Engine) -> None:
    """One short request of each kind before serving: the first call compiles and autotunes the Triton kernels
    (tens of seconds on a fresh GPU), which no visitor should have to wait for."""
    start = time.perf_counter()
    session = engine.new_session(Image.new("RGB", (64, 64), "gray"))
    for _ in engine.chat(session, "Hello", SamplingParams(), 4):
        pass
    engine.end_session(session)
    for _ in engine.text_to_image("a warm-up image", 1, SamplingParams()):
        pass
    log.info("warm-up done in %.1f s", time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    from omnimamba.config import DTYPES
    from omnimamba.hub import AssetUnavailable

    try:
        engine = Engine.load(args.model, args.revision, args.device, DTYPES.get(args.dtype), args.tokenizer,
                             offline=True if args.offline else None)
    except (AssetUnavailable, EngineError, FileNotFoundError) as exc:
        sys.exit(f"error: {exc}")
    if args.warmup and engine.device.type == "cuda" and not ZERO_GPU:  # on ZeroGPU there is no GPU until a call
        warm_up(engine)
    local = args.host in LOCAL_HOSTS and not args.share and "SPACE_ID" not in os.environ
    serve(build_demo(engine, server_paths=local), args.host, args.port, args.share, queue_size=args.queue_size)


if __name__ == "__main__":
    main()
