"""Markdown tables from the JSON files a benchmark run wrote, for docs/benchmarks.md and the README: every
figure in the docs comes from here, none typed by hand. Parts that are missing or failed show as such.

    python -m omnimamba.bench.report DIR      (DIR holds tasks.json, long_context.json, start.json, suite.json;
                                               decode.json, gemv.json and concurrency.json when those benchmarks
                                               wrote there)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .long_context import Case, markdown_table



def detail(t: dict, name: str) -> str:
    """What a shape is, from what was measured: "1 row, 72-token prompt, 256 tokens"."""
    rows, prompt, new = t["ours"]["shapes"][name]
    return f"{rows} row{'s' if rows > 1 else ''}, {prompt}-token prompt, {new} tokens"


def label(t: dict, name: str) -> str:
    return f"{name} ({detail(t, name)})"


def load(folder: Path, name: str) -> dict | None:
    path = folder / name
    return json.loads(path.read_text()) if path.is_file() else None


def num(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def ratio(theirs: float | None, mine: float | None) -> str:
    return "—" if theirs is None or not mine else f"{theirs / mine:.2f}x"


def header(t: dict | None, lc: dict | None) -> str:
    src = t or lc
    if src is None:
        return "No tasks.json or long_context.json: nothing was measured.\n"
    v = src.get("versions", {})
    gpu = f" ({t['gpu_memory_gib']:.0f} GiB, {t['multiprocessors']} SMs)" if t and t.get("gpu_memory_gib") else ""
    lines = [f"GPU: {src['gpu']}{gpu}",
             "versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val)]
    if t and t.get("copy_gbs"):
        lines.append(f"device copy bandwidth (read + write, same run): {t['copy_gbs']:.0f} GB/s; a batch-1 step "
                     f"reads {t['step_gb']['t2i']:.2f} GB (image) / {t['step_gb']['mmu']:.2f} GB (chat): floor "
                     f"{t['floor_ms']['t2i']:.3f} / {t['floor_ms']['mmu']:.3f} ms; dtype {t['dtype']}")
    return "\n".join(lines) + "\n"


def tasks_tables(t: dict) -> str:
    return "\n".join([generation_tables(t), step_table(t), our_tasks_table(t["ours"]),
                      variants_table(t.get("decode_variants"))])


def generation_tables(t: dict) -> str:
    """Ours beside stock on the same shapes: decode ms/step, then T(1) and T(N)."""
    o, s = t["ours"], t.get("stock_mamba_ssm", {})
    sg = s.get("generation", {})
    out = [f"### Token generation, the same work on both sides (warm-up per shape, median of {t.get('repeat', 5)})",
           "", "| decode, ms per step | ours | stock mamba_ssm | speed-up |", "| --- | --- | --- | --- |"]
    for name, mine in o["generation"].items():
        theirs = sg.get(name, {}).get("decode_ms")
        out.append(f"| {label(t, name)} | **{num(mine['decode_ms'])}** | {num(theirs)} "
                   f"| {ratio(theirs, mine['decode_ms'])} |")
    out += ["", "| seconds | ours: prefill + first token | stock | speed-up | ours: all tokens | stock | speed-up |",
            "|" + " --- |" * 7]
    for name, mine in o["generation"].items():
        th = sg.get(name, {})
        out.append(f"| {label(t, name)} | {num(mine['first_token_s'], 4)} "
                   f"| {num(th.get('first_token_s'), 4)} | {ratio(th.get('first_token_s'), mine['first_token_s'])} "
                   f"| **{num(mine['s'])}** | {num(th.get('s'))} | {ratio(th.get('s'), mine['s'])} |")
    if "error" in s or not s:
        out.append(f"\nstock mamba_ssm: {s.get('error', 'not run')}")
    elif "one_image_recapturing_graphs_s" in s:
        out.append(f"\nStock's image, batch 1 when every call re-captures its CUDA graphs (the old benchmark's "
                   f"method, not used above): {s['one_image_recapturing_graphs_s']:.3f} s.")
    peaks = ", ".join(f"{k} {v['peak_gib']:.2f}" for k, v in sg.items() if v.get("peak_gib") is not None)
    if peaks:
        out.append(f"\nStock's peak GiB (its own model only): {peaks}.")
    if o.get("chat_stopped_early"):
        out.append("\nWARNING: ours' chat stopped at an end-of-text token before its last token: that row is short.")
    return "\n".join(out) + "\n"


def step_table(t: dict) -> str:
    out = ["### The decode step alone (ours: its CUDA graph replayed back to back, no loop)", "",
           "| | ms/step | share of the bandwidth floor |", "| --- | --- | --- |"]
    for name, ms in t["ours"]["replay_ms"].items():
        floor = t["floor_ms"]["mmu" if "chat" in name else "t2i"] if "batch 1" in name else None
        out.append(f"| {name} | {num(ms)} | {f'{floor / ms:.0%}' if floor else ''} |")
    return "\n".join(out) + "\n"


def our_tasks_table(o: dict) -> str:
    labels = {"one image": "one image: prefill + 256 tokens + VQ decode",
              "four images, guidance": "four images with guidance (scale 3) + VQ decode",
              "chat answer": "128-token image-chat answer: vision + 760-token prefill + decode"}
    out = ["### What a user waits for, ours only (stock has no VQ decoder or vision towers)", "",
           "| task | s | tokens/s | peak GiB |", "| --- | --- | --- | --- |"]
    for name, r in o["tasks"].items():
        out.append(f"| {labels.get(name, name)} | {num(r['s'])} | {r['tokens_per_s']:.0f} | {num(r['peak_gib'], 2)} |")
    prefill_ms = 1000 * o["generation"]["chat, batch 1"]["first_token_s"]
    out += ["", f"Parts: VQ decode {num(o['vq_decode_ms']['1'], 1)} ms (1 image) / {num(o['vq_decode_ms']['4'], 1)} "
            f"ms (4 images); vision towers + projector {num(o['vision_ms'], 1)} ms as a graph replay (eager "
            f"{num(o['vision_eager_ms'], 1)}); image-chat time to first token {num(o['chat_ttft_ms'], 1)} ms; "
            f"prefill of the 760-token prompt + first token {prefill_ms:.1f} ms (without graphs "
            f"{num(o['prefill_eager_ms'], 1)}, pure PyTorch {num(o['prefill_reference_ms'], 1)})."]
    return "\n".join(out) + "\n"


def variants_table(v: dict | None) -> str:
    if not v:
        return ""
    layer_keys = list(next(iter(v.values()))["layer_us"])
    shapes = [k for k in next(iter(v.values())) if k != "layer_us"]
    out = ["", "### Where a decode step's time goes (one layer alone, µs; weights partly in L2: relative costs)", "",
           "| GEMV | " + " | ".join(layer_keys) + " | " + " | ".join(f"{s}, ms/step" for s in shapes) + " |",
           "|" + " --- |" * (1 + len(layer_keys) + len(shapes))]
    for mode, r in v.items():
        out.append(f"| {mode} | " + " | ".join(num(r["layer_us"][k], 1) for k in layer_keys) + " | "
                   + " | ".join(num(r[s]) for s in shapes) + " |")
    return "\n".join(out) + "\n"


def long_context_tables(lc: dict) -> str:
    cases = [Case(**c) for c in lc["cases"]]
    out = [f"{lc['new_tokens']} new tokens after a random prompt of L tokens; repeats per length "
           f"{lc.get('repeats')}; static+compile measured at {lc.get('compile_lengths') or 'every length'}.", "",
           markdown_table(cases)]
    for mode, note in lc.get("replaced", {}).items():
        out.append(f"\n{mode}: {note}")
    for n in lc["lengths"]:
        om = next((c for c in cases if c.model == "OmniMamba" and c.length == n), None)
        tf = next((c for c in cases if c.mode == "static+compile" and c.length == n), None)
        if om and tf and om.ms_per_token and tf.ms_per_token and om.peak_gib and tf.peak_gib:
            out.append(f"\nAt L={n:,}: OmniMamba {om.ms_per_token:.2f} ms/token vs the static-cache compiled "
                       f"Transformer {tf.ms_per_token:.2f} ({tf.ms_per_token / om.ms_per_token:.1f}x); peak "
                       f"{om.peak_gib:.1f} vs {tf.peak_gib:.1f} GiB.")
    for key, f in lc.get("floors", {}).items():
        if key.startswith("OmniMamba") or "static" in key:
            out.append(f"\nfloor {key}: {f['floor_ms']:.2f} ms, reached {f['fraction_of_floor']:.0%}")
    return "\n".join(out) + "\n"


def start_table(s: dict) -> str:
    out = [f"Stand-ins of the assets: {s['assets_gb']:.1f} GB.", "",
           "| | to a ready model, s | import torch / omnimamba, s | whole process, s |", "| --- | --- | --- | --- |"]
    for name in ("first_load", "warm_start", "cold_start_after_dropping_page_cache"):
        r = s.get(name)
        if r:
            out.append(f"| {name.replace('_', ' ')} | {r['ready_s']:.1f} | {r['import_torch_s']:.1f} / "
                       f"{r['import_omnimamba_s']:.1f} | {r['process_wall_s']:.1f} |")
    return "\n".join(out) + "\n"


def readme_table(t: dict | None, lc: dict | None) -> str:
    """The README's speed table: the headline rows, ours beside stock from the same run."""
    if not t or "ours" not in t:
        return "not measured\n"
    g, sg = t["ours"]["generation"], t.get("stock_mamba_ssm", {}).get("generation", {})
    img, chat = g["image, batch 1"], g["chat, batch 1"]
    simg, schat = sg.get("image, batch 1", {}), sg.get("chat, batch 1", {})
    four, sfour = g["4 images + guidance, batch 8"], sg.get("4 images + guidance, batch 8", {})
    tasks = t["ours"]["tasks"]
    rows = [("decode, ms/token, batch 1 (image / chat)", f"**{img['decode_ms']:.2f} / {chat['decode_ms']:.2f}**",
             f"{num(simg.get('decode_ms'), 2)} / {num(schat.get('decode_ms'), 2)}",
             f"{ratio(simg.get('decode_ms'), img['decode_ms'])} / {ratio(schat.get('decode_ms'), chat['decode_ms'])}"),
            (f"one image: {detail(t, 'image, batch 1')}", f"**{img['s']:.3f} s** ({tasks['one image']['s']:.3f} s "
             "with VQ decode)", f"{num(simg.get('s'))} s", ratio(simg.get("s"), img["s"])),
            (f"four images with guidance: {detail(t, '4 images + guidance, batch 8')}", f"**{four['s']:.3f} s** "
             f"({tasks['four images, guidance']['s']:.3f} s with VQ decode)", f"{num(sfour.get('s'))} s",
             ratio(sfour.get("s"), four["s"])),
            (f"image chat: {detail(t, 'chat, batch 1')}", f"**{chat['s']:.3f} s** ({tasks['chat answer']['s']:.3f} s "
             "with vision towers)", f"{num(schat.get('s'))} s", ratio(schat.get("s"), chat["s"])),
            (f"chat prefill of {t['ours']['shapes']['chat, batch 1'][1]} tokens + first token",
             f"**{1000 * chat['first_token_s']:.1f} ms**",
             f"{num(1000 * schat['first_token_s'] if schat else None, 1)} ms",
             ratio(schat.get("first_token_s"), chat["first_token_s"]))]
    dtype = t["dtype"].replace("torch.", "")
    out = [f"| {t['gpu']}, {dtype} | this project | stock mamba-ssm (`generate`, CUDA graphs kept) | speed-up |",
           "| --- | --- | --- | --- |"] + [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    if lc and "cases" in lc:
        n = max(lc["lengths"])
        om = next((c for c in lc["cases"] if c["model"] == "OmniMamba" and c["length"] == n), {})
        tf = next((c for c in lc["cases"] if c["mode"] == "static+compile" and c["length"] == n), {})
        if om.get("ms_per_token") and tf.get("ms_per_token"):
            out.append(f"| decode at {n // 1000}k context vs a same-size Transformer (static cache, compiled) | "
                       f"**{om['ms_per_token']:.2f} ms**, {num(om['peak_gib'], 1)} GiB | {tf['ms_per_token']:.2f} ms, "
                       f"{num(tf['peak_gib'], 1)} GiB (Transformer) | {tf['ms_per_token'] / om['ms_per_token']:.1f}x |")
    return "\n".join(out) + "\n"


def gemv_table(g: dict, top: int = 6) -> str:
    """bench/gemv.py: the fastest matrix-vector kernels per shape, weights cold, against the copy bandwidth."""
    out = [f"Weights cold ({g['layers']} different matrices back to back in one CUDA graph); copy bandwidth "
           f"{g['copy_gbs']:.0f} GB/s (read + write) in the same run.", ""]
    for name, shape in g["shapes"].items():
        rows = [r for r in shape["rows"] if "us" in r]
        keep = rows[:top] + [r for r in rows[top:] if r["kernel"].startswith("cublas")]
        out += [f"| {name} ({shape['n']} x {shape['k']}, {shape['mb']} MB) | µs | GB/s | share of copy |",
                "| --- | --- | --- | --- |"]
        out += [f"| {r['kernel']} | {r['us']:.2f} | {r['gbs']:.0f} | {r['share_of_copy']:.0%} |" for r in keep]
        out.append("")
    return "\n".join(out)


def concurrency_table(rows: list[dict]) -> str:
    """bench/concurrency.py: N threads, one request each, one engine, batching on and off."""
    out = ["| task | users | engine | wall s | tokens/s | slowest request s | p95 time to first token s |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: (r["task"], r["users"], not r["batching"])):
        out.append(f"| {r['task']} | {r['users']} | {'batching' if r['batching'] else 'one at a time'} | "
                   f"{r['wall_s']:.3f} | {r['tokens_per_s']:.0f} | {r['latency_max_s']:.3f} | {r['ttft_p95_s']:.3f} |")
    return "\n".join(out) + "\n"


def render(folder: Path) -> str:
    t, lc, st, suite = (load(folder, n) for n in ("tasks.json", "long_context.json", "start.json", "suite.json"))
    parts = [f"# Benchmark run ({folder.name})", "", header(t, lc)]
    for name, r in (suite or {}).items():
        if r["status"] != "ok":
            parts.append(f"part {name}: {r['status']}\n```\n{r.get('log_tail', '')[-1200:]}\n```\n")
    parts += ["## Tasks", "", tasks_tables(t) if t and "ours" in t else "not measured\n"]
    parts += ["## Long context", "", long_context_tables(lc) if lc and "cases" in lc else "not measured\n"]
    parts += ["## Start-up", "", start_table(st) if st else "not measured\n"]
    parts += ["## For the README", "", readme_table(t, lc)]
    decode, gemv, conc = (load(folder, n) for n in ("decode.json", "gemv.json", "concurrency.json"))
    if decode:
        parts += ["## The decode step's variants (bench.tasks --decode-only)", "",
                  f"{decode['gpu']}; floor {decode['floor_ms']['t2i']:.3f} / {decode['floor_ms']['mmu']:.3f} ms "
                  "(image / chat, 16-bit weights)", variants_table(decode["decode_variants"])]
    if gemv:
        parts += ["## Matrix-vector kernels (bench/gemv.py)", "", gemv_table(gemv)]
    if conc:
        parts += ["## Concurrent requests, one engine (bench/concurrency.py)", "", concurrency_table(conc)]
    return "\n".join(parts)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m omnimamba.bench.report DIR  (a folder written by `python -m omnimamba bench`)")
    print(render(Path(sys.argv[1])))
