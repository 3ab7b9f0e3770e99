"""OmniMamba's side of the comparison and the `compare` command: make each item under recorded settings, pair
it with Show-o's, write manifests, grids and the report."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..model.vision import ImageError, load_image
from ..sampling import SamplingParams
from .items import MANIFEST, CompareError, Item, check_image_file, import_showo, pair_items, read_prompts, \
    read_questions, write_manifest
from .report import render_grid, write_report

if TYPE_CHECKING:
    from ..engine import Engine

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- OmniMamba's side
def generate_item(engine: Engine, prompt: str, seed: int, params: SamplingParams, guidance_scale: float, out_dir: Path,
                  index: int) -> Item:
    """One image for `prompt`, saved as out_dir/t2i_{index:03d}.png; the item records how it was made."""
    params = dataclasses.replace(params, seed=seed)
    for event in engine.text_to_image(prompt, 1, params, guidance_scale):
        pass
    if event.note:
        log.warning("%r: %s", prompt, event.note)
    out_dir.mkdir(parents=True, exist_ok=True)
    image_path = (out_dir / f"t2i_{index:03d}.png").resolve()
    event.images[0].save(image_path)
    sampler = {**_sampler(params), "guidance_scale": guidance_scale, "steps": engine.model.config.num_image_tokens}
    m = event.metrics
    return Item("t2i", prompt, image=str(image_path), seed=seed, resolution=event.images[0].width, sampler=sampler,
                seconds=m.total_s, peak_vram_gib=m.peak_vram_gib, model=engine.label, device=f"{m.device} ({m.dtype})")


def answer_item(engine: Engine, image_path: str | Path | None, question: str, params: SamplingParams,
                max_new_tokens: int) -> Item:
    """OmniMamba's answer to `question` about the image (or text only). The time includes encoding the image."""
    image = None
    if image_path is not None:
        image_path = Path(image_path).resolve()
        check_image_file(image_path, "image chat")
        try:
            image = load_image(image_path)  # the loader every door uses: upright (EXIF), size-checked
        except ImageError as exc:
            raise CompareError(f"image chat: {exc}") from None
    start = time.perf_counter()
    session = engine.new_session(image)  # encodes the image, synchronously
    encode_s = time.perf_counter() - start
    try:
        for event in engine.chat(session, question, params, max_new_tokens):
            pass
    finally:
        engine.end_session(session)
    m = event.metrics
    return Item("mmu", question, image=str(image_path) if image_path else None, answer=event.text.strip(),
                seed=params.seed, resolution=engine.model.config.vision.image_size,
                sampler={**_sampler(params), "max_new_tokens": max_new_tokens}, seconds=encode_s + m.total_s,
                peak_vram_gib=m.peak_vram_gib, model=engine.label, device=f"{m.device} ({m.dtype})")


def _sampler(params: SamplingParams) -> dict:
    return {"temperature": params.temperature, "top_k": params.top_k, "top_p": params.top_p}


