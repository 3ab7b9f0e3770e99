"""Task benchmark: what a user waits for, ours beside stock mamba-ssm on the same weights, timed the same way.

Both sides, for the same four shapes (model rows x prompt length -> new tokens), are timed by one function,
`timing.generation_timing`: one untimed call of each exact shape, the median of 5 synchronised calls,
T(1) = prefill + first token, T(N) = all N tokens, decode ms/step = (T(N) - T(1)) / (N - 1).
  * image, batch 1: 72-token prompt -> 256 image tokens (ours through `image_tokens`, greedy)
  * image + guidance: 2 rows (prompt and unconditional) -> 256 tokens; four images + guidance: 8 rows
  * chat: a 760-token prompt (729 image features + text) -> 128 tokens (ours through `chat_tokens`, which
    reads every token on the host to stream it; stock gets 760 random token ids)
Those are the comparable parts: stock has no image head, VQ decoder or vision towers. Ours' remaining parts
(VQ decode, vision towers) and the whole user-visible tasks are timed separately, with the same helper.
Also: the step graph alone (replays, no loop) against the bandwidth floor, one layer's kernels, the prefill
without graphs and in pure PyTorch. Random weights (timing does not depend on values).

    python -m omnimamba.bench.tasks --out DIR                 (writes DIR/tasks.json)
    python -m omnimamba.bench.tasks --out DIR --decode-only   (the decode step's variants alone: DIR/decode.json)
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
from pathlib import Path
from typing import Callable

import torch

from ..config import OmniMambaConfig
from ..generation import GraphKey, ModelRunner, chat_tokens, image_tokens
from ..model import kernels
from ..model.init import random_model
from ..sampling import SamplingParams
from . import stock as stock_baseline
from .timing import environment, generation_timing, graph_us, median_time, peak_gib, reset_peak, step_bytes

log = logging.getLogger(__name__)
GREEDY = SamplingParams()
CHAT_TEXT = 27  # text ids after the 729 image features of the official config: a 760-token prompt
CHAT_NEW = 128
# name -> (our decode graph, guidance scale); rows, prompt length and new tokens follow from the config
SHAPES = {"image, batch 1": (GraphKey("t2i", 1, False, False), 1.0),
          "image + guidance, batch 2": (GraphKey("t2i", 1, False, True), 3.0),
          "4 images + guidance, batch 8": (GraphKey("t2i", 4, False, True), 3.0),
          "chat, batch 1": (GraphKey("mmu", 1, False, False), 1.0)}


class OurTasks:
    """Our side's generation, each a `generate(n)` for `generation_timing`, and the parts stock lacks."""

    def __init__(self, model, runner: ModelRunner, chat_text: int = CHAT_TEXT):
        self.model, self.runner, cfg = model, runner, model.config
        dev = model.device
        g = torch.Generator(device=dev).manual_seed(0)
        self.prefix = torch.randint(0, 50000, (4, cfg.t2i_prefix_len), device=dev, generator=g)
        size = cfg.vision.image_size
        self.pixels = {k: torch.randn(1, 3, size, size, device=dev, generator=g) for k in ("dino", "siglip")}
        self.text = torch.randint(0, 50000, (1, chat_text), device=dev, generator=g)
        self.embeds = model.embed_mmu(self.text, runner.image_features(self.pixels))
        self.chat_stopped_early = False

    def shape(self, name: str, chat_new: int = CHAT_NEW) -> tuple[int, int, int]:
        """(model rows, prompt length, new tokens) of a shape."""
        key, _ = SHAPES[name]
        if key.task == "mmu":
            return 1, self.embeds.shape[1], chat_new
        cfg = self.model.config
        return key.batch * (2 if key.guidance else 1), cfg.t2i_prefix_len, cfg.num_image_tokens

    def generator(self, name: str) -> Callable[[int], None]:
        key, scale = SHAPES[name]
        if key.task == "mmu":
            return self.chat_from_embeds
        ids = self.prefix[:key.batch]

        def image(n: int) -> None:  # n = 1 stops after the prefill's token, n = all tokens runs to the end
            steps = image_tokens(self.runner, ids, GREEDY, scale, ids if key.guidance else None, report_every=0)
            for step in steps:
                if step.tokens.shape[1] >= n:
                    break
            steps.close()
        return image

    def chat_from_embeds(self, n: int, embeds: torch.Tensor | None = None) -> None:
        produced = sum(1 for _ in chat_tokens(self.runner, self.model.new_state(1),
                                              self.embeds if embeds is None else embeds, GREEDY, n))
        self.chat_stopped_early |= produced < n  # an end-of-text token: the figure would be too short

    def images_with_vq(self, batch: int, scale: float) -> None:
        ids = self.prefix[:batch]
        for step in image_tokens(self.runner, ids, GREEDY, scale, ids if scale != 1.0 else None, report_every=0):
            if step.done:
                self.model.decode_images(step.tokens)

    def chat_with_vision(self, n: int) -> None:
        self.chat_from_embeds(n, self.model.embed_mmu(self.text, self.runner.image_features(self.pixels)))


