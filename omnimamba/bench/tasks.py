"""Task benchmarks on the GPU: what a user waits for, ours beside stock mamba-ssm on the same weights.

  * decode ms/token (batch 1, sampling, guidance = batch 2, four images with guidance = batch 8, image chat)
  * one image (prefill + 255 steps + VQ decode), four images with guidance, a 128-token image-chat answer:
    seconds, tokens/s and peak VRAM
  * image-chat time to first token (vision towers + 760-token prefill + first token), and its parts
  * where a decode step's time goes (one layer's kernels), with each way of doing its matrix-vector products
  * the memory-bandwidth floor: weight bytes a step must read / measured device copy bandwidth
Random weights (timing does not depend on values); the stock model gets a copy of ours (image-chat task).

    python -m omnimamba bench --tasks
"""
from __future__ import annotations

import logging
from typing import Callable

import torch
import torch.nn.functional as F

from ..config import OmniMambaConfig
from ..generation import GraphKey, ModelRunner, chat_tokens, image_tokens
from ..model import kernels
from ..model.init import random_model
from ..sampling import SamplingParams
from .timing import copy_bandwidth_gbs, graph_us, median_time, step_bytes

log = logging.getLogger(__name__)
GREEDY = SamplingParams()


def task(fn: Callable[[], object], tokens: int, repeat: int = 3) -> dict:
    """Seconds, tokens/s and peak VRAM of one user-visible task."""
    fn()  # warm-up: graph capture, Triton compilation
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    seconds = median_time(fn, repeat=repeat, warmup=0)
    return {"s": seconds, "tokens_per_s": tokens / seconds, "peak_gib": torch.cuda.max_memory_allocated() / 2**30}


def decode_ms_per_step(runner: ModelRunner, key: GraphKey, steps: int = 128) -> float:
    """Replays of one captured decode graph (state contents do not matter for timing)."""
    graph = runner.graph_for(key)
    position = 100 if key.task == "t2i" else 800  # any valid row of the position table

    def run() -> None:
        graph.position.fill_(position)
        for _ in range(steps):
            graph.step(None)
    return 1000 * median_time(run) / steps


@torch.no_grad()
def layer_breakdown(model, task_name: str = "t2i", gemv: kernels.Gemv = "auto") -> dict:
    """One layer's decode kernels alone, in a CUDA graph (microseconds). Repeated calls hit L2 for weights
    that fit (50 MB): read as relative costs, the whole-step numbers are the ones that count."""
    layer, cfg = model.backbone.layers[0], model.config
    mixer = layer.mixer
    hidden = torch.randn(1, cfg.d_model, device="cuda", dtype=model.dtype)
    residual, residual_out = torch.zeros(2, 1, cfg.d_model, device="cuda")
    state = model.new_state(1).layer(0)
    weight = mixer.in_proj.decode_weight(task_name)
    zx = F.linear(hidden, weight)
    ssm_args = (zx, state.conv, mixer.conv_weight, mixer.conv1d.bias, state.ssm, mixer.dt_bias, mixer.A_log,
                mixer.D, cfg.d_inner, cfg.d_state, cfg.headdim)
    g = kernels.ssm_step(*ssm_args)
    return {
        "norm + in_proj": graph_us(lambda: kernels.norm_linear(hidden, residual, residual_out, layer.norm.weight,
                                                               weight, 1e-5, gemv=gemv)),
        "ssm step": graph_us(lambda: kernels.ssm_step(*ssm_args)),
        "gated norm + out_proj": graph_us(lambda: kernels.gated_norm_linear(
            g, mixer.norm.weight, mixer.out_proj.weight, 1e-5, zx, state.conv, cfg.d_inner, cfg.d_state, gemv)),
        "whole layer": graph_us(lambda: layer.step(hidden, residual, residual_out, task_name, state, gemv)),
    }


def decode_variants(model) -> dict:
    """Decode ms/token with each way of doing the step's matrix-vector products (the model's decode_gemv)."""
    out = {}
    saved = model.mamba.decode_gemv
    try:
        for mode in ("fused", "cublas"):
            model.mamba.decode_gemv = mode
            runner = ModelRunner(model)
            out[mode] = {name: decode_ms_per_step(runner, key) for name, key in [
                ("t2i batch 1", GraphKey("t2i", 1, False, False)), ("chat batch 1", GraphKey("mmu", 1, False, False)),
                ("guidance batch 2", GraphKey("t2i", 1, False, True)),
                ("4 images + guidance batch 8", GraphKey("t2i", 4, False, True))]}
            out[mode]["layer_us"] = layer_breakdown(model, gemv=mode)
            del runner
    finally:
        model.mamba.decode_gemv = saved
    return out


