"""The text-to-image tab's handlers."""
from __future__ import annotations

from contextlib import closing
from typing import Any, Iterator

import gradio as gr

from omnimamba.engine import MAX_IMAGES_PER_PROMPT

from .format import image_captions, t2i_note
from .handlers import Handlers
from .inputs import MAX_PROMPT_CHARS, check_guidance, sampling, text_input, whole_number

PREVIEW_EVERY = 32  # previews every this many tokens (two rows of the official 16x16 grid)


class ImageHandlers(Handlers):
    def images(self, prompt: str, num_images: float, seed: float | None, temperature: float, top_k: float,
               top_p: float, guidance_scale: float, previews: bool) -> Iterator[tuple[Any, str, str]]:
        """Stream (gallery, note, panel): grey-bottomed previews while tokens arrive, then the final PNGs."""
        count = whole_number(num_images, "number of images", 1, MAX_IMAGES_PER_PROMPT)
        grid = self.engine.model.config.image_grid  # token rows per image, for the progress line
        for event, seed_used in self.image_events(prompt, num_images, seed, temperature, top_k, top_p,
                                                  guidance_scale, previews):
            gallery = gr.skip()
            if event.images:
                columns = 1 if count == 1 else 2 if count in (2, 4) else 3 if count in (3, 5, 6) else 4
                gallery = gr.Gallery(value=list(zip(event.images, image_captions(seed_used, count))),
                                     columns=columns)
            size = event.images[0].width if event.images else None
            note = t2i_note(seed_used, count, size, event.note, event.done)
            progress = f"row {event.rows_done} of {grid}"
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
        with closing(self.engine.text_to_image(prompt, count, params, guidance_scale,
                                               PREVIEW_EVERY if previews else 0)) as events:
            for event in events:
                if event.note and not warned:
                    gr.Warning(event.note)
                    warned = True
                yield event, params.seed

    def api_text_to_image(self, prompt: str, num_images: float, seed: float | None, temperature: float,
                          top_k: float, top_p: float, guidance_scale: float, previews: bool
                          ) -> Iterator[tuple[Any, dict]]:
        """Stream (images, metrics): previews (when asked) while generating, then the final images; an empty list
        while there is nothing to show yet (the metrics still update every 16 tokens)."""
        for event, seed_used in self.image_events(prompt, num_images, seed, temperature, top_k, top_p,
                                                  guidance_scale, previews):
            metrics = {**event.metrics.as_dict(), "seed": seed_used, "note": event.note, "rows_done": event.rows_done}
            yield event.images, metrics
