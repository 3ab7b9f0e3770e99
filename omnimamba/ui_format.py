"""What the app shows, as pure functions of the engine's numbers: the header, the live panel, notes.

No Gradio here: each function takes plain values (engine.info(), RequestMetrics) and returns HTML or text, so the
formatting is unit-tested without a server. Every value that reaches HTML goes through `html.escape`.
"""
from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from .metrics import RequestMetrics

if TYPE_CHECKING:
    from .compare import Item

TASK_NAMES = {"chat": "Image chat", "t2i": "Text to image", "compare": "Compare"}


def is_random(info: dict) -> bool:
    return "random" in str(info.get("model", ""))


def header_html(info: dict) -> str:
    """Title, one-line description, and a warning banner when the weights are random."""
    banner = ""
    if is_random(info):
        banner = ('<div class="om-banner">Random weights: this is the tiny test model, so answers and images are '
                  'noise. Start the app without <code>--model tiny-random</code> for the real OmniMamba.</div>')
    return (
        '<div class="om-header">'
        '<div class="om-title"><span class="om-logo">◆</span> OmniMamba'
        f'<span class="om-model">{escape(str(info.get("model", "")))}</span></div>'
        '<div class="om-tagline">Image chat and text-to-image from one 1.3B Mamba-2 model: linear-time decoding, '
        'constant memory per conversation.</div>'
        f"{banner}</div>"
    )


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


def status_text(metrics: RequestMetrics | None, progress: str = "") -> tuple[str, str]:
    """(state, detail) for the status card: Idle / Working / Generating / Done, then what and how far."""
    if metrics is None:
        return ("Working" if progress else "Idle"), progress or "no request yet"
    task = TASK_NAMES.get(metrics.task, metrics.task)
    if not metrics.done:
        return "Generating", f"{task} · {progress or f'{metrics.tokens:,} tokens so far'}"
    reason = {"max_new_tokens": "token limit", "position_limit": "context limit"}.get(metrics.stop_reason or "")
    return "Done", f"{task} · {_ms(metrics.total_s)}" + (f" · {reason}" if reason else "")


def panel_html(info: dict, metrics: RequestMetrics | None = None, progress: str = "") -> str:
    """The live panel: one row of stat cards. `metrics` is the current (or last) request; `progress` an optional
    detail such as 'rows 6/24' or 'reading the image'."""
    live = metrics is not None and not metrics.done
    state, detail = status_text(metrics, progress)
    speed = metrics.decode_tokens_per_s if metrics else None
    per_step = metrics.ms_per_step if metrics else None
    vram_main, vram_sub = vram_text(metrics, info)
    device = str(info.get("device", "?"))
    tokens = metrics.tokens if metrics and metrics.tokens else None
    backend = str(info.get("backend", ""))
    cards = [
        _card("Status", state, detail, "om-live" if live or (progress and metrics is None) else ""),
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


def item_metrics(info: dict, item: "Item") -> RequestMetrics:
    """A comparison item's recorded time and peak memory, in the panel's terms (its token counts are not kept)."""
    return RequestMetrics(task="compare", device=str(info.get("device")), dtype=str(info.get("dtype")),
                          backend=str(info.get("backend")), total_s=item.seconds or 0.0,
                          peak_vram_gib=item.peak_vram_gib, vram_total_gib=info.get("vram_total_gib"),
                          done=True, stop_reason="done")


def image_captions(seed: int, count: int) -> list[str]:
    return [f"seed {seed} · image {i + 1} of {count}" for i in range(count)]


def t2i_note(seed: int, count: int, size: int | None, truncation: str | None, done: bool) -> str:
    """Markdown under the gallery: what was made and how to reproduce it, plus the truncation warning."""
    what = f"{count} image{'s' if count != 1 else ''}" + (f" · {size}×{size}" if size else "")
    head = f"**{what}** · seed `{seed}`" if done else f"Generating {what} · seed `{seed}`…"
    return head + (f"\n\n⚠️ {truncation}" if truncation else "")
