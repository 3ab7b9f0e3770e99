"""Long-context benchmark: OmniMamba's backbone against a same-size Transformer as the context grows.

For each context length L: time to first token (prefill of L tokens), decode ms/token after it, and peak GPU
memory, for
  * OmniMamba (our engine's prefill pieces and decode step, bf16, random weights),
  * a Phi-1.5-shaped Transformer (Show-o's backbone: 24 layers, hidden 2048, 32 heads) through transformers,
    sdpa attention, random weights, in three modes: static KV cache + torch.compile (the best a Transformer
    user gets), the default dynamic cache, and no cache (the whole sequence recomputed for every token, the
    way Show-o's image-chat decoding works; only where it finishes in reasonable time).
Out of memory or out of time is recorded as such, never extrapolated. OmniMamba's own position tables stop
real prompts at 1,500 (chat) and 329 (image) positions; this measures the backbone, as the paper does.

How each number is taken (`repeats(L)` synchronised calls, median, after one untimed call of the same shape:
5 up to 4k tokens, 3 up to 16k, 1 beyond, to bound the run's time):
  * OmniMamba: prefill = the prompt as recorded power-of-two pieces; ms/token = 32 step-graph replays / 32.
  * Transformer, cached modes: `timing.generation_timing` on `generate` (the task benchmark's method):
    prefill = T(1 new token), ms/token = (T(32) - T(1)) / 31. No cache: one forward of the whole sequence
    per token, one untimed, then prefill = one timed such token, ms/token = 3 such tokens / 3.
A deadline skips the Transformer cases it would overrun ("skipped: time budget"), and results.json is written
after every model, so a run cut short keeps what it measured.

    python -m omnimamba bench --long-context --lengths 1k,4k,16k,64k,100k --out outputs/bench
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from ..config import OmniMambaConfig
from ..generation import GraphKey, ModelRunner, StaticGraph, power_of_two_pieces
from ..model import OmniMamba
from ..model.init import random_model
from .timing import (copy_bandwidth_gbs, generation_timing, median_time, peak_gib, reset_peak, step_bytes, timed,
                     versions)

log = logging.getLogger(__name__)

NEW_TOKENS = 32
NO_CACHE_BUDGET_S = 20.0  # the no-cache loop is skipped where one run would take longer than this
PHI_1_5 = dict(vocab_size=51200, hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
               num_attention_heads=32, partial_rotary_factor=0.5, tie_word_embeddings=False)


@dataclass
class Case:
    model: str
    mode: str
    length: int
    ttft_s: float | None = None
    ms_per_token: float | None = None
    peak_gib: float | None = None
    status: str = "ok"  # ok | oom | skipped: why | error: what


def repeats(length: int) -> int:
    """Timed calls per case: fewer where one call is long (the spread shrinks as the call grows)."""
    return 5 if length <= 4000 else 3 if length <= 16000 else 1


def parse_lengths(text: str) -> list[int]:
    """"1k,4k,16k,64k,100k" -> [1000, 4000, 16000, 64000, 100000] (k = 1000)."""
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        out.append(int(float(part[:-1]) * 1000) if part.endswith("k") else int(part))
    return out


def _guarded(case: Case, fn: Callable[[Case], None]) -> Case:
    try:
        fn(case)
    except torch.OutOfMemoryError:
        case.status = "oom"
        torch.cuda.empty_cache()
    except Exception as exc:  # one failing case must not lose the others' numbers; the table shows why
        case.status = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        log.exception("%s %s at %d failed", case.model, case.mode, case.length)
    return case


# ------------------------------------------------------------------------------------------- OmniMamba
@torch.no_grad()
def omnimamba_cases(lengths: list[int], config: OmniMambaConfig, device: torch.device,
                    dtype: torch.dtype = torch.bfloat16, new_tokens: int = NEW_TOKENS) -> list[Case]:
    model = random_model(config, device, dtype)
    # the language model alone, like the Transformer it is compared with: the vision towers and the VQ
    # (unused by text decoding) leave the GPU; the image-chat LoRA is merged into in_proj
    model.vision_backbone.to("cpu")
    model.llm_backbone.vqvae.to("cpu")
    model.merge_lora(tasks=("mmu",), release_unmerged=True)
    runner = ModelRunner(model)
    graph = runner.graph_for(GraphKey("mmu", 1, False, False))
    table = model.backbone.embedding.weight
    token = torch.zeros(1, dtype=torch.long, device=device)

    def step() -> None:  # embed the last token (no position table: it ends at 1,500), 48 layers, head, argmax
        logits = model.mamba.step_logits(torch.nn.functional.embedding(token, table), "mmu", graph.state)
        token.copy_(logits.argmax(-1))
    run_step = StaticGraph(step, [], runner.pool) if runner.use_cuda_graphs else step

    def measure(case: Case) -> None:
        ids = torch.randint(0, config.text_vocab_size, (1, case.length), device=device)
        graph.load_state(None)
        reset_peak(device)

        def prefill() -> None:
            graph.load_state(None)
            start = 0
            for size in power_of_two_pieces(case.length) if runner.use_cuda_graphs else [case.length]:
                piece = model.backbone.embedding(ids[:, start:start + size])
                (graph.prefix_piece(size) if runner.use_cuda_graphs
                 else lambda e: model.backbone(e, "mmu", graph.state))(piece)
                start += size
        # the untimed call records the pieces' graphs (once per piece length) and compiles kernels
        case.ttft_s = median_time(prefill, repeats(case.length), warmup=1, device=device)
        seconds = median_time(lambda: [run_step() for _ in range(new_tokens)], repeats(case.length), device=device)
        case.ms_per_token = 1000 * seconds / new_tokens
        case.peak_gib = peak_gib(device)
    return [_guarded(Case("OmniMamba", "recurrent state", length), measure) for length in lengths]


# ------------------------------------------------------------------------------------------- Transformer
def phi_model(device: torch.device, dtype: torch.dtype, max_positions: int, **overrides):
    from transformers import PhiConfig, PhiForCausalLM

    cfg = PhiConfig(**{**PHI_1_5, **overrides}, max_position_embeddings=max_positions)
    cfg._attn_implementation = "sdpa"
    return PhiForCausalLM(cfg).to(device=device, dtype=dtype).eval()


@torch.no_grad()
def transformer_cases(lengths: list[int], device: torch.device, dtype: torch.dtype = torch.bfloat16,
                      new_tokens: int = NEW_TOKENS, modes: tuple[str, ...] = ("static+compile", "no cache", "dynamic"),
                      compile_lengths: list[int] | None = None, deadline: float | None = None,
                      on_case: Callable[[list[Case]], None] | None = None, **overrides) -> list[Case]:
    """Every mode at every length (the modes in order of interest: a deadline cuts the last ones);
    `deadline` (time.monotonic()) skips the cases that start after it; `on_case` sees the list after each."""
    model = phi_model(device, dtype, max(lengths) + new_tokens + 8, **overrides)
    vocab = model.config.vocab_size
    cases: list[Case] = []
    for mode in modes:
        slow = False
        for length in lengths:
            case = Case("Transformer (Phi-1.5 shape)", mode, length)
            if deadline is not None and time.monotonic() > deadline:
                case.status = "skipped: time budget"
            elif mode == "static+compile" and compile_lengths is not None and length not in compile_lengths:
                case.status = ("skipped: one compile per cache length; measured at "
                               + ", ".join(map(str, compile_lengths)))
            elif mode == "no cache" and slow:
                case.status = f"skipped: over {NO_CACHE_BUDGET_S:.0f} s per run at a shorter length"
            else:
                ids = torch.randint(0, vocab, (1, length), device=device)
                _guarded(case, lambda c: _transformer_case(model, ids, mode, new_tokens, c))
                slow = mode == "no cache" and case.ms_per_token is not None and (
                    case.ms_per_token * new_tokens / 1000 * 4 > NO_CACHE_BUDGET_S)
            cases.append(case)
            if on_case:
                on_case(cases)
    return cases


def _transformer_case(model, ids: torch.Tensor, mode: str, new_tokens: int, case: Case) -> None:
    device = ids.device
    if mode == "no cache":
        seq = [ids]

        def next_token() -> None:  # the whole sequence again, for one more token
            logits = model(seq[0], use_cache=False, logits_to_keep=1).logits
            seq[0] = torch.cat([seq[0], logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        next_token()  # untimed: this shape's kernels and plans (the sequence is one token longer: no matter)
        reset_peak(device)
        case.ttft_s = timed(next_token, device)
        n = max(1, min(new_tokens, 4) - 1)
        case.ms_per_token = 1000 * timed(lambda: [next_token() for _ in range(n)], device) / n
        case.peak_gib = peak_gib(device)
        return
    # a static cache makes transformers compile the decode step itself (mode "reduce-overhead": CUDA graphs).
    # One cache of one length serves every call of the case: a cache sized per call (prompt + n) would give
    # T(1) and T(N) two lengths, so two compiles, and past dynamo's recompile limit an uncompiled step.
    cache = static_cache(model, ids.shape[1] + new_tokens) if mode == "static+compile" else None

    def generate(n: int):
        if cache is not None:
            cache.reset()
        return model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0,
                              past_key_values=cache)
    # each shape's untimed call compiles (static cache: once per cache length) and plans cuBLAS
    t = generation_timing(generate, new_tokens, repeats(ids.shape[1]), device)
    case.ttft_s, case.ms_per_token, case.peak_gib = t["first_token_s"], t["decode_ms"], t["peak_gib"]


def static_cache(model, max_cache_len: int):
    """transformers' StaticCache of `max_cache_len` positions (its constructor changed in transformers 5)."""
    from transformers import StaticCache

    try:
        return StaticCache(config=model.config, max_cache_len=max_cache_len)
    except TypeError:  # transformers 4.x
        return StaticCache(config=model.config, max_batch_size=1, max_cache_len=max_cache_len,
                           device=model.device, dtype=model.dtype)