@torch.no_grad()
def ours(model, runner: ModelRunner) -> dict:
    cfg = model.config
    res: dict = {"decode_ms": {name: decode_ms_per_step(runner, key) for name, key in [
        ("t2i batch 1", GraphKey("t2i", 1, False, False)), ("t2i batch 1 sampling", GraphKey("t2i", 1, True, False)),
        ("guidance batch 2", GraphKey("t2i", 1, False, True)), ("4 images + guidance batch 8", GraphKey("t2i", 4, False, True)),
        ("chat batch 1", GraphKey("mmu", 1, False, False))]}}
    prefix = torch.randint(0, 50000, (1, cfg.t2i_prefix_len), device="cuda")

    def images(batch: int, scale: float) -> None:
        ids = prefix.expand(batch, -1)
        for step in image_tokens(runner, ids, GREEDY, scale, ids if scale != 1.0 else None, report_every=0):
            if step.done:
                model.decode_images(step.tokens)
    pixels = {k: torch.randn(1, 3, 384, 384, device="cuda") for k in ("dino", "siglip")}
    text = torch.randint(0, 50000, (1, 27), device="cuda")  # 733 + 27 = a 760-token prompt

    def chat(new_tokens: int) -> None:
        embeds = model.embed_mmu(text, runner.image_features(pixels))
        for _ in chat_tokens(runner, model.new_state(1), embeds, GREEDY, new_tokens):
            pass
    res["tasks"] = {"one image": task(lambda: images(1, 1.0), 256),
                    "four images, guidance": task(lambda: images(4, 3.0), 4 * 256),
                    "chat answer, 128 tokens": task(lambda: chat(128), 128)}
    res["chat_ttft_ms"] = 1000 * median_time(lambda: chat(1))
    res["vision_ms"] = 1000 * median_time(lambda: runner.image_features(pixels))
    res["vision_eager_ms"] = 1000 * median_time(lambda: model.image_features(pixels))
    embeds = model.embed_mmu(text, model.image_features(pixels))
    graph = runner.graph_for(GraphKey("mmu", 1, False, False))

    def graphed_prefill() -> None:
        graph.load_state(None)
        graph.prefill(embeds, None)
    res["prefill_760_ms"] = 1000 * median_time(graphed_prefill)
    res["prefill_760_eager_ms"] = 1000 * median_time(lambda: model.backbone(embeds, "mmu", model.new_state(1)))
    with kernels.reference_only():
        res["prefill_760_reference_ms"] = 1000 * median_time(lambda: model.backbone(embeds, "mmu", model.new_state(1)),
                                                           repeat=3)
    return res


def stock_model_from(model):
    """mamba_ssm's MambaLMHeadModel holding our backbone's weights (image-chat LoRA merged into in_proj)."""
    from mamba_ssm.models.config_mamba import MambaConfig
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel

    cfg = model.config
    mcfg = MambaConfig(d_model=cfg.d_model, n_layer=cfg.n_layer, vocab_size=cfg.text_vocab_size,
                       ssm_cfg={"layer": "Mamba2"}, rms_norm=True, residual_in_fp32=True, fused_add_norm=True,
                       pad_vocab_size_multiple=cfg.pad_vocab_size_multiple)
    stock = MambaLMHeadModel(mcfg, device="cuda", dtype=model.dtype).eval()
    ours_sd = model.mamba.state_dict()
    sd = {}
    for key in stock.state_dict():
        if key.endswith("mixer.in_proj.weight"):
            layer = int(key.split(".")[2])
            sd[key] = model.backbone.layers[layer].mixer.in_proj.decode_weight("mmu")
        else:
            sd[key] = ours_sd[key]
    stock.load_state_dict(sd, strict=True)
    return stock


@torch.no_grad()
def stock_mamba_ssm(model, new_tokens: int = 256) -> dict:
    """The baseline: mamba_ssm generate(cg=True) on our weights, for the same tasks."""
    try:
        stock = stock_model_from(model)
    except Exception as exc:
        return {"error": f"mamba_ssm unavailable: {type(exc).__name__}: {exc}"}
    try:
        return _stock_tasks(stock, new_tokens)
    except Exception as exc:  # keep our own numbers if the baseline breaks
        log.exception("stock mamba_ssm baseline failed")
        return {"error": f"{type(exc).__name__}: {exc}"}