def task(fn: Callable[[], object], tokens: int, repeat: int, device: torch.device) -> dict:
    """A whole user-visible task: one untimed call, median of `repeat`, tokens/s, peak VRAM."""
    fn()
    reset_peak(device)
    seconds = median_time(fn, repeat=repeat, warmup=0, device=device)
    return {"s": seconds, "tokens_per_s": tokens / seconds, "peak_gib": peak_gib(device)}


def replay_ms_per_step(runner: ModelRunner, key: GraphKey, steps: int = 128, repeat: int = 5) -> float:
    """The captured step graph alone, replayed back to back (no loop, no host reads): the step's own cost."""
    graph = runner.graph_for(key)
    cfg = runner.model.config  # start at a valid row of the position table with room for every step
    position = cfg.t2i_prefix_len if key.task == "t2i" else min(800, cfg.mmu_positions - steps - 1)

    def run() -> None:
        graph.position.fill_(position)
        for _ in range(steps):
            graph.step(None)
    return 1000 * median_time(run, repeat, device=runner.model.device) / steps


@torch.no_grad()
def ours(model, runner: ModelRunner, repeat: int = 5, chat_new: int = CHAT_NEW, replay_steps: int = 128) -> dict:
    """Our side: the four shapes' generation, the step graph alone, VQ decode, vision, the whole tasks."""
    dev, t = model.device, OurTasks(model, runner)
    ms = lambda fn, r=repeat: 1000 * median_time(fn, r, device=dev)  # noqa: E731
    res: dict = {"shapes": {name: t.shape(name, chat_new) for name in SHAPES}}
    res["generation"] = {name: generation_timing(t.generator(name), res["shapes"][name][2], repeat, dev)
                         for name in SHAPES}
    res["chat_stopped_early"] = t.chat_stopped_early
    keys = {name: key for name, (key, _) in SHAPES.items()}
    keys["image, batch 1, sampling"] = GraphKey("t2i", 1, True, False)
    res["replay_ms"] = {name: replay_ms_per_step(runner, key, replay_steps, repeat) for name, key in keys.items()}
    tokens = torch.randint(0, model.config.image_vocab_size, (4, model.config.num_image_tokens), device=dev)
    res["vq_decode_ms"] = {str(b): ms(lambda: model.decode_images(tokens[:b])) for b in (1, 4)}
    res["vision_ms"] = ms(lambda: runner.image_features(t.pixels))
    res["vision_eager_ms"] = ms(lambda: model.image_features(t.pixels))
    n_img = model.config.num_image_tokens
    res["tasks"] = {"one image": task(lambda: t.images_with_vq(1, 1.0), n_img, repeat, dev),
                    "four images, guidance": task(lambda: t.images_with_vq(4, 3.0), 4 * n_img, repeat, dev),
                    "chat answer": task(lambda: t.chat_with_vision(chat_new), chat_new, repeat, dev)}
    res["chat_ttft_ms"] = ms(lambda: t.chat_with_vision(1))
    res["prefill_eager_ms"] = ms(lambda: model.backbone(t.embeds, "mmu", model.new_state(1)))
    with kernels.reference_only():
        res["prefill_reference_ms"] = ms(lambda: model.backbone(t.embeds, "mmu", model.new_state(1)), min(repeat, 3))
    return res


