"""One task's decode batch: rows of many requests stepped together, each with its own knobs.

Buffers are sized for the largest bucket and every bucket uses their leading rows, so moving to another bucket
moves no memory but the rows that change place. A slot is one sampled sequence (a chat, or one image). With
guidance pairs (text to image only) slot s has its conditional row at s and its unconditional row at B + s;
a slot without guidance ignores its partner row (its logits are taken as they are, bit for bit).

Per slot: the token to feed, its absolute position, temperature / top-k / top-p, greedy or not, guidance on
or off and its scale, and the Exp(1) noise row its own generator refreshes before each step. Nothing in a
step mixes rows, so a slot's tokens do not depend on its neighbours (exactly so on the CPU in fp32).
On CUDA each (bucket, pairs, sampling) step is a CUDA graph captured up front (`capture_all`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .generation import StaticGraph
from .model import InferenceState, OmniMamba
from .sampling import SamplingParams, sample_tokens

log = logging.getLogger(__name__)

BUCKETS = (1, 2, 4, 8, 16)


def bucket_for(rows: int) -> int:
    for size in BUCKETS:
        if rows <= size:
            return size
    raise ValueError(f"a batch holds at most {BUCKETS[-1]} sequences, asked for {rows}")


@dataclass(frozen=True)
class Layout:
    size: int  # bucket: slots stepped
    pairs: bool  # unconditional partner rows present (guidance)

    @property
    def rows(self) -> int:
        return self.size * (2 if self.pairs else 1)

    def row_of(self, slot: int, uncond: bool = False) -> int:
        return slot + (self.size if uncond else 0)


@dataclass
class SlotKnobs:
    params: SamplingParams
    guidance_scale: float = 1.0  # != 1 means guided (needs pairs)

    @property
    def guided(self) -> bool:
        return self.guidance_scale != 1.0


class BatchGraph:
    def __init__(self, model: OmniMamba, task: str, table: Tensor, use_cuda_graphs: bool, pool: object | None):
        self.model, self.task, self.table = model, task, table
        self.use_cuda_graphs, self.pool = use_cuda_graphs, pool
        cfg, dev, n = model.config, model.device, BUCKETS[-1]
        self.max_rows = n * (2 if task == "t2i" else 1)
        vocab = cfg.padded_text_vocab if task == "mmu" else cfg.image_vocab_size
        self.state = InferenceState.zeros(cfg, self.max_rows, dev, model.dtype)
        self.token = torch.zeros(n, dtype=torch.long, device=dev)
        self.position = torch.zeros(n, dtype=torch.long, device=dev)
        self.temperature = torch.ones(n, 1, device=dev)
        self.top_k = torch.ones(n, 1, dtype=torch.long, device=dev)
        self.top_p = torch.zeros(n, 1, device=dev)
        self.greedy = torch.ones(n, dtype=torch.bool, device=dev)
        self.scale = torch.ones(n, 1, device=dev)
        self.guided = torch.zeros(n, 1, dtype=torch.bool, device=dev)
        self.noise = torch.ones(n, vocab, device=dev)
        self.graphs: dict[tuple[Layout, bool], StaticGraph] = {}
        # where a step's tokens land on the host: pinned, so the copy is queued behind the step without a wait
        self.host_tokens = torch.zeros(n, dtype=torch.long, pin_memory=dev.type == "cuda")
        self.tokens_copied = torch.cuda.Event() if dev.type == "cuda" else None  # one step in flight at a time

    def layouts(self) -> list[Layout]:
        return [Layout(b, p) for b in BUCKETS for p in ((False, True) if self.task == "t2i" else (False,))]

    # ----- the step (pure device work: no host reads) -----
    def _state(self, layout: Layout) -> InferenceState:
        return InferenceState(self.state.conv[:, :layout.rows], self.state.ssm[:, :layout.rows])

    def _step(self, layout: Layout, sampling: bool) -> None:
        b = layout.size
        ids, positions = self.token[:b], self.position[:b]
        if layout.pairs:
            ids, positions = ids.repeat(2), positions.repeat(2)
        backbone = self.model.backbone
        table = backbone.embedding.weight if self.task == "mmu" else self.table
        positions_table = backbone.position_table(self.task)
        positions = positions.clamp(max=positions_table.shape[0] - 1)  # free slots drift on; real ones never get here
        embeds = F.embedding(ids, table) + F.embedding(positions, positions_table)
        logits = self.model.mamba.step_logits(embeds, self.task, self._state(layout))
        if layout.pairs:
            cond, uncond = logits[:b], logits[b:]
            logits = torch.where(self.guided[:b], uncond + self.scale[:b] * (cond - uncond), cond)
        tokens = logits.argmax(dim=-1)
        if sampling:
            drawn = sample_tokens(logits, self.temperature[:b], self.top_k[:b], self.top_p[:b], self.noise[:b])
            tokens = torch.where(self.greedy[:b], tokens, drawn)
        self.token[:b].copy_(tokens)
        self.position[:b].add_(1)

    def capture_all(self) -> None:
        """Record every (bucket, pairs, sampling) step before serving: warm-ups scribble on the rows, so this
        must run while no request is in the batch."""
        if not self.use_cuda_graphs:
            return
        with torch.no_grad():
            for layout in self.layouts():
                for sampling in (False, True):
                    self.graphs[layout, sampling] = StaticGraph(
                        lambda layout=layout, sampling=sampling: self._step(layout, sampling), [], self.pool)
        log.info("captured %d %s batch steps", len(self.graphs), self.task)

    @torch.no_grad()
    def step(self, layout: Layout, sampling: bool) -> None:
        graph = self.graphs.get((layout, sampling))
        if graph is not None:
            graph()
        else:
            self._step(layout, sampling)

    def tokens_after_step(self, size: int) -> Callable[[], list[int]]:
        """Queue the copy of the first `size` slots' tokens to the host, behind the step just launched; the
        returned function waits for it (releasing the interpreter while it waits) and gives the tokens. Rows
        that change place after this call do not change what it returns."""
        if self.token.device.type != "cuda":
            tokens = self.token[:size].tolist()
            return lambda: tokens
        host = self.host_tokens[:size]
        host.copy_(self.token[:size], non_blocking=True)
        self.tokens_copied.record()

        def read() -> list[int]:
            self.tokens_copied.synchronize()
            return host.tolist()
        return read

    # ----- rows in and out (between steps) -----
    @torch.no_grad()
    def move(self, old: Layout, new: Layout, moves: list[tuple[int, int]]) -> None:
        """Slots change place (old slot -> new slot), e.g. to a smaller bucket or to one with pairs."""
        if not moves:
            return
        src = [old.row_of(s) for s, _ in moves] + [old.row_of(s, old.pairs) for s, _ in moves]
        dst = [new.row_of(d) for _, d in moves] + [new.row_of(d, new.pairs) for _, d in moves]
        if not new.pairs:
            src, dst = src[:len(moves)], dst[:len(moves)]
        src_t, dst_t = (torch.tensor(x, device=self.token.device) for x in (src, dst))
        for buf in (self.state.conv, self.state.ssm):
            buf[:, dst_t] = buf[:, src_t].clone()
        s_slots = torch.tensor([s for s, _ in moves], device=self.token.device)
        d_slots = torch.tensor([d for _, d in moves], device=self.token.device)
        for buf in (self.token, self.position, self.temperature, self.top_k, self.top_p, self.greedy, self.scale,
                    self.guided):
            buf[d_slots] = buf[s_slots].clone()

    @torch.no_grad()
    def put(self, layout: Layout, slot: int, source: InferenceState, row: int, uncond_row: int | None,
            token: int | Tensor, position: int, knobs: SlotKnobs) -> None:
        """A new slot: its state rows (from a prefill), the first token to feed and its position, its knobs."""
        for buf, src in ((self.state.conv, source.conv), (self.state.ssm, source.ssm)):
            buf[:, layout.row_of(slot)] = src[:, row]
            if layout.pairs:
                buf[:, layout.row_of(slot, True)] = src[:, uncond_row if uncond_row is not None else row]
        self.token[slot] = token
        self.position[slot] = position
        p = knobs.params
        self.temperature[slot] = max(p.temperature, 1e-5)
        self.top_k[slot] = p.top_k
        self.top_p[slot] = p.top_p
        self.greedy[slot] = p.greedy
        self.scale[slot] = knobs.guidance_scale
        self.guided[slot] = knobs.guided

    @torch.no_grad()
    def take(self, layout: Layout, slot: int, into: InferenceState) -> None:
        """Copy a leaving chat's row into its own one-row state."""
        into.conv.copy_(self.state.conv[:, layout.row_of(slot)].unsqueeze(1))
        into.ssm.copy_(self.state.ssm[:, layout.row_of(slot)].unsqueeze(1))

    def refresh_noise(self, slots: list[tuple[int, torch.Generator | None]]) -> None:
        """Fresh Exp(1) noise for the sampling slots, each from its own generator (outside any graph)."""
        for slot, generator in slots:
            self.noise[slot].exponential_(generator=generator)
