"""The baseline of the task benchmark: stock mamba_ssm `MambaLMHeadModel.generate(cg=True)` holding a copy of
our backbone's weights (the image-chat LoRA merged into in_proj), timed exactly like our side.

mamba_ssm keeps one CUDA-graph cache per model, sized for one batch and one maximum length; a call with a
larger batch or length throws it away and captures again. Capture is set-up, not generation, so every
(batch, length) shape keeps its own cache here: the untimed warm-up call of a shape captures, the timed calls
of that shape replay. Stock has no image head, no VQ decoder and no vision towers: it generates text-vocabulary
tokens from token ids, which is the comparable part of our tasks (our report times the rest separately).
"""
from __future__ import annotations

import logging

import torch

from .timing import generation_timing, median_time

log = logging.getLogger(__name__)


def stock_model_from(model):
    """mamba_ssm's MambaLMHeadModel holding our backbone's weights (image-chat LoRA merged into in_proj)."""
    from mamba_ssm.models.config_mamba import MambaConfig
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel

    cfg = model.config
    mcfg = MambaConfig(d_model=cfg.d_model, n_layer=cfg.n_layer, vocab_size=cfg.text_vocab_size,
                       ssm_cfg={"layer": "Mamba2"}, rms_norm=True, residual_in_fp32=True, fused_add_norm=True,
                       pad_vocab_size_multiple=cfg.pad_vocab_size_multiple)
    stock = MambaLMHeadModel(mcfg, device=model.device, dtype=model.dtype).eval()
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


class StockGenerate:
    """`generate(batch, prompt_len, n)` on fixed random prompts, one kept CUDA-graph cache per shape."""

    def __init__(self, stock, device: torch.device, vocab: int = 50000, rows: int = 8, longest_prompt: int = 760):
        self.stock = stock
        self.prompt = torch.randint(0, vocab, (rows, longest_prompt), device=device)
        self.caches: dict[tuple[int, int], object] = {}

    @torch.no_grad()
    def __call__(self, batch: int, prompt_len: int, new_tokens: int) -> torch.Tensor:
        max_length = prompt_len + new_tokens
        self.stock._decoding_cache = self.caches.get((batch, max_length))
        out = self.stock.generate(self.prompt[:batch, :prompt_len].contiguous(), max_length=max_length, cg=True,
                                  top_k=1)
        self.caches[(batch, max_length)] = self.stock._decoding_cache
        return out


def stock_tasks(stock, shapes: dict[str, tuple[int, int, int]], repeat: int = 5,
                device: torch.device = torch.device("cuda")) -> dict:
    """Every shape (model rows, prompt length, new tokens) timed by `generation_timing`, like ours; an error
    entry (not an exception) where the baseline breaks, so our own numbers still count."""
    gen = StockGenerate(stock, device, longest_prompt=max(p for _, p, _ in shapes.values()))
    out: dict = {"generation": {}}
    try:
        for name, (rows, prompt_len, new_tokens) in shapes.items():
            out["generation"][name] = generation_timing(lambda n: gen(rows, prompt_len, n), new_tokens, repeat,
                                                          device)
        out["graph_caches_kept"] = len(gen.caches)

        def recapture() -> None:  # the old benchmark's method: capture inside every timed call
            stock._decoding_cache = None
            rows, prompt_len, new_tokens = next(iter(shapes.values()))
            stock.generate(gen.prompt[:rows, :prompt_len].contiguous(), max_length=prompt_len + new_tokens, cg=True,
                           top_k=1)
        out["one_image_recapturing_graphs_s"] = median_time(recapture, min(repeat, 3), device=device)
    except Exception as exc:
        log.exception("stock mamba_ssm baseline failed")
        out["error"] = f"{type(exc).__name__}: {exc}"
    stock._decoding_cache = None
    return out