@torch.no_grad()
def layer_breakdown(model, task_name: str = "t2i", gemv: kernels.Gemv = "auto") -> dict:
    """One layer's decode kernels alone, in a CUDA graph (microseconds). Repeated calls hit L2 for weights
    that fit (50 MB): read as relative costs, the whole-step numbers are the ones that count."""
    layer, cfg = model.backbone.layers[0], model.config
    mixer = layer.mixer
    hidden = torch.randn(1, cfg.d_model, device="cuda", dtype=model.dtype)
    residual, residual_out = torch.randn(2, 1, cfg.d_model, device="cuda")
    state = model.new_state(1).layer(0)
    weight = mixer.decode_in_weight(task_name)
    zx = kernels.norm_linear(hidden, None, None, layer.norm.weight, weight, 1e-5, gemv=gemv)
    ssm_args = (zx, state.conv, mixer.conv_weight, mixer.conv1d.bias, state.ssm, mixer.dt_bias, mixer.A_log,
                mixer.D, cfg.d_inner, cfg.d_state, cfg.headdim)
    g = kernels.ssm_step(*ssm_args, gemv=gemv)
    return {
        "norm + in_proj": graph_us(lambda: kernels.norm_linear(hidden, residual, residual_out, layer.norm.weight,
                                                               weight, 1e-5, gemv=gemv)),
        "ssm step": graph_us(lambda: kernels.ssm_step(*ssm_args, gemv=gemv)),
        "gated norm + out_proj": graph_us(lambda: kernels.gated_norm_linear(
            g, mixer.norm.weight, mixer.decode_out_weight(), 1e-5, zx, state.conv, cfg.d_inner, cfg.d_state, gemv)),
        "whole layer": graph_us(lambda: layer.step(hidden, residual, residual_out, task_name, state, gemv)),
    }


def decode_variants(model) -> dict:
    """Step-graph replay ms with each way of doing the step's matrix-vector products (model's decode_gemv),
    and with 8-bit decode weights (opt-in, `OmniMamba.quantize_decode`)."""
    out = {}
    saved = model.mamba.decode_gemv
    try:
        for mode in ("fused", "fused-serial", "cublas"):
            model.mamba.decode_gemv = mode
            runner = ModelRunner(model)
            out[mode] = {name: replay_ms_per_step(runner, key) for name, (key, _) in SHAPES.items()}
            out[mode]["layer_us"] = layer_breakdown(model, gemv=mode)
            del runner
    finally:
        model.mamba.decode_gemv = saved
    out["batched image steps"] = batched_steps(model)
    model.quantize_decode()
    try:
        runner = ModelRunner(model)
        out["int8 weights"] = {name: replay_ms_per_step(runner, key) for name, (key, _) in SHAPES.items()}
        out["int8 weights"]["layer_us"] = layer_breakdown(model)
        out["int8 weights"]["step_gb"] = bandwidth_floor(model, None)["step_gb"]
        del runner
    finally:
        model.unquantize_decode()
    return out


