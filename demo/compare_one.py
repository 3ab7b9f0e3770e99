"""The Compare tab's single prompt or question: OmniMamba's side made here, beside Show-o's when given."""
from __future__ import annotations

import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any, Iterator

import gradio as gr
from PIL import Image

from omnimamba.compare import Item, answer_item, generate_item, render_grid
from omnimamba.engine import Engine
from omnimamba.metrics import RequestMetrics

from .format import item_metrics, md_text, pair_table
from .handlers import Handlers
from .inputs import (MAX_PROMPT_CHARS, MAX_QUESTION_CHARS, check_guidance, new_tokens, open_image, sampling,
                     text_input)
from .showo_set import image_size

ROOT = Path(__file__).resolve().parents[1]  # relative image paths in a grid resolve from the repository


def item_record(item: Item | None) -> dict | None:
    """A manifest item (docs/compare.md) with its image path shortened to the file name."""
    if item is None:
        return None
    return {**item.to_dict(), "image": Path(item.image).name if item.image else None}


def manifest_record(showo: Item | None, ours: Item) -> dict:
    """Both sides as manifest items; image paths shortened to file names."""
    return {"showo": item_record(showo), "omnimamba": item_record(ours)}


class Tap:
    """The engine as the compare functions see it, keeping the last event of each request: its metrics fill the
    panel, and its note (a truncated prompt, a capped answer) is shown beside the result."""

    def __init__(self, engine: Engine):
        self.engine, self.last = engine, None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def text_to_image(self, *args: Any, **kwargs: Any) -> Iterator:
        return self.kept(self.engine.text_to_image(*args, **kwargs))

    def chat(self, *args: Any, **kwargs: Any) -> Iterator:
        return self.kept(self.engine.chat(*args, **kwargs))

    def kept(self, events: Iterator) -> Iterator:
        with closing(events):
            for event in events:
                self.last = event
                yield event

    @property
    def metrics(self) -> RequestMetrics | None:
        return self.last.metrics if self.last is not None else None

    @property
    def note(self) -> str:
        return f"\n\n⚠️ {md_text(self.last.note)}" if self.last is not None and self.last.note else ""


class CompareOneHandlers(Handlers):
    def compare_images(self, prompt: str, seed: float | None, showo_image: str | None, temperature: float,
                       top_k: float, top_p: float, guidance_scale: float, tap: Tap | None = None
                       ) -> tuple[Image.Image, dict, Item, Item | None]:
        """OmniMamba's image for `prompt` under recorded settings; beside Show-o's (when given) as a grid page."""
        prompt = text_input(prompt, "prompt", MAX_PROMPT_CHARS)
        params = sampling(temperature, top_k, top_p, seed)
        showo = None
        if showo_image:
            showo = Item("t2i", prompt, image=str(showo_image), resolution=open_image(showo_image).width,
                         model="Show-o")
        with tempfile.TemporaryDirectory(prefix="omnimamba-compare-") as out_dir:
            ours = generate_item(tap or self.engine, prompt, params.seed, params, check_guidance(guidance_scale),
                                 Path(out_dir), 0)
            if showo is not None:
                picture = render_grid([(showo, ours)], ROOT, ROOT, per_page=1)[0]
            else:
                picture = open_image(ours.image)
        return picture, manifest_record(showo, ours), ours, showo

    def compare_answers(self, image: str | None, question: str, showo_answer: str | None, max_new_tokens: float,
                        temperature: float, top_k: float, top_p: float, seed: float | None, tap: Tap | None = None
                        ) -> tuple[str, dict, Item, Item | None]:
        """OmniMamba's answer to `question` about `image`, recorded beside Show-o's answer (when given)."""
        question = text_input(question, "question", MAX_QUESTION_CHARS)
        params = sampling(temperature, top_k, top_p, seed)
        limit = new_tokens(max_new_tokens)
        if image:
            open_image(image)  # the same checks (and messages) as the chat
        ours = answer_item(tap or self.engine, image or None, question, params, limit)
        showo = None
        if (showo_answer or "").strip():
            showo = Item("mmu", question, image=str(image) if image else None, answer=showo_answer.strip(),
                         model="Show-o")
        return ours.answer, manifest_record(showo, ours), ours, showo

    def compare_images_ui(self, *args: Any) -> Iterator[tuple[Any, Any, str, str]]:
        """(picture, record, both sides' table, panel); Show-o's time is not known for a single upload."""
        yield gr.skip(), gr.skip(), gr.skip(), self.panel(progress="comparing: OmniMamba is drawing…")
        tap = Tap(self.engine)
        picture, record, ours, showo = self.compare_images(*args, tap=tap)
        sizes = (image_size(showo.image) if showo else None, (ours.resolution, ours.resolution))
        table = pair_table(showo or Item("t2i", ours.prompt, model="Show-o"), ours, sizes) + tap.note
        yield picture, record, table, self.panel(item_metrics(self.info, ours, tap.metrics))

    def compare_answers_ui(self, *args: Any) -> Iterator[tuple[Any, Any, str, str]]:
        yield gr.skip(), gr.skip(), gr.skip(), self.panel(progress="comparing: OmniMamba is answering…")
        tap = Tap(self.engine)
        answer, record, ours, showo = self.compare_answers(*args, tap=tap)
        table = pair_table(showo or Item("mmu", ours.prompt, model="Show-o"), ours, (None, None)) + tap.note
        yield answer, record, table, self.panel(item_metrics(self.info, ours, tap.metrics))

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
