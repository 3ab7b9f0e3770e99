"""What the app shows, as pure functions of the engine's numbers: the header, the live panel, notes.

No Gradio here: each function takes plain values (engine.info(), RequestMetrics) and returns HTML or text, so the
formatting is unit-tested without a server. Every value that reaches HTML goes through `html.escape`.
"""
from __future__ import annotations

import dataclasses
import re
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from omnimamba.metrics import RequestMetrics

if TYPE_CHECKING:
    from omnimamba.compare import Item

TASK_NAMES = {"chat": "Image chat", "t2i": "Text to image", "compare": "Compare"}


def is_random(info: dict) -> bool:
    return "random" in str(info.get("model", ""))


def header_html(info: dict, notice: str = "") -> str:
    """Title, one line saying what the model is (its real size), and a banner when it is not the official model
    (`notice`: why, and how to get the official one)."""
    banner = f'<div class="om-banner">{escape(notice)}</div>' if notice else ""
    if not notice and is_random(info):
        banner = ('<div class="om-banner">Random weights: this is the tiny test model, so answers and images are '
                  'noise. Start the app without <code>--model tiny-random</code> for a model that works.</div>')
    size = info.get("size") or "1.3B"
    return (
        '<div class="om-header">'
        '<div class="om-title"><span class="om-logo">◆</span> OmniMamba'
        f'<span class="om-model">{escape(str(info.get("model", "")))}</span></div>'
        f'<div class="om-tagline">Image chat and text-to-image from one {escape(size)}-parameter Mamba-2 model: '
        'linear-time decoding, constant memory per conversation.</div>'
        f"{banner}</div>"
    )


def parameters_text(parameters: int) -> str:
    """1_300_000_000 -> '1.3B', 19_400_000 -> '19M'."""
    if parameters >= 1e9:
        return f"{parameters / 1e9:.1f}B"
    return f"{parameters / 1e6:.0f}M" if parameters >= 1e6 else f"{parameters / 1e3:.0f}K"


def _fmt(value: float | None, unit: str, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f} {unit}".strip()


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds * 1000:,.0f} ms" if seconds < 1 else f"{seconds:,.2f} s"


def _card(label: str, value: str, sub: str = "", kind: str = "", title: str = "") -> str:
    """One stat card; `title` is the hover text (the full value when the card shortens it)."""
    sub_html = f'<div class="om-sub">{escape(sub)}</div>' if sub else ""
    return (f'<div class="om-card {kind}" title="{escape(title or f"{label}: {value} {sub}".strip())}">'
            f'<div class="om-label">{escape(label)}</div>'
            f'<div class="om-value">{escape(value)}</div>{sub_html}</div>')


def vram_text(metrics: RequestMetrics | None, info: dict) -> tuple[str, str]:
    """(main line, sub line) of the VRAM card: in use / total, and this request's peak."""
    total = (metrics.vram_total_gib if metrics and metrics.vram_total_gib else None) or info.get("vram_total_gib")
    if total is None:
        return "n/a on CPU", "no GPU"
    in_use = metrics.vram_in_use_gib if metrics else None
    peak = metrics.peak_vram_gib if metrics else None
    main = f"{_fmt(in_use, '', 2)} / {total:,.1f} GiB" if in_use is not None else f"— / {total:,.1f} GiB"
    return main, f"peak {_fmt(peak, 'GiB', 2)}"


def status_text(metrics: RequestMetrics | None, progress: str = "", ended: str = "") -> tuple[str, str]:
    """(state, detail) for the status card: Idle / Working / Generating / Done, or `ended` ('Stopped', 'Not
    answered', ...) when the request ended otherwise; then what and how far."""
    task = TASK_NAMES.get(metrics.task, metrics.task) if metrics is not None else ""
    if ended:
        detail = " · ".join(part for part in (task, progress or (f"{metrics.tokens:,} tokens" if metrics and
                                                                   metrics.tokens else "")) if part)
        return ended, detail or "no result"
    if metrics is None:
        return ("Working" if progress else "Idle"), progress or "no request yet"
    if not metrics.done:
        return "Generating", f"{task} · {progress or f'{metrics.tokens:,} tokens so far'}"
    reason = {"max_new_tokens": "token limit", "position_limit": "context limit"}.get(metrics.stop_reason or "")
    return "Done", f"{task} · {_ms(metrics.total_s)}" + (f" · {reason}" if reason else "")