# ---------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--showo", required=True,
                        help="Show-o's outputs: a folder of images (with --prompts) or a manifest .jsonl")
    parser.add_argument("--prompts", default=None, help="text-to-image prompts, one per line (e.g. assets/prompts.txt)")
    parser.add_argument("--questions", default=None,
                        help="image-chat questions, lines 'image_path<TAB>question' (e.g. assets/questions.txt)")
    parser.add_argument("--out", default="outputs/compare", help="folder for manifests, grids and report.html")
    parser.add_argument("--seed", type=int, default=0, help="item i uses seed + i")
    parser.add_argument("--num-per-page", type=int, default=8, help="pairs per grid image")
    parser.add_argument("--guidance-scale", type=float, default=1.0, help="1 = off (the official setting)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=1, help="1 = greedy (the official setting), 0 = off")
    parser.add_argument("--top-p", type=float, default=0.0, help="0 = off")
    parser.add_argument("--max-new-tokens", type=int, default=100, help="answer length limit for image chats")


def run(args: argparse.Namespace, load_engine: Callable[[argparse.Namespace], Engine]) -> dict:
    """The `compare` command; returns the paths written. Input problems end the command with their message."""
    try:
        return _run(args, load_engine)
    except CompareError as exc:
        raise SystemExit(f"error: {exc}") from exc


def _run(args: argparse.Namespace, load_engine: Callable[[argparse.Namespace], Engine]) -> dict:
    if not args.prompts and not args.questions:
        raise CompareError("nothing to compare: give --prompts (text to image) and/or --questions (image chat)")
    if args.num_per_page < 1:
        raise CompareError(f"--num-per-page must be at least 1, found {args.num_per_page}")
    prompts = read_prompts(args.prompts) if args.prompts else []
    questions = read_questions(args.questions) if args.questions else []
    showo = import_showo(args.showo, args.prompts)
    # check the pairing before spending GPU time on a set that cannot be compared
    pair_items(showo, [Item("t2i", p, image="") for p in prompts]
               + [Item("mmu", q, image=str(i) if i else None, answer="") for i, q in questions])
    try:
        params = SamplingParams(args.temperature, args.top_k, args.top_p, args.seed)
    except ValueError as exc:
        raise CompareError(str(exc)) from exc

    engine = load_engine(args)
    out = Path(args.out)
    ours = _generate_all(engine, prompts, questions, params, args, out / "omnimamba")
    paths = {"manifest": write_manifest(ours, out / "omnimamba" / MANIFEST),
             "showo_manifest": write_manifest(showo, out / "showo" / MANIFEST)}
    pairs = pair_items(showo, ours)
    showo_base = Path(args.showo) if Path(args.showo).is_dir() else Path(args.showo).parent
    paths["grids"] = []
    for page, grid in enumerate(render_grid(pairs, showo_base, out / "omnimamba", args.num_per_page), start=1):
        paths["grids"].append(out / f"grid_{page:02d}.png")
        grid.save(paths["grids"][-1])
    paths["report"] = write_report(pairs, out, showo_base, out / "omnimamba")
    _print_summary(paths, pairs)
    return paths


def _generate_all(engine: Engine, prompts: list[str], questions: list[tuple[Path | None, str]], params: SamplingParams,
                  args: argparse.Namespace, out_dir: Path) -> list[Item]:
    # one untimed request of each kind first: the first call pays for kernel compilation and graph capture
    if prompts:
        for _ in engine.text_to_image(prompts[0], 1, params, args.guidance_scale):
            pass
    if questions:
        answer_item(engine, *questions[0], params, args.max_new_tokens)
    items = []
    for i, prompt in enumerate(prompts):
        items.append(generate_item(engine, prompt, args.seed + i, params, args.guidance_scale, out_dir, i))
        log.info("t2i %d/%d: %.2f s  %r", i + 1, len(prompts), items[-1].seconds, prompt)
    for i, (image, question) in enumerate(questions):
        seeded = dataclasses.replace(params, seed=args.seed + len(prompts) + i)
        items.append(answer_item(engine, image, question, seeded, args.max_new_tokens))
        log.info("mmu %d/%d: %.2f s  %r", i + 1, len(questions), items[-1].seconds, question)
    return [dataclasses.replace(item, revision=args.revision) for item in items]


def _print_summary(paths: dict, pairs: list[tuple[Item, Item]]) -> None:
    def total(side: int) -> str:
        seconds = [pair[side].seconds for pair in pairs if pair[side].seconds is not None]
        return f"{sum(seconds):.1f} s over {len(seconds)} timed item(s)" if seconds else "not recorded"

    print(f"{len(pairs)} pairs compared; Show-o {total(0)}, OmniMamba {total(1)}")
    for name, path in [("OmniMamba manifest", paths["manifest"]), ("Show-o manifest", paths["showo_manifest"]),
                       *[("grid", grid) for grid in paths["grids"]], ("report", paths["report"])]:
        print(f"  {name + ':':20s}{path}")