def _stock_tasks(stock, new_tokens: int) -> dict:
    prompt = torch.randint(0, 50000, (8, 760), device="cuda")

    def gen(batch: int, prompt_len: int, n: int) -> None:
        stock._decoding_cache = None  # its graph cache does not survive a change of batch size
        stock.generate(prompt[:batch, :prompt_len].contiguous(), max_length=prompt_len + n, cg=True, top_k=1)
    out: dict = {"decode_ms": {}}
    for batch, name in ((1, "t2i batch 1"), (2, "guidance batch 2"), (8, "4 images + guidance batch 8")):
        full = median_time(lambda: gen(batch, 72, new_tokens), repeat=3)
        one = median_time(lambda: gen(batch, 72, 1), repeat=3)
        out["decode_ms"][name] = 1000 * (full - one) / (new_tokens - 1)
    out["decode_ms"]["chat batch 1"] = out["decode_ms"]["t2i batch 1"]
    out["tasks"] = {"one image": task(lambda: gen(1, 72, 256), 256),  # no VQ decode: a lower bound
                    "four images, guidance": task(lambda: gen(8, 72, 256), 4 * 256),
                    "chat answer, 128 tokens": task(lambda: gen(1, 760, 128), 128)}  # no vision: a lower bound
    out["prefill_760_ms"] = 1000 * median_time(lambda: gen(1, 760, 1))
    return out


def run(dtype: torch.dtype = torch.bfloat16, baseline: bool = True) -> dict:
    if not torch.cuda.is_available():
        raise SystemExit("the benchmark needs a CUDA GPU")
    cfg = OmniMambaConfig.official()
    result = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "dtype": str(dtype),
              "backends": kernels.backends("cuda"), "copy_gbs": copy_bandwidth_gbs()}
    model = random_model(cfg, "cuda", dtype).merge_lora(release_unmerged=True)  # as the engine serves it
    runner = ModelRunner(model)
    result["ours"] = ours(model, runner)
    result["floor_ms"] = {t: step_bytes(model, t) / (result["copy_gbs"] * 1e9) * 1000 for t in ("t2i", "mmu")}
    result["decode_variants"] = decode_variants(model)
    del runner
    torch.cuda.empty_cache()
    if baseline:
        result["stock_mamba_ssm"] = stock_mamba_ssm(model)
    print_table(result)
    return result


def print_table(r: dict) -> None:
    o, s = r["ours"], r.get("stock_mamba_ssm", {})
    print(f"\n{r['gpu']}  torch {r['torch']}  {r['dtype']}  copy {r['copy_gbs']:.0f} GB/s; kernels: {r['backends']}")
    print(f"bandwidth floor per token: image {r['floor_ms']['t2i']:.3f} ms, chat {r['floor_ms']['mmu']:.3f} ms")
    print(f"{'decode, ms per step':36s} {'ours':>9s} {'mamba_ssm':>10s} {'speed-up':>9s} {'of floor':>9s}")
    for name, mine in o["decode_ms"].items():
        theirs = s.get("decode_ms", {}).get(name)
        floor = r["floor_ms"]["mmu" if "chat" in name else "t2i"] if "batch 1" in name else None
        print(f"{name:36s} {mine:9.3f} {_fmt(theirs):>10s} {_ratio(theirs, mine):>9s} "
              f"{(f'{floor / mine:8.0%}' if floor else ''):>9s}")
    print(f"{'task':36s} {'ours s':>9s} {'tok/s':>8s} {'GiB':>6s} {'stock s':>9s} {'tok/s':>8s} {'GiB':>6s} {'speed-up':>9s}")
    for name, mine in o["tasks"].items():
        theirs = s.get("tasks", {}).get(name, {})
        print(f"{name:36s} {mine['s']:9.3f} {mine['tokens_per_s']:8.0f} {mine['peak_gib']:6.2f} "
              f"{_fmt(theirs.get('s')):>9s} {_fmt(theirs.get('tokens_per_s'), 0):>8s} {_fmt(theirs.get('peak_gib'), 2):>6s} "
              f"{_ratio(theirs.get('s'), mine['s']):>9s}")
    print(f"image-chat time to first token {o['chat_ttft_ms']:.1f} ms = vision {o['vision_ms']:.1f} ms "
          f"(eager {o['vision_eager_ms']:.1f}) + prefill of 760 {o['prefill_760_ms']:.1f} ms "
          f"(eager {o['prefill_760_eager_ms']:.1f}, pure PyTorch {o['prefill_760_reference_ms']:.1f}, "
          f"stock {_fmt(s.get('prefill_760_ms'), 1)})")
    for mode, v in r["decode_variants"].items():
        print(f"decode GEMV {mode}: " + ", ".join(f"{k} {x:.3f} ms" for k, x in v.items() if k != "layer_us")
              + " | one layer, us: " + ", ".join(f"{k} {x:.1f}" for k, x in v["layer_us"].items()))


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _ratio(theirs: float | None, mine: float) -> str:
    return "" if theirs is None else f"{theirs / mine:.2f}x"