def panel_html(info: dict, metrics: RequestMetrics | None = None, progress: str = "", ended: str = "") -> str:
    """The live panel: one row of stat cards. `metrics` is the current (or last) request; `progress` an optional
    detail such as 'rows 6/24' or 'reading the image'; `ended` a final state other than Done ('Stopped')."""
    live = metrics is not None and not metrics.done and not ended
    state, detail = status_text(metrics, progress, ended)
    speed = metrics.decode_tokens_per_s if metrics else None
    per_step = metrics.ms_per_step if metrics else None
    vram_main, vram_sub = vram_text(metrics, info)
    device = str(info.get("device", "?"))
    tokens = metrics.tokens if metrics and metrics.tokens else None
    backend = str(info.get("backend", ""))
    cards = [
        _card("Status", state, detail, "om-live" if live or (progress and metrics is None and not ended) else ""),
        _card("Decode speed", _fmt(speed, "tok/s"), f"{per_step:.2f} ms per step" if per_step else "tokens per second"),
        _card("First token", _ms(metrics.ttft_s if metrics else None), "prefill + first sample"),
        _card("Tokens", f"{tokens:,}" if tokens else "—", f"in {_ms(metrics.total_s)}" if metrics else ""),
        _card("VRAM in use", vram_main, vram_sub),
        _card("Device", device if device != "CPU" else "CPU (no GPU)", str(info.get("dtype", ""))),
        _card("Kernels", _short_backend(backend), "decode · hover for all", title=backend),
    ]
    return f'<div class="om-panel" data-live="{str(live).lower()}">{"".join(cards)}</div>'


def _short_backend(backend: str) -> str:
    """'scan: triton, conv: causal-conv1d, decode: ...' -> the decode kernel, which sets the speed."""
    parts = dict(part.split(": ", 1) for part in backend.split(", ") if ": " in part)
    return parts.get("decode", backend or "?").replace("pytorch reference", "PyTorch")


def item_metrics(info: dict, item: "Item", measured: RequestMetrics | None = None) -> RequestMetrics:
    """A comparison item in the panel's terms: the engine's own numbers when they were `measured`, else the item's
    recorded time and peak memory (a manifest keeps no token counts)."""
    if measured is not None:
        return dataclasses.replace(measured, task="compare", done=True)
    return RequestMetrics(task="compare", device=str(info.get("device")), dtype=str(info.get("dtype")),
                          backend=str(info.get("backend")), total_s=item.seconds or 0.0,
                          peak_vram_gib=item.peak_vram_gib, vram_total_gib=info.get("vram_total_gib"),
                          done=True, stop_reason="done")


def image_captions(seeds: list[int]) -> list[str]:
    """A short caption per image (a long one is cut in the gallery): '#2 · seed 1234'."""
    return [f"#{i + 1} · seed {seed}" for i, seed in enumerate(seeds)]


def image_seeds(seed: int, count: int, per_image: bool) -> list[int]:
    """The seed to show under each image: its own (seed + i) when the images are sampled one seed each, else the
    request's seed for all of them."""
    return [seed + i if per_image else seed for i in range(count)]


def t2i_note(seeds: list[int], size: int | None, truncation: str | None, done: bool, varied: bool = False) -> str:
    """Markdown under the gallery: what was made and how to reproduce it (`seeds`: each image's), whether it was
    sampled for variety, and the truncation warning."""
    count = len(seeds)
    what = f"{count} image{'s' if count != 1 else ''}" + (f" · {size}×{size}" if size else "")
    seed_text = (f"seeds `{seeds[0]}`…`{seeds[-1]}`, one per image" if len(set(seeds)) > 1 else f"seed `{seeds[0]}`")
    head = f"**{what}** · {seed_text}" if done else f"Generating {what} · {seed_text}…"
    if varied:
        head += ("\n\nSeveral images are sampled (temperature 1, top-k off) so that they differ; one image uses "
                 "greedy decoding, the official setting. Set top-k above 1 to choose the sampling yourself.")
    return head + (f"\n\n⚠️ {truncation}" if truncation else "")


def stopped_note(what: str) -> str:
    return f"**Stopped.** {what}"


