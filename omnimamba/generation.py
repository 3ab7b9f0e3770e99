"""Inference: prefill, one-token decode steps captured as CUDA graphs, and the two decode loops.

    DecodeGraph.prefill(embeds) -> first token              power-of-two pieces, each a graph replay on GPU
    DecodeGraph.step() = embed token -> 48 layers -> head -> (guidance) -> sample -> next token, position += 1
                                                           one CUDA-graph replay per token on GPU
`ModelRunner` wraps the model and keeps one DecodeGraph per key.
A DecodeGraph owns static buffers (state, token, position, sampling knobs) for one key
(task, batch, sampling?, guidance?), so an image-chat graph can never be replayed for text-to-image.
The loops are Python generators: they yield after every token, and closing them between steps cancels.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from .model import InferenceState, OmniMamba
from .model.backbone import PositionLimitError
from .model.kernels.autograd import refuse_grad
from .config import EOS_ID, PAD_ID
from .model.vision import PixelValues
from .sampling import SamplingParams, greedy_tokens, guided_logits, sample_tokens

log = logging.getLogger(__name__)

Generators = torch.Generator | list[torch.Generator] | None  # one stream for the batch, or one per row


class StaticGraph:
    """fn over fixed-shape tensors recorded once as a CUDA graph: calls copy new inputs into the recorded
    buffers and replay. Outputs live in the graph's memory: read them before the next call."""

    def __init__(self, fn: Callable[..., object], inputs: list[Tensor], pool: object):
        refuse_grad("a CUDA graph", *inputs)
        self.inputs = [t.clone() for t in inputs]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up: Triton compiles and autotunes here, outside the capture
            for _ in range(2):
                warm = fn(*self.inputs)
        torch.cuda.current_stream().wait_stream(stream)
        # a replay reruns kernels, not autograd: an output that autograd tracks would come back cut
        refuse_grad("a CUDA graph", *(t for t in (warm if isinstance(warm, (list, tuple)) else [warm])
                                     if isinstance(t, Tensor)))
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool):
            self.output = fn(*self.inputs)

    def __call__(self, *inputs: Tensor) -> object:
        refuse_grad("a CUDA graph", *inputs)
        for static, new in zip(self.inputs, inputs):
            static.copy_(new)
        self.graph.replay()
        return self.output


@dataclass(frozen=True)
class GraphKey:
    task: str
    batch: int  # sequences sampled (images, or 1 chat); the model batch is twice this with guidance
    sampling: bool
    guidance: bool


