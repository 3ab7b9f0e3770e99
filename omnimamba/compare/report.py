"""Side-by-side pictures of a comparison: grid pages (PNG) and one self-contained HTML report.

Both take (Show-o, OmniMamba) pairs of omnimamba.compare.Item and the base folders their relative image paths
start from (absolute paths are used as they are). Show-o is always on the left.
"""
from __future__ import annotations

import base64
import html
import io
import json
import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont, ImageOps

if TYPE_CHECKING:
    from .items import Item

# grid page layout, in pixels: | MARGIN | cell | GAP | cell | MARGIN |; a header row, then per pair the two
# images and CAPTION_LINES lines of text under them
MARGIN, GAP, HEADER, LINE, CAPTION_LINES = 16, 16, 32, 18, 3
CAPTION = CAPTION_LINES * LINE + 10
BACKGROUND, INK, NOTE_INK = (255, 255, 255), (20, 20, 20), (110, 110, 110)
FONT_SIZE = 14
THUMBNAIL = 384  # longest side of an image-chat input shown in the report


def resolve_image(base: str | Path, item: "Item") -> Path:
    """The item's image file: base / image, or the image path itself when it is absolute."""
    return Path(base) / item.image


# ---------------------------------------------------------------------------------------------- grid pages
def render_grid(pairs: list[tuple["Item", "Item"]], base_dir_showo: str | Path, base_dir_ours: str | Path,
                per_page: int = 8, cell: int = 256) -> list[Image.Image]:
    """Text-to-image pairs as pages of at most `per_page` rows: Show-o left, OmniMamba right, both shown at
    cell x cell, with the prompt and both native resolutions under each pair. Image-chat pairs are left to the
    report. Page width is 2 * MARGIN + 2 * cell + GAP."""
    t2i = [pair for pair in pairs if pair[0].task == "t2i"]
    font = ImageFont.load_default(size=FONT_SIZE)
    pages = []
    for start in range(0, len(t2i), per_page):
        rows = t2i[start:start + per_page]
        page = Image.new("RGB", (2 * MARGIN + 2 * cell + GAP, 2 * MARGIN + HEADER + len(rows) * (cell + CAPTION)),
                         BACKGROUND)
        draw = ImageDraw.Draw(page)
        for x, name in ((MARGIN, "Show-o"), (MARGIN + cell + GAP, "OmniMamba")):
            draw.text((x + cell // 2, MARGIN + HEADER // 2), name, fill=INK, font=font, anchor="mm")
        for row, (showo, ours) in enumerate(rows):
            top = MARGIN + HEADER + row * (cell + CAPTION)
            sizes = [_paste(page, resolve_image(base, item), (x, top), cell) for base, item, x in
                     ((base_dir_showo, showo, MARGIN), (base_dir_ours, ours, MARGIN + cell + GAP))]
            _caption(draw, font, f"{start + row + 1}. {ours.prompt}", sizes, (MARGIN, top + cell + 4), 2 * cell + GAP)
        pages.append(page)
    return pages


def _paste(page: Image.Image, path: Path, corner: tuple[int, int], cell: int) -> tuple[int, int]:
    """Fit the image into a cell x cell square at `corner`; returns its native size."""
    with Image.open(path) as image:
        size = image.size
        page.paste(ImageOps.pad(image.convert("RGB"), (cell, cell), Image.LANCZOS, color=BACKGROUND), corner)
    return size


def _caption(draw: ImageDraw.ImageDraw, font: ImageFont.FreeTypeFont, prompt: str, sizes: list[tuple[int, int]],
             corner: tuple[int, int], width: int) -> None:
    x, y = corner
    lines = _wrap(prompt, font, width, CAPTION_LINES - 1)
    for i, line in enumerate(lines):
        draw.text((x, y + i * LINE), line, fill=INK, font=font)
    (sw, sh), (ow, oh) = sizes
    note = f"native: Show-o {sw}x{sh}, OmniMamba {ow}x{oh}; both shown at the same size"
    draw.text((x, y + len(lines) * LINE), note, fill=NOTE_INK, font=font)


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int, max_lines: int) -> list[str]:
    """Greedy word wrap to `width` pixels; a text that needs more than `max_lines` lines ends in an ellipsis."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        while lines[-1] and font.getlength(lines[-1] + " …") > width:
            lines[-1] = lines[-1][:-1]
        lines[-1] += " …"
    return lines


# ---------------------------------------------------------------------------------------------- HTML report
STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:6px;vertical-align:top;text-align:left}.meta{color:#666;font-size:.85em}
img.out{width:%(cell)dpx;height:%(cell)dpx;object-fit:contain;background:#f4f4f4}
img.input{max-width:%(cell)dpx;max-height:%(cell)dpx}.answer{max-width:28em;white-space:pre-wrap}"""


def write_report(pairs: list[tuple["Item", "Item"]], out_dir: str | Path, showo_base: str | Path,
                 ours_base: str | Path, title: str = "OmniMamba vs Show-o", cell: int = 256) -> Path:
    """out_dir/report.html: settings of both sides, totals, then one row per pair (images embedded)."""
    bases = (showo_base, ours_base)
    t2i = [_t2i_row(n, pair, bases) for n, pair in enumerate((p for p in pairs if p[0].task == "t2i"), start=1)]
    mmu = [_mmu_row(n, pair, bases) for n, pair in enumerate((p for p in pairs if p[0].task == "mmu"), start=1)]
    body = [f"<h1>{html.escape(title)}</h1>",
            "<p class='meta'>Times are per item, measured after a warm-up request; an image chat's time includes "
            "encoding its image. VRAM is the peak during the item. A dash means the side did not record it.</p>",
            "<h2>Settings</h2>", _settings_table(pairs), "<h2>Totals</h2>", _totals_table(pairs)]
    if t2i:
        body += ["<h2>Text to image</h2><table><tr><th>#</th><th>Prompt</th><th>Show-o</th><th>OmniMamba</th></tr>",
                 *t2i, "</table>"]
    if mmu:
        body += ["<h2>Image chat</h2><table><tr><th>#</th><th>Image</th><th>Question</th><th>Show-o</th>"
                 "<th>OmniMamba</th></tr>", *mmu, "</table>"]
    page = (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE % {'cell': cell}}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    out = Path(out_dir) / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


def _t2i_row(number: int, pair: tuple["Item", "Item"], bases: tuple) -> str:
    cells = []
    for item, base in zip(pair, bases):
        path = resolve_image(base, item)
        with Image.open(path) as image:
            width, height = image.size
        cells.append(f"<td><img class='out' src='{_file_uri(path)}' alt='{html.escape(item.model, quote=True)}'>"
                     f"<div class='meta'>{width}x{height} px · {_measures(item)}</div></td>")
    return (f"<tr class='pair t2i'><td>{number}</td><td>{html.escape(pair[1].prompt)}</td>"
            + "".join(cells) + "</tr>")


def _mmu_row(number: int, pair: tuple["Item", "Item"], bases: tuple) -> str:
    showo, ours = pair
    shown, base = (ours, bases[1]) if ours.image else (showo, bases[0])  # both sides saw the same input
    image = (f"<td><img class='input' src='{_thumbnail_uri(resolve_image(base, shown))}' alt='input'></td>"
             if shown.image else "<td>(text only)</td>")
    answers = "".join(f"<td><div class='answer'>{html.escape(item.answer or '')}</div>"
                      f"<div class='meta'>{_measures(item)}</div></td>" for item in pair)
    return f"<tr class='pair mmu'><td>{number}</td>{image}<td>{html.escape(ours.prompt)}</td>{answers}</tr>"


def _measures(item: "Item") -> str:
    seconds = f"{item.seconds:.2f} s" if item.seconds is not None else "– s"
    vram = f"{item.peak_vram_gib:.2f} GiB" if item.peak_vram_gib is not None else "– GiB"
    seed = f"seed {item.seed}" if item.seed is not None else "seed –"
    return f"{seed} · {seconds} · {vram}"


def _settings_table(pairs: list[tuple["Item", "Item"]]) -> str:
    rows = [("model", lambda i: i.model), ("revision", lambda i: i.revision), ("device", lambda i: i.device),
            ("resolution", lambda i: i.resolution and f"{i.task}: {i.resolution} px"),
            ("sampler", lambda i: i.sampler and f"{i.task}: {json.dumps(i.sampler, sort_keys=True)}")]
    lines = ["<table class='settings'><tr><th></th><th>Show-o</th><th>OmniMamba</th></tr>"]
    for name, read in rows:
        sides = [_distinct(read(pair[side]) for pair in pairs) for side in (0, 1)]
        lines.append(f"<tr><th>{name}</th>" + "".join(f"<td>{s}</td>" for s in sides) + "</tr>")
    return "\n".join(lines + ["</table>"])


def _distinct(values) -> str:
    seen = list(dict.fromkeys(str(v) for v in values if v))
    return "<br>".join(html.escape(v) for v in seen) or "–"


def _totals_table(pairs: list[tuple["Item", "Item"]]) -> str:
    lines = ["<table class='totals'><tr><th></th><th>Show-o</th><th>OmniMamba</th></tr>"]
    columns = [_totals([pair[side] for pair in pairs]) for side in (0, 1)]
    for name in columns[0]:
        lines.append(f"<tr><th>{name}</th><td>{columns[0][name]}</td><td>{columns[1][name]}</td></tr>")
    return "\n".join(lines + ["</table>"])


def _totals(items: list["Item"]) -> dict[str, str]:
    seconds = [i.seconds for i in items if i.seconds is not None]
    vram = [i.peak_vram_gib for i in items if i.peak_vram_gib is not None]
    return {"items": str(len(items)), "timed items": str(len(seconds)),
            "total time": f"{sum(seconds):.2f} s" if seconds else "–",
            "mean time per item": f"{sum(seconds) / len(seconds):.2f} s" if seconds else "–",
            "peak VRAM (max)": f"{max(vram):.2f} GiB" if vram else "–"}


def _file_uri(path: Path) -> str:
    """The file's own bytes as a data URI, so the report shows each output at its native resolution."""
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _thumbnail_uri(path: Path) -> str:
    """A PNG at most THUMBNAIL px on a side: chat inputs can be large photos and only give context."""
    with Image.open(path) as image:
        small = ImageOps.exif_transpose(image).convert("RGB")  # as the model saw it (model.vision.load_image)
        small.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return f"data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"
