"""The Compare tab's Show-o set: load it, browse its pairs, make OmniMamba's side of one or all (kept in the
tab's state, so browsing back shows a made side again without the GPU)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import gradio as gr

from omnimamba.compare import CompareError, Item, answer_item, generate_item
from omnimamba.engine import Engine
from omnimamba.sampling import SamplingParams

from .compare_one import Tap, item_record, manifest_record
from .format import item_metrics, pair_choices, set_status, side_label
from .gpu import on_gpu, one_pair
from .handlers import Handlers, user_errors, warning
from .inputs import (MAX_PROMPT_CHARS, MAX_QUESTION_CHARS, check_guidance, is_whole, new_tokens, open_image,
                     seeded, text_input, whole_number)
from .showo_set import CompareSet, PairView, load_showo_set, pair_view, write_set_manifest

LOAD_LIMIT = dict(concurrency_limit=2, concurrency_id="compare_load")  # set loads decode images: two at a time
NO_CHANGE = 11  # components a pair update sets (see `set_outputs`), skipped while OmniMamba works
TABLE = 9  # the pair's table among them


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


class ComparePairHandlers(Handlers):
    def __init__(self, engine: Engine, info: dict | None = None, server_paths: bool = False):
        super().__init__(engine, info)
        self.server_paths = server_paths  # may a set be loaded from a path on this machine?
        # "Make all" asks for the GPU once per pair (on ZeroGPU, each call reserves only one pair's time)
        self.side_on_gpu = on_gpu(user_errors(self.make_side), one_pair(guidance=3, tokens=4))

    def load_set(self, files: list[str] | None, path: str | None, cset: CompareSet) -> tuple:
        """Load (replacing this tab's earlier set) and show the first pair. A set that cannot be loaded changes
        nothing: the status line says why, and that the earlier set (if any) is still the one loaded."""
        try:
            loaded = load_showo_set(files, path, self.server_paths)
        except (CompareError, gr.Error) as exc:
            message = exc.message if isinstance(exc, gr.Error) else str(exc)
            kept = (f" The set loaded before is still loaded ({len(cset.showo)} pairs)." if cset.showo
                    else " Nothing is loaded.")
            return cset, *[gr.skip()] * 1, warning(message + kept), *[gr.skip()] * (NO_CHANGE - 3)
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
        params = seeded(view.seed if seed is None else seed, temperature, top_k, top_p)
        yield *[gr.skip()] * NO_CHANGE, self.panel(progress=f"comparing: pair {view.index + 1}…")
        tap = Tap(self.engine)
        cset.ours[view.index] = self.make_side(cset, view.index, params, guidance_scale, max_new_tokens, tap)
        yield self.pair_shown(cset, view.index, tap)

    def make_all(self, cset: CompareSet, temperature: float, top_k: float, top_p: float, guidance_scale: float,
                 max_new_tokens: float) -> Iterator[tuple]:
        """OmniMamba's side of every pair that has none yet, each with its default seed, shown as it comes."""
        pair_view(cset, 0)
        todo = [index for index in range(len(cset.showo)) if index not in cset.ours]
        if not todo:
            gr.Info("OmniMamba's side is made for every pair already; use “Make OmniMamba's side” to redo one.")
            yield *[gr.skip()] * (NO_CHANGE + 1),
        for done, index in enumerate(todo):
            progress = f"comparing: pair {index + 1} ({done + 1} of {len(todo)})"
            yield *[gr.skip()] * NO_CHANGE, self.panel(progress=progress)
            params = seeded(cset.default_seed(index), temperature, top_k, top_p)
            tap = Tap(self.engine)
            cset.ours[index] = self.side_on_gpu(cset, index, params, guidance_scale, max_new_tokens, tap)
            yield self.pair_shown(cset, index, tap)

    def pair_shown(self, cset: CompareSet, index: int, tap: Tap) -> tuple:
        """The pair's outputs once OmniMamba's side is made: the engine's note (a truncated prompt, a capped answer)
        under the table, its numbers in the panel."""
        outputs = list(self.set_outputs(cset, index))
        outputs[TABLE] = outputs[TABLE] + tap.note
        return *outputs, self.panel(item_metrics(self.info, cset.ours[index], tap.metrics))

    def make_side(self, cset: CompareSet, index: int, params: SamplingParams, guidance_scale: float,
                  max_new_tokens: float, tap: Tap | None = None) -> Item:
        """OmniMamba's item for pair `index`: an image in the set's folder, or an answer about Show-o's input."""
        showo = cset.showo[index]
        if showo.task == "t2i":
            prompt = text_input(showo.prompt, "prompt", MAX_PROMPT_CHARS)
            return generate_item(tap or self.engine, prompt, params.seed, params, check_guidance(guidance_scale),
                                 Path(cset.folder) / "omnimamba", index)
        question = text_input(showo.prompt, "question", MAX_QUESTION_CHARS)
        if showo.image:
            open_image(showo.image)  # the chat's checks (and messages)
        return answer_item(tap or self.engine, showo.image, question, params, new_tokens(max_new_tokens))

    def api_compare_load(self, files: list[str] | None, path: str | None) -> tuple[dict, CompareSet]:
        """(the loaded Show-o items, the new set): /compare_pair then makes OmniMamba's side of one pair a call."""
        loaded = load_showo_set(files, path, self.server_paths)
        return {"pairs": len(loaded.showo), "source": loaded.source,
                "showo": [item_record(item) for item in loaded.showo]}, loaded

    def api_compare_pair(self, cset: CompareSet, pair: float, seed: float | None, temperature: float, top_k: float,
                         top_p: float, guidance_scale: float, max_new_tokens: float
                         ) -> Iterator[tuple[str | None, dict]]:
        """(OmniMamba's image or None, both sides' record) for pair number `pair` (1 = the first) of a loaded set;
        a seed of -1 (or empty) is the pair's default (Show-o's seed, else its index)."""
        pair_view(cset, 0)  # a set is loaded
        index = whole_number(pair, "pair", 1, len(cset.showo)) - 1
        default = seed is None or (is_whole(seed) and seed < 0)
        params = seeded(cset.default_seed(index) if default else seed, temperature, top_k, top_p)
        ours = cset.ours[index] = self.make_side(cset, index, params, guidance_scale, max_new_tokens)
        yield ours.image if ours.task == "t2i" else None, {"pair": index + 1, **manifest_record(
            cset.showo[index], ours)}