class DecodeGraph:
    """Static buffers and the one-token step for one GraphKey; captured as a CUDA graph on GPU. Text-to-image
    keys also record their prefill (always 72 tokens), so a whole image is graph replays.

    Everything that feeds tokens into `state` goes through `prefill`, `prefill_t2i` or `step`, and each ends in
    `_fed`, the one place the state's length moves."""

    def __init__(self, model: OmniMamba, image_table: Tensor, key: GraphKey, pool: object | None):
        self.model, self.image_table, self.key, self.pool = model, image_table, key, pool
        dev = model.device
        self.rows = key.batch * (2 if key.guidance else 1)
        vocab = model.config.padded_text_vocab if key.task == "mmu" else model.config.image_vocab_size
        self.state = InferenceState.zeros(model.config, self.rows, dev, model.dtype)
        self.token = torch.zeros(key.batch, dtype=torch.long, device=dev)  # fed at the next step
        self.position = torch.zeros((), dtype=torch.long, device=dev)  # absolute position of that token
        self.logits = torch.zeros(key.batch, vocab, device=dev)  # of the last step (after guidance)
        self.temperature = torch.ones(key.batch, 1, device=dev)
        self.top_k = torch.ones(key.batch, 1, dtype=torch.long, device=dev)
        self.top_p = torch.zeros(key.batch, 1, device=dev)
        self.guidance_scale = torch.ones((), device=dev)
        self.noise = torch.ones(key.batch, vocab, device=dev) if key.sampling else None
        self.step_graph: StaticGraph | None = None
        self.prefill_graph: StaticGraph | None = None
        self.piece_graphs: dict[int, StaticGraph] = {}  # prefill pieces by length (see `prefill`)

    def set_sampling(self, params: SamplingParams, guidance_scale: float) -> None:
        self.temperature.fill_(max(params.temperature, 1e-5))
        self.top_k.fill_(params.top_k)
        self.top_p.fill_(params.top_p)
        self.guidance_scale.fill_(guidance_scale)

    def load_state(self, source: InferenceState | None) -> None:
        if source is None:
            self.state.conv.zero_()
            self.state.ssm.zero_()
            self.state.seqlen = 0
        else:
            self.state.copy_(source)

    # ----- the recorded pieces (pure device work: no host reads, no state length) -----
    def pick(self, logits: Tensor) -> Tensor:
        """Guidance + sampling of model logits (rows, V) -> tokens (batch,); also kept in self.logits."""
        if self.key.guidance:
            logits = guided_logits(logits[:self.key.batch], logits[self.key.batch:], self.guidance_scale)
        self.logits.copy_(logits)
        if not self.key.sampling:
            return greedy_tokens(logits)
        return sample_tokens(logits, self.temperature, self.top_k, self.top_p, self.noise)

    def embed_step(self, ids: Tensor) -> Tensor:
        """(rows,) token ids at the current position -> positioned input embeddings (rows, d)."""
        backbone, task = self.model.backbone, self.key.task
        table = backbone.embedding.weight if task == "mmu" else self.image_table
        # F.embedding, not tensor[position]: indexing with a 0-d tensor syncs the host (breaks graph capture)
        return F.embedding(ids, table) + F.embedding(self.position.view(1), backbone.position_table(task))

    def _step(self) -> None:
        ids = self.token.repeat(2) if self.key.guidance else self.token  # both guidance rows get the token
        logits = self.model.mamba.step_logits(self.embed_step(ids), self.key.task, self.state)
        self.token.copy_(self.pick(logits))
        self.position.add_(1)

    def first_token(self, hidden_last: Tensor, position: int) -> Tensor:
        """Head + pick on the prompt's last hidden state (rows, d); `position` is where that token goes."""
        token = self.pick(self.model.mamba.head(hidden_last, self.key.task).float())
        self.token.copy_(token)
        self.position.fill_(position)
        return token

    def _prefill_embeds(self, embeds: Tensor) -> Tensor:
        """Positioned embeddings (rows, L, d) from the current state; picks the first token."""
        hidden = self.model.backbone(embeds, self.key.task, self.state)[:, -1]  # (rows, d)
        return self.first_token(hidden, embeds.shape[1] + self.state.seqlen)

    def _prefill_prefix(self, prefix_ids: Tensor) -> Tensor:
        return self._prefill_embeds(self.model.embed_t2i_prefix(prefix_ids))

    def capture(self) -> None:
        """Record the step (and the text-to-image prefill). Warm-ups scribble on the state, which every
        request overwrites (`load_state`) before its prefill."""
        self.step_graph = StaticGraph(self._step, [], self.pool)
        if self.key.task == "t2i":
            ids = torch.full((self.rows, self.model.config.t2i_prefix_len), PAD_ID, device=self.token.device)
            self.prefill_graph = StaticGraph(self._prefill_prefix, [ids], self.pool)

    def prefix_piece(self, size: int) -> StaticGraph:
        """The backbone over `size` positions continuing the state, recorded once per size."""
        if size not in self.piece_graphs:
            fn = lambda emb: self.model.backbone(emb, self.key.task, self.state)  # noqa: E731
            example = torch.zeros(self.rows, size, self.model.config.d_model, device=self.model.device,
                                  dtype=self.model.dtype)
            saved = self.state.clone()  # warm-ups advance the state: keep the request's
            self.piece_graphs[size] = StaticGraph(fn, [example], self.pool)
            self.state.copy_(saved)
        return self.piece_graphs[size]

    # ----- feeding tokens -----
    def _refresh_noise(self, generator: Generators) -> None:
        """Fresh Exp(1) noise, outside any graph: from the request's own stream, or one stream per row (then a
        row's draws depend only on its own seed, whatever the batch)."""
        if self.noise is None:
            return
        if isinstance(generator, (list, tuple)):
            for row, gen in zip(self.noise, generator):
                row.exponential_(generator=gen)
        else:
            self.noise.exponential_(generator=generator)

    def _fed(self, tokens: int) -> None:
        self.state.seqlen += tokens

    @torch.no_grad()
    def prefill(self, embeds: Tensor, generator: Generators) -> Tensor:
        """Run positioned embeddings (rows, L, d) through the backbone from the state; pick the first token.
        Returns it (batch,) and leaves it in self.token with self.position = the state's new length.

        With graphs it is replayed in pieces (`feed_backbone`): eager PyTorch would spend ~60 ms launching 48
        layers' kernels."""
        self._refresh_noise(generator)
        length = embeds.shape[1]
        token = self.first_token(self.feed_backbone(embeds)[:, -1], self.state.seqlen + length)
        self._fed(length)
        return token

    def feed_backbone(self, embeds: Tensor) -> Tensor:
        """The backbone over positioned embeddings (rows, L, d) from the state, which it advances (not its
        length); the hidden states of the last positions fed. With graphs, L is split into power-of-two pieces,
        each a recorded graph (a 745-token image-chat prompt is 6 replays)."""
        if self.pool is None:
            return self.model.backbone(embeds, self.key.task, self.state)
        start = 0
        for size in power_of_two_pieces(embeds.shape[1]):
            hidden = self.prefix_piece(size)(embeds[:, start:start + size])
            start += size
        return hidden

    @torch.no_grad()
    def prefill_t2i(self, prefix_ids: Tensor, generator: Generators) -> Tensor:
        """Text-to-image prefill of prefix_ids (rows, 72) from a zero state; a graph replay on GPU."""
        self._refresh_noise(generator)
        token = self.prefill_graph(prefix_ids) if self.prefill_graph is not None else self._prefill_prefix(prefix_ids)
        self._fed(prefix_ids.shape[1])
        return token

    @torch.no_grad()
    def step(self, generator: Generators) -> Tensor:
        """Feed the pending token; returns the next one (batch,) on the device (no host sync)."""
        self._refresh_noise(generator)
        if self.step_graph is not None:
            self.step_graph()
        else:
            self._step()
        self._fed(1)
        return self.token

    def decode(self, steps: int, generator: Generators) -> Iterator[Tensor]:
        """`step` `steps` times, yielding each new token."""
        for _ in range(steps):
            yield self.step(generator)