def batched_steps(model, sizes: tuple[int, ...] = (1, 2, 4, 8, 16), steps: int = 128) -> dict:
    """Step-graph replay ms of a text-to-image step of `size` rows (a batch of requests, no guidance) with our
    fused kernels (from 2 rows on they multiply row by row) and with cuBLAS, timed alike in one run: what the
    batch steps' choice ("auto") rests on."""
    out: dict = {}
    saved = model.mamba.decode_gemv
    try:
        for mode in ("fused", "cublas"):
            model.mamba.decode_gemv = mode
            runner = ModelRunner(model)
            out[mode] = {str(b): replay_ms_per_step(runner, GraphKey("t2i", b, False, False), steps) for b in sizes}
            del runner
    finally:
        model.mamba.decode_gemv = saved
    out["cublas / fused"] = {b: out["cublas"][b] / out["fused"][b] for b in out["fused"]}
    return out


def run(out_dir: Path, baseline: bool = True, dtype: torch.dtype = torch.bfloat16,
        config: OmniMambaConfig | None = None, device: str = "cuda", repeat: int = 5, chat_new: int = CHAT_NEW,
        stock_factory: Callable = stock_baseline.stock_model_from) -> dict:
    """Measure everything, writing DIR/tasks.json after each side (a run cut short keeps what it has).
    config/device/repeat/chat_new/stock_factory exist for the CPU test of these code paths."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("the benchmark needs a CUDA GPU")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "tasks.json"
    cfg = config or OmniMambaConfig.official()
    result = {**environment(dev), "dtype": str(dtype), "backends": kernels.backends(dev.type), "repeat": repeat}
    model = random_model(cfg, dev, dtype).merge_lora(release_unmerged=True)  # as the engine serves it
    runner = ModelRunner(model)
    result["ours"] = ours(model, runner, repeat, chat_new, replay_steps=128 if dev.type == "cuda" else 4)
    result.update(bandwidth_floor(model, result["copy_gbs"]))
    path.write_text(json.dumps(result, indent=1))
    if dev.type == "cuda":
        result["decode_variants"] = decode_variants(model)
        path.write_text(json.dumps(result, indent=1))
    if baseline:
        shapes = {name: tuple(result["ours"]["shapes"][name]) for name in SHAPES}
        try:
            stock = stock_factory(model)
        except Exception as exc:  # no mamba_ssm here: our own numbers still count
            result["stock_mamba_ssm"] = {"error": f"mamba_ssm unavailable: {type(exc).__name__}: {exc}"}
        else:
            del runner, model  # stock's peak memory is its own: ours leaves the GPU first
            gc.collect()
            torch.cuda.empty_cache()
            result["stock_mamba_ssm"] = stock_baseline.stock_tasks(stock, shapes, repeat, dev)
        path.write_text(json.dumps(result, indent=1))
    return result


def bandwidth_floor(model, copy_gbs: float | None) -> dict:
    """GB a batch-1 step reads per task, and the ms that takes at the measured copy bandwidth."""
    step_gb = {t: step_bytes(model, t) / 1e9 for t in ("t2i", "mmu")}
    floor_ms = {t: gb / copy_gbs * 1000 if copy_gbs else None for t, gb in step_gb.items()}
    return {"step_gb": step_gb, "floor_ms": floor_ms}


def decode_only(out_dir: Path, dtype: torch.dtype = torch.bfloat16) -> dict:
    """The step graph in each decode mode and one layer's kernels, against the bandwidth floor (a minute)."""
    dev = torch.device("cuda")
    out_dir.mkdir(parents=True, exist_ok=True)
    model = random_model(OmniMambaConfig.official(), dev, dtype).merge_lora(release_unmerged=True)
    result = {**environment(dev), "dtype": str(dtype)}
    result.update(bandwidth_floor(model, result["copy_gbs"]))
    result["decode_variants"] = decode_variants(model)
    (out_dir / "decode.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for tasks.json")
    parser.add_argument("--no-baseline", action="store_true", help="skip stock mamba-ssm")
    parser.add_argument("--decode-only", action="store_true", help="only the decode step's variants")
    args = parser.parse_args()
    if args.decode_only:
        print(json.dumps(decode_only(args.out), indent=1))
    else:
        run(args.out, baseline=not args.no_baseline)