# ---------------------------------------------------------------------------------------------- compare: a set
NOT_RECORDED = "not recorded"
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~&$])")


def md_escape(text: str) -> str:
    """Plain text -> Markdown that shows it as written (no links, emphasis, tables or HTML), on one line."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def md_text(text: str) -> str:
    """Plain text (a message) -> Markdown that shows it as written, line breaks kept."""
    return "  \n".join(md_escape(line) for line in str(text).splitlines())


def size_text(size: tuple[int, int] | None) -> str:
    return f"{size[0]}×{size[1]}" if size else "?"


def side_label(model: str, size: tuple[int, int] | None = None, seed: int | None = None) -> str:
    """An image's label: 'Show-o · 256×256' or 'OmniMamba · 64×64 · seed 3'."""
    parts = [model] + ([size_text(size)] if size else []) + ([f"seed {seed}"] if seed is not None else [])
    return " · ".join(parts)


def pair_choices(items: list["Item"]) -> list[tuple[str, int]]:
    """The pair picker's (label, index) choices: '2. A red apple…', '3. chat: What is…? (house.png)'."""
    def label(item: "Item") -> str:
        text = " ".join(item.prompt.split())
        text = text if len(text) <= 90 else text[:89] + "…"
        if item.task == "mmu":
            return f"chat: {text}" + (f" ({Path(item.image).name})" if item.image else "")
        return text
    return [(f"{i + 1}. {label(item)}", i) for i, item in enumerate(items)]


def set_status(source: str, items: list["Item"], made: int) -> str:
    """The line under the loader: what is loaded and how much of OmniMamba's side is made."""
    if not items:
        return "No set loaded yet."
    t2i = sum(item.task == "t2i" for item in items)
    kinds = [f"{n} {what}" for n, what in ((t2i, "text to image"), (len(items) - t2i, "image chat")) if n]
    return (f"**{len(items)} pair{'s' if len(items) != 1 else ''}** ({', '.join(kinds)}) from {md_escape(source)} · "
            f"OmniMamba's side made for {made} of {len(items)}")


def _sampler_text(sampler: dict) -> str:
    return ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in sampler.items()) or NOT_RECORDED


def _vram(item: "Item", ours: bool) -> str:
    if item.peak_vram_gib is not None:
        return f"{item.peak_vram_gib:,.2f} GiB"
    return "n/a (no GPU)" if ours and "CPU" in str(item.device) else NOT_RECORDED


def pair_table(showo: "Item", ours: "Item | None", sizes: tuple[tuple[int, int] | None, tuple[int, int] | None]
               ) -> str:
    """Markdown for one pair: the prompt, then both sides' time, peak VRAM, seed, size, settings, model, device.
    `sizes` are the native (width, height) of both images (t2i), or None; Show-o's blanks read 'not recorded'."""
    def row(name: str, left: str, right: str) -> str:
        return f"| {name} | {md_escape(left)} | {md_escape(right)} |"

    def cells(item: "Item | None", size: tuple[int, int] | None, is_ours: bool) -> list[str]:
        if item is None:
            return ["not made yet"] * 7
        resolution = size_text(size) if size else (f"{item.resolution} px" if item.resolution else NOT_RECORDED)
        model = item.model + (f" @ {item.revision[:12]}" if item.revision else "")
        return [_ms(item.seconds) if item.seconds is not None else NOT_RECORDED, _vram(item, is_ours),
                str(item.seed) if item.seed is not None else NOT_RECORDED, resolution, _sampler_text(item.sampler),
                model or NOT_RECORDED, item.device or NOT_RECORDED]

    what = "Question" if showo.task == "mmu" else "Prompt"
    names = ["Time", "Peak VRAM", "Seed", "Image seen at" if showo.task == "mmu" else "Native size", "Settings",
             "Model", "Device"]
    left, right = cells(showo, sizes[0], False), cells(ours, sizes[1], True)
    lines = [f"**{what}:** {md_escape(showo.prompt)}", "", "| | Show-o | OmniMamba |", "| --- | --- | --- |",
             *(row(name, a, b) for name, a, b in zip(names, left, right))]
    if ours is not None and showo.device and ours.device and showo.seconds is not None and showo.device != ours.device:
        lines += ["", "The two sides ran on different devices: their times are not directly comparable."]
    return "\n".join(lines)