# ------------------------------------------------------------------------------------------- report
def floors(cases: list[Case], copy_gbs: float | None, omnimamba_bytes: int, phi_bytes: int) -> dict:
    """Bandwidth floor per token: weights (+ the KV cache for the Transformer) read once at copy speed."""
    if not copy_gbs:
        return {}
    kv_per_token = 2 * PHI_1_5["num_hidden_layers"] * PHI_1_5["hidden_size"] * 2  # bf16 K and V
    out = {}
    for c in cases:
        if c.ms_per_token is None:
            continue
        moved = omnimamba_bytes if c.model == "OmniMamba" else phi_bytes + kv_per_token * c.length
        floor_ms = moved / (copy_gbs * 1e9) * 1000
        out[f"{c.model}|{c.mode}|{c.length}"] = {"floor_ms": floor_ms, "fraction_of_floor": floor_ms / c.ms_per_token}
    return out


def markdown_table(cases: list[Case]) -> str:
    lengths = sorted({c.length for c in cases})
    rows = sorted({(c.model, c.mode) for c in cases}, key=lambda r: (r[0] != "OmniMamba", r))
    head = "| model | mode | " + " | ".join(f"L={n:,}" for n in lengths) + " |"
    lines = [head, "|" + " --- |" * (len(lengths) + 2)]
    for metric, unit in (("ms_per_token", "ms/token"), ("peak_gib", "peak GiB"), ("ttft_s", "prefill s")):
        for model, mode in rows:
            cells = []
            for n in lengths:
                c = next((c for c in cases if (c.model, c.mode, c.length) == (model, mode, n)), None)
                value = getattr(c, metric) if c else None
                cells.append(f"{value:.3g}" if value is not None else (c.status.split(":")[0] if c else ""))
            lines.append(f"| {model} | {mode}, {unit} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(cases: list[Case], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for metric, label, name in (("ms_per_token", "decode ms/token", "decode_ms_per_token.png"),
                                ("peak_gib", "peak GPU memory (GiB)", "peak_memory.png")):
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
        for model, mode in sorted({(c.model, c.mode) for c in cases}):
            pts = [(c.length, getattr(c, metric)) for c in cases
                   if (c.model, c.mode) == (model, mode) and getattr(c, metric) is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=f"{model}: {mode}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
        else:  # e.g. no GPU memory numbers on a CPU run
            ax.text(0.5, 0.5, "not measured on this device", ha="center", transform=ax.transAxes)
        fig.tight_layout()
        path = out_dir / name
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def run(lengths: str | list[int], out_dir: str | Path, device: str | torch.device | None = None,
        config: OmniMambaConfig | None = None, phi_overrides: dict | None = None,
        compile_lengths: list[int] | None = None, new_tokens: int = NEW_TOKENS,
        budget_s: float | None = None) -> dict:
    """Measure every case, writing long_context.json after each model, then the two plots and a table
    (long_context.md) into out_dir. `budget_s`: Transformer cases that would start later are skipped."""
    deadline = None if budget_s is None else time.monotonic() + budget_s
    lengths = parse_lengths(lengths) if isinstance(lengths, str) else list(lengths)
    device = torch.device(device or "cuda")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = config or OmniMambaConfig.official()
    copy_gbs = copy_bandwidth_gbs() if device.type == "cuda" else None
    result = {
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "versions": versions(), "lengths": lengths, "new_tokens": new_tokens, "copy_gbs": copy_gbs,
        "compile_lengths": compile_lengths, "repeats": {n: repeats(n) for n in lengths}, "budget_s": budget_s,
    }
    cases = omnimamba_cases(lengths, config, device, new_tokens=new_tokens)
    _write(out_dir, result, cases, config, phi_overrides)
    reset_peak(device)  # the OmniMamba model is gone with its function; free its cached blocks
    modes = ("static+compile", "no cache", "dynamic") if device.type == "cuda" else ("no cache", "dynamic")
    done = list(cases)
    cases += transformer_cases(lengths, device, new_tokens=new_tokens, modes=modes, compile_lengths=compile_lengths,
                               deadline=deadline, on_case=lambda tf: _write(out_dir, result, done + tf, config,
                                                                            phi_overrides),
                               **(phi_overrides or {}))
    result = _write(out_dir, result, cases, config, phi_overrides)
    result["plots"] = [str(p) for p in plot(cases, out_dir)]
    table = markdown_table(cases)
    (out_dir / "long_context.md").write_text(f"# Long context on {result['gpu']}\n\n{table}\n")
    print(table)
    return result


def _write(out_dir: Path, result: dict, cases: list[Case], config: OmniMambaConfig,
           phi_overrides: dict | None) -> dict:
    result = {**result, "cases": [asdict(c) for c in cases],
              "floors": floors(cases, result["copy_gbs"], _omnimamba_step_bytes(config),
                               _phi_bytes(phi_overrides or {}))}
    (out_dir / "long_context.json").write_text(json.dumps(result, indent=1))
    return result


def _omnimamba_step_bytes(config: OmniMambaConfig) -> int:
    """bf16 bytes a batch-1 chat decode step reads (sizes from a model on the meta device: no memory)."""
    with torch.device("meta"):
        model = OmniMamba(config).to(torch.bfloat16).merge_lora(tasks=("mmu",))
    return step_bytes(model, "mmu")


def _phi_bytes(overrides: dict) -> int:
    p = {**PHI_1_5, **overrides}
    h, inter = p["hidden_size"], p["intermediate_size"]
    per_layer = 4 * h * h + 2 * h * inter
    return 2 * (p["num_hidden_layers"] * per_layer + p["vocab_size"] * h)


if __name__ == "__main__":
    import argparse

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for long_context.json, plots, table")
    parser.add_argument("--lengths", default="1k,4k,16k,64k,100k")
    parser.add_argument("--compile-lengths", default=None, help="lengths for static+compile (default: all)")
    parser.add_argument("--budget-s", type=float, default=None, help="skip Transformer cases starting later")
    args = parser.parse_args()
    run(args.lengths, args.out, compile_lengths=parse_lengths(args.compile_lengths) if args.compile_lengths else None,
        budget_s=args.budget_s)
