"""Everything a run needs before its first step: the model (initialised for training), the tokenizer and the
micro-batch loader (samples chosen by data.py)."""
from __future__ import annotations

import logging
from typing import Iterator

import torch

from ..config import OmniMambaConfig
from ..model import OmniMamba
from ..model.init import init_random_
from . import checkpoints
from .config import TrainConfig
from .init_from import load_init

log = logging.getLogger(__name__)


def build_model(cfg: TrainConfig) -> OmniMamba:
    """The configured model in fp32 and train mode: the training init, then the `init` sources in order."""
    model = OmniMamba(OmniMambaConfig.from_name(cfg.model))
    training_init_(model, cfg.seed)
    load_init(model, cfg.init)
    for layer in model.backbone.layers:
        layer.mixer.in_proj.dropout = cfg.lora_dropout
    return model.float().train()


@torch.no_grad()
def training_init_(model: OmniMamba, seed: int) -> OmniMamba:
    """Random init with the official LoRA init for training: B = 0 (the adapter starts as the identity),
    A kaiming-uniform (reference §2.2)."""
    init_random_(model, seed)
    for layer in model.backbone.layers:
        for task in ("mmu", "t2i"):
            lora_A, lora_B = layer.mixer.in_proj.lora_pair(task)
            lora_A.reset_parameters()
            lora_B.weight.zero_()
    return model


def open_batches(cfg: TrainConfig, model: OmniMamba, accelerator, start: int) -> Iterator[dict]:
    """This process's micro-batches {task: batch}, from micro-batch `start` on (data.py decides which samples:
    a pure function of seed, task and global sample index, so any process count and any resume agree)."""
    from .batches import BatchBuilder
    from .data import StepDataset, make_loader, open_sources

    builder = BatchBuilder(load_tokenizer(cfg), model.config, caption_dropout=cfg.caption_dropout)
    micro = cfg.micro_batch(accelerator.num_processes)
    sources = open_sources(cfg.data, model.config, cfg.tasks)
    for task, records in sources.items():
        log.info("%s: %d records from %s, %d per process per micro-step", task, len(records), cfg.data[task],
                 micro[task])
    dataset = StepDataset(sources, micro, builder, cfg.seed, accelerator.process_index, accelerator.num_processes,
                          length=cfg.steps * cfg.grad_accum)
    loader = make_loader(dataset, start, cfg.num_workers, pin_memory=accelerator.device.type == "cuda",
                         prefetch_factor=4 if cfg.num_workers else None)
    with torch.random.fork_rng(devices=[]):  # the iterator draws a worker seed; keep the training RNG stream
        return iter(loader)                  # as the checkpoint saved it (exact resume of LoRA dropout)


def load_tokenizer(cfg: TrainConfig):
    from ..tokenizer import OmniTokenizer

    return OmniTokenizer.from_file(cfg.tokenizer)  # None: the tokenizer.json shipped in the package


def load_model_for_prepare(model: str, device: str | None = None) -> OmniMamba:
    """The model whose VQ encodes T2I images: a trained folder/file (e.g. the tiny or shapes model) or the
    released one (Hub id or local .pth). fp32: the codes are then exactly those the official VQ gives."""
    if checkpoints.is_trained_checkpoint(model):
        return checkpoints.load_trained(model, device, torch.float32)
    from ..hub import load_model

    return load_model(model, device=device, dtype=torch.float32)[0]