class ModelRunner:
    """Wraps a model for inference: merged LoRA, the projected image-token table, and the graph caches (one
    DecodeGraph per GraphKey, the vision towers per batch size), all sharing one CUDA-graph memory pool."""

    def __init__(self, model: OmniMamba, use_cuda_graphs: bool | None = None):
        self.model = model.eval().requires_grad_(False)
        if not model.lora_merged:
            model.merge_lora()
        self.use_cuda_graphs = model.device.type == "cuda" if use_cuda_graphs is None else use_cuda_graphs
        self.image_table = self._project_image_table()  # (16384, d): project_in of every VQ code, once
        self.graphs: dict[GraphKey, DecodeGraph] = {}
        self.vision_graphs: dict[int, StaticGraph] = {}
        self.row_prefills: dict[int, DecodeGraph] = {}  # by row count, for chats that prefill together
        self.pool = torch.cuda.graph_pool_handle() if self.use_cuda_graphs else None

    @torch.no_grad()
    def _project_image_table(self, rows_per_chunk: int = 4096) -> Tensor:
        """An image token's input embedding depends only on its id: compute project_in for all ids up front
        instead of a 3-layer MLP in every decode step."""
        emb = self.model.backbone.img_embeddings
        table = emb.word_embeddings.weight
        return torch.cat([emb.project_in(table[i:i + rows_per_chunk]) for i in range(0, table.shape[0], rows_per_chunk)])

    @torch.no_grad()
    def image_features(self, pixel_values: PixelValues) -> Tensor:
        """Vision towers + projector (b, 729, d); one graph replay per image on GPU (eager PyTorch spends
        most of its time launching the towers' ~1,000 kernels)."""
        if not self.use_cuda_graphs:
            return self.model.image_features(pixel_values)
        pixels = [pixel_values["dino"].to(self.model.device), pixel_values["siglip"].to(self.model.device)]
        batch = pixels[0].shape[0]
        if batch not in self.vision_graphs:
            fn = lambda dino, siglip: self.model.image_features({"dino": dino, "siglip": siglip})  # noqa: E731
            self.vision_graphs[batch] = StaticGraph(fn, pixels, self.pool)
        return self.vision_graphs[batch](*pixels).clone()

    def prefill_rows(self, rows: int) -> DecodeGraph:
        """Image-chat buffers of `rows` rows for `prefill_together` (its pieces are recorded on first use of
        each size; no step graph: these rows never decode)."""
        graph = self.row_prefills.get(rows)
        if graph is None:
            graph = self.row_prefills[rows] = DecodeGraph(self.model, self.image_table,
                                                          GraphKey("mmu", rows, False, False), self.pool)
        return graph

    def graph_for(self, key: GraphKey) -> DecodeGraph:
        graph = self.graphs.get(key)
        if graph is None:
            graph = DecodeGraph(self.model, self.image_table, key, self.pool)
            if self.use_cuda_graphs:
                with torch.no_grad():
                    graph.capture()
                log.info("captured decode graph %s", key)
            self.graphs[key] = graph
        return graph


def power_of_two_pieces(length: int, largest: int = 1024) -> list[int]:
    """745 -> [512, 128, 64, 32, 8, 1]: few distinct shapes to record, few replays per prompt."""
    pieces = []
    while length:
        size = min(largest, 1 << (length.bit_length() - 1))
        pieces.append(size)
        length -= size
    return pieces


