"""Task benchmarks on the GPU: decode ms/token, prefill, image-chat time to first token, one image, four
images with guidance, each beside the stock mamba-ssm generate() on the same backbone shape, plus the
memory-bandwidth floor. Random weights (timing does not depend on values). Prints a table, returns a dict.

    python -m omnimamba bench --tasks
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import torch

from .config import OmniMambaConfig
from .generation import Decoder, GraphKey, chat_tokens, image_tokens
from .model import kernels
from .model.init import random_model
from .sampling import SamplingParams

log = logging.getLogger(__name__)


def cuda_time(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> float:
    """Median seconds of fn() over `repeat` runs after `warmup` runs, synchronised."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def copy_bandwidth_gbs(gib: float = 2.0) -> float:
    """Device-to-device copy, bytes read + written per second."""
    src = torch.empty(int(gib * 2**30) // 2, dtype=torch.bfloat16, device="cuda").normal_()
    dst = torch.empty_like(src)
    seconds = cuda_time(lambda: dst.copy_(src), repeat=10, warmup=2)
    return 2 * src.numel() * src.element_size() / seconds / 1e9


def decode_ms_per_step(decoder: Decoder, key: GraphKey, steps: int = 128) -> float:
    """Replays of one captured decode graph (state garbage is fine for timing)."""
    graph = decoder.graph_for(key)
    graph.position.fill_(100 if key.task == "t2i" else 800)  # a valid row of the position table

    def run() -> None:
        graph.position.fill_(100 if key.task == "t2i" else 800)
        for _ in range(steps):
            graph.run(None)
    return 1000 * cuda_time(run, repeat=5) / steps


def weight_bytes_per_step(model, task: str) -> int:
    """Bytes a batch-1 decode step must read: merged in_proj, conv, norms, out_proj of every layer, the head."""
    per_layer = 0
    for layer in model.backbone.layers[:1]:
        mixer = layer.mixer
        tensors = [mixer.in_proj.decode_weight(task), mixer.conv1d.weight, mixer.conv1d.bias, mixer.norm.weight,
                   mixer.out_proj.weight, layer.norm.weight]
        per_layer = sum(t.numel() * t.element_size() for t in tensors)
    head = model.mamba.lm_head.weight if task == "mmu" else model.mamba.img_head.weight
    return per_layer * len(model.backbone.layers) + head.numel() * head.element_size()


def graph_us(fn: Callable[[], object], calls: int = 100) -> float:
    """Microseconds per call of fn, measured as `calls` back-to-back calls replayed from one CUDA graph."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    return 1e6 * cuda_time(graph.replay, repeat=5) / calls


@torch.no_grad()
def layer_breakdown(model, task: str = "t2i", batch: int = 1) -> dict:
    """Where a decode step's time goes: each piece of one layer, alone, in a CUDA graph (microseconds)."""
    import torch.nn.functional as F
    layer, cfg = model.backbone.layers[0], model.config
    mixer = layer.mixer
    hidden = torch.randn(batch, cfg.d_model, device="cuda", dtype=model.dtype)
    residual, residual_out = torch.zeros(2, batch, cfg.d_model, device="cuda")
    state = model.new_state(batch).layer(0)
    weight = mixer.in_proj.decode_weight(task)
    zx = F.linear(hidden, weight)
    g = kernels.ssm_step(zx, state.conv, mixer.conv_weight, mixer.conv1d.bias, state.ssm, mixer.dt_bias,
                         mixer.A_log, mixer.D, cfg.d_inner, cfg.d_state, cfg.headdim)
    head = model.mamba.head_weight(task)
    pieces = {
        "norm + in_proj": lambda: kernels.norm_linear(hidden, residual, residual_out, layer.norm.weight, weight,
                                                       1e-5),
        "in_proj cuBLAS": lambda: F.linear(hidden, weight),
        "ssm_step": lambda: kernels.ssm_step(zx, state.conv, mixer.conv_weight, mixer.conv1d.bias, state.ssm,
                                             mixer.dt_bias, mixer.A_log, mixer.D, cfg.d_inner, cfg.d_state,
                                             cfg.headdim),
        "gated norm + out_proj": lambda: kernels.gated_norm_linear(g, mixer.norm.weight, mixer.out_proj.weight,
                                                                   1e-5, zx, state.conv, cfg.d_inner, cfg.d_state),
        "out_proj cuBLAS": lambda: F.linear(zx[:, :cfg.d_inner].contiguous(), mixer.out_proj.weight),
        "whole layer step": lambda: layer.step(hidden, residual, residual_out, task, state),
        "norm_f + head": lambda: kernels.norm_linear(hidden, residual, None, model.backbone.norm_f.weight, head,
                                                      1e-5, torch.float32),
    }
    return {name: graph_us(fn) for name, fn in pieces.items()}


def ours(model, decoder: Decoder) -> dict:
    cfg = model.config
    greedy = SamplingParams()
    res: dict = {}
    res["decode_t2i_b1_ms"] = decode_ms_per_step(decoder, GraphKey("t2i", 1, False, False))
    res["decode_t2i_b1_sampling_ms"] = decode_ms_per_step(decoder, GraphKey("t2i", 1, True, False))
    res["decode_t2i_cfg_b2_ms"] = decode_ms_per_step(decoder, GraphKey("t2i", 1, False, True))
    res["decode_t2i_cfg_b8_ms"] = decode_ms_per_step(decoder, GraphKey("t2i", 4, False, True))
    res["decode_mmu_b1_ms"] = decode_ms_per_step(decoder, GraphKey("mmu", 1, False, False))
    prefix = torch.randint(0, 50000, (1, cfg.t2i_prefix_len), device="cuda")

    def one_image(batch: int = 1, scale: float = 1.0) -> None:
        ids = prefix.expand(batch, -1)
        for step in image_tokens(decoder, ids, greedy, scale, ids if scale != 1.0 else None, report_every=0):
            if step.done:
                model.decode_images(step.tokens)
    res["t2i_one_image_s"] = cuda_time(one_image)
    res["t2i_four_images_cfg_s"] = cuda_time(lambda: one_image(4, 3.0))
    pixels = {k: torch.randn(1, 3, 384, 384, device="cuda") for k in ("dino", "siglip")}
    text = torch.randint(0, 50000, (1, 27), device="cuda")  # 733 + 27 = a 760-token prompt

    def chat_first_token() -> None:
        embeds = model.embed_mmu(text, decoder.image_features(pixels))
        for _ in chat_tokens(decoder, model.new_state(1), embeds, greedy, 1):
            pass
    with torch.no_grad():
        res["chat_ttft_ms"] = 1000 * cuda_time(chat_first_token)
        res["vision_ms"] = 1000 * cuda_time(lambda: decoder.image_features(pixels))
        res["vision_eager_ms"] = 1000 * cuda_time(lambda: model.image_features(pixels))
        vb = model.vision_backbone
        res["vision_parts_ms"] = {
            "dino": 1000 * cuda_time(lambda: vb.dino_featurizer.forward_intermediates(
                pixels["dino"].to(model.dtype), indices=[22], norm=False, output_fmt="NLC", intermediates_only=True,
                stop_early=True)),
            "siglip": 1000 * cuda_time(lambda: vb.siglip_featurizer.forward_intermediates(
                pixels["siglip"].to(model.dtype), indices=[25], norm=False, output_fmt="NLC",
                intermediates_only=True, stop_early=True)),
            "dino patch_embed": 1000 * cuda_time(lambda: vb.dino_featurizer.patch_embed(pixels["dino"].to(model.dtype))),
            "projector": 1000 * cuda_time(lambda: model.projector(torch.randn(1, 729, 2176, device="cuda",
                                                                              dtype=model.dtype))),
        }
        embeds = model.embed_mmu(text, model.image_features(pixels))
        graph = decoder.graph_for(GraphKey("mmu", 1, False, False))

        def graphed_prefill() -> None:
            graph.load_state(None)
            decoder.prefill(graph, embeds, "mmu", None)
        res["prefill_760_ms"] = 1000 * cuda_time(graphed_prefill)
        res["prefill_760_eager_ms"] = 1000 * cuda_time(lambda: model.backbone(embeds, "mmu", model.new_state(1)))
        with kernels.reference_only():
            res["prefill_760_reference_ms"] = 1000 * cuda_time(lambda: model.backbone(embeds, "mmu", model.new_state(1)))
    res["peak_vram_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return res


def stock_mamba_ssm(cfg: OmniMambaConfig, new_tokens: int = 256) -> dict:
    """mamba_ssm's MambaLMHeadModel.generate(cg=True) on the same backbone shape (the baseline)."""
    try:
        from mamba_ssm.models.config_mamba import MambaConfig
        from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel
    except Exception as exc:
        return {"error": f"mamba_ssm unavailable: {exc}"}
    mcfg = MambaConfig(d_model=cfg.d_model, n_layer=cfg.n_layer, vocab_size=cfg.text_vocab_size,
                       ssm_cfg={"layer": "Mamba2"}, rms_norm=True, residual_in_fp32=True, fused_add_norm=True,
                       pad_vocab_size_multiple=16)
    model = MambaLMHeadModel(mcfg, device="cuda", dtype=torch.bfloat16).eval()
    prompt = torch.randint(0, 50000, (1, 72), device="cuda")
    out: dict = {}
    for batch in (1, 2):
        ids = prompt.expand(batch, -1)

        def gen(n: int) -> None:
            model.generate(ids, max_length=72 + n, cg=True, top_k=1)
        t_full, t_one = cuda_time(lambda: gen(new_tokens), repeat=3), cuda_time(lambda: gen(1), repeat=3)
        out[f"decode_b{batch}_ms"] = 1000 * (t_full - t_one) / (new_tokens - 1)
        if batch == 1:
            out["t2i_256_tokens_s"] = t_full
    long_prompt = torch.randint(0, 50000, (1, 760), device="cuda")
    out["prefill_760_ms"] = 1000 * cuda_time(lambda: model.generate(long_prompt, max_length=761, cg=True, top_k=1))
    del model
    torch.cuda.empty_cache()
    return out


def decode_variants(model) -> dict:
    """Decode ms/token with each way of doing the step's matrix-vector products (kernels.DECODE_GEMV)."""
    out = {}
    saved = kernels.DECODE_GEMV
    try:
        for mode in ("fused", "cublas"):
            kernels.DECODE_GEMV = mode
            decoder = Decoder(model)
            out[mode] = {name: decode_ms_per_step(decoder, key) for name, key in [
                ("t2i_b1", GraphKey("t2i", 1, False, False)), ("mmu_b1", GraphKey("mmu", 1, False, False)),
                ("t2i_cfg_b2", GraphKey("t2i", 1, False, True)), ("t2i_cfg_b8", GraphKey("t2i", 4, False, True))]}
            out[mode]["layer_us"] = layer_breakdown(model)
            del decoder
    finally:
        kernels.DECODE_GEMV = saved
    return out


def run(dtype: torch.dtype = torch.bfloat16, baseline: bool = True) -> dict:
    if not torch.cuda.is_available():
        raise SystemExit("the benchmark needs a CUDA GPU")
    cfg = OmniMambaConfig.official()
    result = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "dtype": str(dtype),
              "backends": kernels.backends("cuda"), "copy_gbs": copy_bandwidth_gbs()}
    model = random_model(cfg, "cuda", dtype)
    decoder = Decoder(model)
    result["ours"] = ours(model, decoder)
    result["layer_breakdown_us"] = layer_breakdown(model)
    result["decode_variants"] = decode_variants(model)
    for task in ("t2i", "mmu"):
        floor_ms = weight_bytes_per_step(model, task) / (result["copy_gbs"] * 1e9) * 1000
        result[f"floor_{task}_ms"] = floor_ms
    del decoder, model
    torch.cuda.empty_cache()
    if baseline:
        result["stock_mamba_ssm"] = stock_mamba_ssm(cfg)
    print_table(result)
    return result


def print_table(r: dict) -> None:
    o, s = r["ours"], r.get("stock_mamba_ssm", {})
    rows = [
        ("decode T2I batch 1, ms/token", o["decode_t2i_b1_ms"], s.get("decode_b1_ms")),
        ("decode T2I batch 1 sampling, ms/token", o["decode_t2i_b1_sampling_ms"], None),
        ("decode T2I guidance (batch 2), ms/step", o["decode_t2i_cfg_b2_ms"], s.get("decode_b2_ms")),
        ("decode T2I 4 images + guidance (batch 8), ms/step", o["decode_t2i_cfg_b8_ms"], None),
        ("decode image chat batch 1, ms/token", o["decode_mmu_b1_ms"], None),
        ("one image (256 tokens + VQ), s", o["t2i_one_image_s"], s.get("t2i_256_tokens_s")),
        ("four images with guidance, s", o["t2i_four_images_cfg_s"], None),
        ("image chat time to first token (vision + 760 prefill), ms", o["chat_ttft_ms"], None),
        ("vision towers + projector (CUDA graph), ms", o["vision_ms"], None),
        ("vision towers + projector (eager), ms", o["vision_eager_ms"], None),
        ("prefill 760 tokens (graphed pieces), ms", o["prefill_760_ms"], s.get("prefill_760_ms")),
        ("prefill 760 tokens (eager), ms", o["prefill_760_eager_ms"], None),
        ("prefill 760 tokens, pure PyTorch reference, ms", o["prefill_760_reference_ms"], None),
    ]
    print(f"\n{r['gpu']}  torch {r['torch']}  {r['dtype']}  copy {r['copy_gbs']:.0f} GB/s")
    print(f"kernels: {r['backends']}")
    print(f"bandwidth floor per token: T2I {r['floor_t2i_ms']:.3f} ms, chat {r['floor_mmu_ms']:.3f} ms")
    print(f"{'measure':58s} {'ours':>10s} {'mamba_ssm':>10s} {'ratio':>7s}")
    for name, mine, theirs in rows:
        ratio = f"{theirs / mine:6.2f}x" if theirs else ""
        print(f"{name:58s} {mine:10.3f} {theirs if theirs is not None else float('nan'):10.3f} {ratio}")
    print(f"peak VRAM (ours): {o['peak_vram_gib']:.2f} GiB")
    for mode, v in r["decode_variants"].items():
        print(f"decode GEMV {mode}: " + ", ".join(f"{k} {x:.3f} ms" for k, x in v.items() if k != "layer_us")
              + " | layer us: " + ", ".join(f"{k} {x:.1f}" for k, x in v["layer_us"].items()))
    print("vision parts (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in o["vision_parts_ms"].items()))
    print("one layer's decode pieces (us): " + ", ".join(f"{k} {v:.1f}" for k, v in r["layer_breakdown_us"].items()))
