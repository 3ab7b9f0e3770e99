"""The text-to-image tab's handlers. One image is greedy (the official setting); several images are sampled so
that they differ, each with its own seed when the engine takes one per image."""
from __future__ import annotations

import dataclasses
import re
import shutil
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any, Iterator

import gradio as gr

from omnimamba.engine import MAX_IMAGES_PER_PROMPT
from omnimamba.metrics import RequestMetrics
from omnimamba.sampling import SamplingParams

from .format import image_captions, image_seeds, stopped_note, t2i_note
from .handlers import Handlers
from .inputs import MAX_PROMPT_CHARS, check_guidance, sampling, text_input, whole_number

PREVIEW_EVERY = 32  # previews every this many tokens (two rows of the official 16x16 grid)


def for_variety(params: SamplingParams, count: int) -> tuple[SamplingParams, bool]:
    """Several images under greedy decoding would be copies: sample them instead (temperature 1, top-k and top-p
    off). Returns the settings used and whether they were changed."""
    if count > 1 and params.greedy:
        return dataclasses.replace(params, temperature=1.0, top_k=0, top_p=0.0), True
    return params, False


def file_stem(prompt: str, seed: int, index: int) -> str:
    """A download's name: the prompt's first words, the seed and the image's number ('red-circle_seed7_2')."""
    words = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40].rstrip("-") or "image"
    return f"{words}_seed{seed}_{index + 1}"


class ImageHandlers(Handlers):
    def images(self, prompt: str, num_images: float, seed: float | None, temperature: float, top_k: float,
               top_p: float, guidance_scale: float, previews: bool
               ) -> Iterator[tuple[Any, str, str, RequestMetrics | None]]:
        """Stream (gallery, note, panel, last metrics): grey-bottomed previews while tokens arrive, then the final
        PNGs, saved under names that say the prompt and the seed."""
        count = whole_number(num_images, "number of images", 1, MAX_IMAGES_PER_PROMPT)
        grid = self.engine.model.config.image_grid  # token rows per image, for the progress line
        folder = Path(tempfile.mkdtemp(prefix="omnimamba-images-"))
        try:
            for event, seeds, varied in self.image_events(prompt, num_images, seed, temperature, top_k, top_p,
                                                          guidance_scale, previews):
                gallery = gr.skip()
                if event.images:
                    columns = 1 if count == 1 else 2 if count in (2, 4) else 3 if count in (3, 5, 6) else 4
                    pictures = self.saved(event.images, prompt, seeds, folder) if event.done else event.images
                    gallery = gr.Gallery(value=list(zip(pictures, image_captions(seeds))), columns=columns)
                size = event.images[0].width if event.images else None
                note = t2i_note(seeds, size, event.note, event.done, varied)
                progress = f"row {event.rows_done} of {grid}"
                yield gallery, note, self.panel(event.metrics, "" if event.done else progress), event.metrics
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # Gradio has copied the finished files by now

    @staticmethod
    def saved(images: list, prompt: str, seeds: list[int], folder: Path) -> list[str]:
        paths = []
        for index, (image, seed) in enumerate(zip(images, seeds)):
            path = folder / f"{file_stem(prompt, seed, index)}.png"
            image.save(path)
            paths.append(str(path))
        return paths

    def image_events(self, prompt: str, num_images: float, seed: float | None, temperature: float, top_k: float,
                     top_p: float, guidance_scale: float, previews: bool) -> Iterator[tuple[Any, list[int], bool]]:
        """Checked inputs -> the engine's ImageEvents, each with every image's seed and whether the settings were
        changed for variety."""
        prompt = text_input(prompt, "prompt", MAX_PROMPT_CHARS)
        count = whole_number(num_images, "number of images", 1, MAX_IMAGES_PER_PROMPT)
        params, varied = for_variety(sampling(temperature, top_k, top_p, seed), count)
        guidance_scale = check_guidance(guidance_scale)
        seeds = image_seeds(params.seed, count, False)
        with closing(self.engine.text_to_image(prompt, count, params, guidance_scale,
                                               PREVIEW_EVERY if previews else 0)) as events:
            for event in events:  # a sampled request's images have one seed each (the engine reports them)
                yield event, list(event.seeds) if event.seeds else seeds, varied

    def stopped(self, last: RequestMetrics | None) -> tuple[str, str]:
        """Stop: (note, panel) say so; the previews stay, unfinished."""
        return (stopped_note("The previews above are unfinished; press Generate to make the images again."),
                self.ended_panel(last, "Stopped"))

    def api_text_to_image(self, prompt: str, num_images: float, seed: float | None, temperature: float,
                          top_k: float, top_p: float, guidance_scale: float, previews: bool
                          ) -> Iterator[tuple[Any, dict]]:
        """Stream (images, metrics): previews (when asked) while generating, then the final images; an empty list
        while there is nothing to show yet (the metrics still update every 16 tokens). Several images are sampled
        (see `for_variety`); metrics say each image's seed."""
        for event, seeds, varied in self.image_events(prompt, num_images, seed, temperature, top_k, top_p,
                                                      guidance_scale, previews):
            metrics = {**event.metrics.as_dict(), "seed": seeds[0], "seeds": seeds, "sampled_for_variety": varied,
                       "note": event.note, "rows_done": event.rows_done}
            yield event.images, metrics