@torch.no_grad()
def prefill_together(runner: ModelRunner, states: list[InferenceState], embeds: list[Tensor], length: int) -> None:
    """Feed the first `length` positions of several image-chat prompts (each (1, L_i, d), positioned, L_i >=
    length) as one batch, each continuing its own one-row state, which is updated in place (its seqlen too).
    The rest of each prompt, at least its last position (whose logits pick the first answer token, with that
    request's own sampling), is the caller's to feed alone. Rows are padded to a power of two, so few shapes
    get recorded; padding rows compute on zeros and are dropped."""
    n = len(states)
    if not n or length < 1 or any(e.shape[1] < length for e in embeds):
        raise ValueError(f"every prompt needs at least {length} positions, and there must be one")
    graph = runner.prefill_rows(max(2, 1 << (n - 1).bit_length()))
    rows = graph.rows
    stacked = embeds[0].new_zeros(rows, length, embeds[0].shape[-1])
    graph.load_state(None)
    for i, (state, emb) in enumerate(zip(states, embeds)):
        stacked[i] = emb[0, :length]
        graph.state.conv[:, i] = state.conv[:, 0]
        graph.state.ssm[:, i] = state.ssm[:, 0]
    graph.feed_backbone(stacked)
    for i, state in enumerate(states):
        state.conv.copy_(graph.state.conv[:, i:i + 1])
        state.ssm.copy_(graph.state.ssm[:, i:i + 1])
        state.seqlen += length


@dataclass
class ChatStep:
    token: int
    stop_reason: str | None = None  # set on the last token: "eos", "max_new_tokens" or "position_limit"


@torch.no_grad()
def chat_tokens(runner: ModelRunner, state: InferenceState, embeds: Tensor, params: SamplingParams,
                max_new_tokens: int, generator: Generators = None) -> Iterator[ChatStep]:
    """Continue an image chat: feed `embeds` (1, L, d) after `state`, then sample up to max_new_tokens.

    Stops after EOS (id 0), at max_new_tokens, or where the position table ends; the last step carries the
    reason. Cancel by closing the generator between steps. Once it ends or is closed after a first token,
    `state` holds the prompt and every yielded token except the last one (the caller feeds that one, e.g. the
    EOS, at the start of the next turn); before that, or when a step fails, `state` is untouched.
    """
    table_rows = runner.model.config.mmu_positions
    if state.seqlen + embeds.shape[1] > table_rows:
        raise PositionLimitError("mmu", state.seqlen + embeds.shape[1], table_rows)
    room = table_rows - state.seqlen - embeds.shape[1]  # tokens that can still be fed after the prompt
    budget = min(max_new_tokens, room + 1)  # the last sampled token is never fed
    graph = runner.graph_for(GraphKey("mmu", 1, not params.greedy, False))
    graph.set_sampling(params, 1.0)
    graph.load_state(state)
    token = int(graph.prefill(embeds, generator)[0])
    try:
        for produced in range(1, budget + 1):
            if token == EOS_ID or produced == budget:
                reason = "eos" if token == EOS_ID else (
                    "max_new_tokens" if budget == max_new_tokens else "position_limit")
                yield ChatStep(token, reason)
                break
            yield ChatStep(token)
            token = int(graph.step(generator)[0])
    except GeneratorExit:  # stopped by the caller: what was taken so far is kept
        state.copy_(graph.state)
        raise
    state.copy_(graph.state)  # a failure leaves `state` untouched


@dataclass
class ImageStep:
    tokens: Tensor  # (batch, k) all image tokens so far, on the device
    done: bool


@torch.no_grad()
def image_tokens(runner: ModelRunner, prefix_ids: Tensor, params: SamplingParams, guidance_scale: float = 1.0,
                 uncond_ids: Tensor | None = None, report_every: int = 16,
                 generator: Generators = None) -> Iterator[ImageStep]:
    """Text-to-image tokens for prefix_ids (batch, 72). Yields after the first token (the prefill), then
    every `report_every` tokens, and at the end (done=True). Tokens stay on the device; only a yield syncs.

    With guidance (scale != 1), `uncond_ids` (batch, 72) runs beside the prompt and the logits are mixed.
    """
    cfg = runner.model.config
    batch = prefix_ids.shape[0]
    guidance = uncond_ids is not None and guidance_scale != 1.0
    graph = runner.graph_for(GraphKey("t2i", batch, not params.greedy, guidance))
    graph.set_sampling(params, guidance_scale)
    graph.load_state(None)
    ids = torch.cat([prefix_ids, uncond_ids]) if guidance else prefix_ids
    tokens = torch.empty(batch, cfg.num_image_tokens, dtype=torch.long, device=runner.model.device)
    tokens[:, 0] = graph.prefill_t2i(ids.to(tokens.device), generator)
    yield ImageStep(tokens[:, :1], done=False)
    for k, token in enumerate(graph.decode(cfg.num_image_tokens - 1, generator), start=1):
        tokens[:, k] = token
        if report_every and (k + 1) % report_every == 0 and k + 1 < cfg.num_image_tokens:
            yield ImageStep(tokens[:, :k + 1], done=False)
    yield ImageStep(tokens, done=True)
