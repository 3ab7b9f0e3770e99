"""Continuous batching: one worker thread does all device work; concurrent requests share decode steps.

    submit(job) -> waiting -> prefill (its own one-row state) -> joins its task's decode batch
                -> one batched step per loop turn, tokens sent to each request's queue -> leaves when done,
                   stopped (cancel), or failed; its slot is free at the next step.

Each turn reads the step launched in the previous turn and launches the next before it hands out the tokens,
so the GPU is never idle while Python works (`_turn`).

Chats and text-to-image run in two batches (different heads and position tables), stepped in turn. A chat's
prompt has any length: chats admitted in one turn (on a GPU) feed their common length as one batch, then each
the rest of its prompt alone, and join; a text-to-image request prefills its
caption once (and the unconditional one when guided) and its images take one slot each. Other device work
(image encoding, rendering) is queued as `call`s that run between steps, so only this thread touches the GPU
once serving starts (CUDA-graph capture needs that). Every accepted request ends with an "end" message or
its error; the consumer side blocks on its queue and notices a dead worker.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

import torch
from torch import Tensor

from .batching import BUCKETS, BatchGraph, Layout, SlotKnobs, bucket_for
from .config import EOS_ID
from .events import EngineError, user_error
from .generation import GraphKey, ModelRunner, prefill_together
from .jobs import Batch, ChatJob, ImageJob, InFlight, Job, Message
from .model import InferenceState
from .sampling import SamplingParams, sample_tokens

log = logging.getLogger(__name__)

MAX_WAITING = 64  # requests beyond this many waiting are refused at once ("busy"), never silently dropped
PREFILL_ROWS = (2, 4, 8)  # chats prefilling together: at most 8 at a time, rows padded to one of these


class Scheduler:
    def __init__(self, runner: ModelRunner, capture_ahead: bool = True, prefill_together: bool | None = None):
        self.runner, self.model = runner, runner.model
        # on by default where it pays (a GPU); a prompt fed in two parts agrees with one fed whole to rounding,
        # so on the CPU it is off and a chat's tokens are exactly the unbatched engine's (tests turn it on)
        self.prefill_together = runner.model.device.type == "cuda" if prefill_together is None else prefill_together
        self.inbox: queue.Queue = queue.Queue()
        self.waiting: list[Job] = []
        self.batches = {task: Batch(BatchGraph(self.model, task, runner.image_table, runner.use_cuda_graphs,
                                               runner.pool)) for task in ("mmu", "t2i")}
        self.capture_ahead = capture_ahead
        # batched steps run, most sequences in one step, chats that fed their prompts' common length together
        self.stats = {"steps": 0, "widest": 0, "prefilled_together": 0}
        self._stop = False
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="omnimamba-scheduler", daemon=True)
        self.thread.start()

    # ----- consumer side (any thread) -----
    def submit(self, job: Job) -> None:
        if self.inbox.qsize() + len(self.waiting) >= MAX_WAITING:
            raise EngineError("the server is busy with other requests; try again in a moment")
        self._check_alive()
        self.inbox.put(job)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the worker between steps and return its result (or raise its error)."""
        if threading.current_thread() is self.thread:
            return fn()
        future: Future = Future()
        self._check_alive()
        self.inbox.put((fn, future))
        while True:
            try:
                return future.result(timeout=1.0)
            except TimeoutError:
                self._check_alive()

    def receive(self, job: Job) -> Message:
        """The job's next message; an error message is raised."""
        while True:
            try:
                message = job.out.get(timeout=1.0)
            except queue.Empty:
                self._check_alive()
                continue
            if message.kind == "error":
                raise message.error
            return message

    def close(self) -> None:
        self._stop = True
        self.inbox.put(None)

    def _check_alive(self) -> None:
        if not self.thread.is_alive():
            raise EngineError("the engine's scheduler has stopped; restart the server")

    # ----- the worker -----
    def _run(self) -> None:
        if self.model.device.type == "cuda":
            torch.cuda.set_device(self.model.device)  # this thread's streams and graphs on the model's GPU
        if self.capture_ahead and self.runner.use_cuda_graphs:
            self._capture_prefills()
        if self.capture_ahead:
            for batch in self.batches.values():
                try:
                    batch.graph.capture_all()
                except Exception:  # noqa: BLE001 - serve eagerly rather than not at all
                    log.exception("capturing the %s batch steps failed; they run eagerly", batch.graph.task)
                    batch.graph.graphs.clear()
        self.ready.set()
        while not self._stop:
            try:
                self._turn()
            except BaseException as exc:  # noqa: BLE001 - a bug here must not leave requests waiting forever
                log.exception("scheduler turn failed; failing the requests in flight")
                for job in [j for b in self.batches.values() for j in b.members()] + self.waiting:
                    job.finish(Message("error", error=EngineError(f"the request failed in the scheduler: {exc}")))
                self.waiting = []
                for batch in self.batches.values():
                    batch.layout, batch.slots, batch.in_flight = None, [], None

    def _capture_prefills(self) -> None:
        """Record the prefill graphs requests use (chat pieces of every power-of-two size, alone and for chats
        prefilling together, the caption prefill with and without guidance) now, so no capture happens while
        consumers run."""
        start = time.perf_counter()
        sizes = [1 << i for i in range(11)]
        try:
            with torch.no_grad():
                for sampling in (False, True):
                    graph = self.runner.graph_for(GraphKey("mmu", 1, sampling, False))
                    for size in sizes:
                        graph.prefix_piece(size)
                for guided in (False, True):
                    self.runner.graph_for(GraphKey("t2i", 1, False, guided))
                for rows in PREFILL_ROWS if self.prefill_together else ():
                    for size in sizes:
                        self.runner.prefill_rows(rows).prefix_piece(size)
        except Exception:  # noqa: BLE001 - they are recorded on first use instead
            log.exception("recording the prefill graphs ahead failed")
        self.stats["prefill_capture_s"] = round(time.perf_counter() - start, 2)

    def _turn(self) -> None:
        """Admit what waits, then per batch: read the step in flight, let finished and cancelled requests go,
        launch the next step; only then hand out the tokens. So the GPU computes step t + 1 while this thread
        and the requests' consumers deal with step t (all of it Python, sharing one interpreter)."""
        busy = any(b.used() or b.in_flight for b in self.batches.values())
        self._drain(block=not busy and not self.waiting)
        self._admit()
        outbox: list[tuple[Job, Message]] = []
        try:
            for task, batch in self.batches.items():
                if batch.in_flight is not None:
                    self._collect(task, batch, outbox)
                self._drop_cancelled(batch, outbox)
                if batch.used():
                    self._launch(task, batch, outbox)
        finally:
            for job, message in outbox:
                if message.kind == "tokens":
                    job.out.put(message)
                else:  # "end" or "error": the job is over
                    job.finish(message)

    def _drain(self, block: bool) -> None:
        item = self.inbox.get() if block else None
        while True:
            if item is not None:
                if isinstance(item, tuple):
                    fn, future = item
                    try:
                        future.set_result(fn())
                    except BaseException as exc:  # noqa: BLE001 - handed to the caller
                        future.set_exception(user_error(exc))
                else:
                    self.waiting.append(item)
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return

    def _admit(self) -> None:
        """Prefill waiting requests (oldest first) while their task's batch has room; chats admitted in one turn
        prefill together (`_start_chats`)."""
        still: list[Job] = []
        chats: list[ChatJob] = []
        for job in self.waiting:
            task = _task(job)
            room = BUCKETS[-1] - self.batches[task].used() - (len(chats) if task == "mmu" else 0)
            if job.cancel.is_set():  # stopped before its prefill: nothing happened
                job.finish(Message("end", stop_reason="cancelled"))
            elif job.width > room or any(_task(j) == task for j in still):
                still.append(job)  # no room yet; keep the order within a task
            elif task == "mmu":
                chats.append(job)
            else:
                self._start(task, job)
        self.waiting = still
        self._start_chats(chats)

    def _start(self, task: str, job: Job, prepared: tuple | None = None) -> None:
        try:
            with torch.no_grad():
                ready = self._prefill_chat(job, prepared) if task == "mmu" else self._prefill_images(job)
            if ready is not None:
                self._join(self.batches[task], job, *ready)
        except BaseException as exc:  # noqa: BLE001 - the request fails, the worker goes on
            log.debug("request failed in prefill", exc_info=True)
            job.finish(Message("error", error=user_error(exc)))

    def _start_chats(self, chats: list[ChatJob]) -> None:
        """Chats that arrive together feed their prompts' common length as one batch (8 chats at once on an H200:
        p95 time to first token 239 -> 152 ms), then each its own rest, at least its last position, alone: its
        first answer token is picked with its own settings, as when it prefills alone."""
        if len(chats) < 2 or not self.prefill_together:
            for job in chats:
                self._start("mmu", job)
            return
        if len(chats) > PREFILL_ROWS[-1]:
            for i in range(0, len(chats), PREFILL_ROWS[-1]):
                self._start_chats(chats[i:i + PREFILL_ROWS[-1]])
            return
        prepared: list[tuple[ChatJob, tuple]] = []
        for job in chats:  # a request whose prompt cannot be built fails alone
            try:
                with torch.no_grad():
                    prepared.append((job, job.prepare()))
            except BaseException as exc:  # noqa: BLE001
                job.finish(Message("error", error=user_error(exc)))
        shared = min((embeds.shape[1] for _, (_, embeds) in prepared), default=0) - 1
        if len(prepared) >= 2 and shared >= 1:
            states = [state.clone() for _, (state, _) in prepared]  # a failure leaves the chats' states as they were
            try:
                prefill_together(self.runner, states, [embeds for _, (_, embeds) in prepared], shared)
                self.stats["prefilled_together"] += len(prepared)
                prepared = [(job, (state, embeds[:, shared:]))
                            for (job, (_, embeds)), state in zip(prepared, states)]
            except BaseException:  # noqa: BLE001 - each prefills alone instead
                log.exception("prefilling %d chats together failed; each prefills alone", len(prepared))
        for job, ready in prepared:
            self._start("mmu", job, ready)

    def _prefill_chat(self, job: ChatJob, prepared: tuple | None = None) -> tuple | None:
        state, embeds = prepared if prepared is not None else job.prepare()
        limit = self.model.config.mmu_positions
        room = limit - state.seqlen - embeds.shape[1]
        job.budget = min(job.max_new_tokens, room + 1)
        graph = self.runner.graph_for(GraphKey("mmu", 1, not job.params.greedy, False))
        graph.set_sampling(job.params, 1.0)
        graph.load_state(state)
        token = int(graph.prefill(embeds, job.generators[0])[0])
        job.state, job.seqlen, job.produced = state, graph.state.seqlen, [[token]]
        reason = self._stop_reason(job, token)
        if reason is not None:  # a one-token answer: the prompt is all the state takes
            job.state.copy_(graph.state)
        job.out.put(Message("tokens", [token], reason))
        if reason is not None:
            job.finish(Message("end", stop_reason=reason))
            return None
        return graph.state, [0], [None], graph.token[0], int(graph.position)

    def _prefill_images(self, job: ImageJob) -> tuple | None:
        guided = job.uncond is not None
        graph = self.runner.graph_for(GraphKey("t2i", 1, False, guided))
        graph.set_sampling(SamplingParams(), job.guidance_scale)
        graph.load_state(None)
        ids = torch.cat([job.prefix, job.uncond]) if guided else job.prefix
        graph.prefill_t2i(ids.to(self.model.device), None)
        n = job.width
        logits = graph.logits.expand(n, -1)  # after guidance; every image starts from the same prompt
        tokens = logits.argmax(-1)
        if not job.params.greedy:
            noise = torch.stack([torch.empty_like(logits[0]).exponential_(generator=g) for g in job.generators])
            knob = lambda v, dtype=None: torch.full((n, 1), v, device=logits.device, dtype=dtype)  # noqa: E731
            tokens = sample_tokens(logits, knob(max(job.params.temperature, 1e-5)),
                                   knob(job.params.top_k, torch.long), knob(job.params.top_p), noise)
        first = tokens.tolist()
        job.produced = [[t] for t in first]
        job.out.put(Message("tokens", columns=[first]))
        return graph.state, [0] * n, [1 if guided else None] * n, tokens, int(graph.position)

    def _join(self, batch: Batch, job: Job, source: InferenceState, rows: list[int], uncond_rows: list,
              tokens: Tensor | int, position: int) -> None:
        knobs = SlotKnobs(job.params, getattr(job, "guidance_scale", 1.0))
        needed = batch.used() + job.width
        pairs = knobs.guided or any(SlotKnobs(j.params, getattr(j, "guidance_scale", 1.0)).guided
                                    for j in batch.members())
        free = [s for s, e in enumerate(batch.slots) if e is None]
        if batch.layout is None or len(free) < job.width or pairs != batch.layout.pairs:
            self._relayout(batch, Layout(bucket_for(needed), pairs))
            free = [s for s, e in enumerate(batch.slots) if e is None]
        job.slots = free[:job.width]
        for i, slot in enumerate(job.slots):
            batch.slots[slot] = (job, i)
            token = tokens if isinstance(tokens, int) or tokens.dim() == 0 else tokens[i]
            batch.graph.put(batch.layout, slot, source, rows[i], uncond_rows[i], token, position, knobs)

    def _relayout(self, batch: Batch, new: Layout) -> None:
        """Pack the occupied slots into the first ones of the `new` layout."""
        occupied = [s for s, e in enumerate(batch.slots) if e is not None]
        if batch.layout is not None:
            batch.graph.move(batch.layout, new, [(s, d) for d, s in enumerate(occupied) if s != d or
                                                 new != batch.layout])
        entries = [batch.slots[s] for s in occupied]
        batch.slots = entries + [None] * (new.size - len(entries))
        for d, (job, i) in enumerate(entries):
            job.slots[i] = d
        batch.layout = new

    def _leave(self, batch: Batch, job: Job, reason: str | None, outbox: list[tuple[Job, Message]]) -> None:
        if isinstance(job, ChatJob) and job.state is not None:
            batch.graph.take(batch.layout, job.slots[0], job.state)
            job.state.seqlen = job.seqlen + len(job.produced[0]) - 1
        for slot in job.slots:
            batch.slots[slot] = None
        outbox.append((job, Message("end", stop_reason=reason)))
        members = batch.members()
        if not members:
            batch.layout, batch.slots = None, []
            return
        pairs = any(SlotKnobs(j.params, getattr(j, "guidance_scale", 1.0)).guided for j in members)
        size = bucket_for(batch.used())
        if size < batch.layout.size or pairs != batch.layout.pairs:
            self._relayout(batch, Layout(size, pairs))

    def _drop_cancelled(self, batch: Batch, outbox: list[tuple[Job, Message]]) -> None:
        for job in batch.members():
            if job.cancel.is_set():
                self._leave(batch, job, "cancelled", outbox)

    def _launch(self, task: str, batch: Batch, outbox: list[tuple[Job, Message]]) -> None:
        """Start one step of the batch without waiting for it; `_collect` reads its tokens next turn."""
        try:
            layout = batch.layout
            sampling = [(s, e[0].generators[e[1]]) for s, e in enumerate(batch.slots)
                        if e is not None and not e[0].params.greedy]
            batch.graph.refresh_noise(sampling)
            batch.graph.step(layout, bool(sampling))
            holders = [(e[0], e[1], s) for s, e in enumerate(batch.slots) if e is not None]
            batch.in_flight = InFlight(holders, batch.graph.tokens_after_step(layout.size))
            self.stats["steps"] += 1
            self.stats["widest"] = max(self.stats["widest"], batch.used())
        except BaseException as exc:  # noqa: BLE001 - every request of the batch fails; the worker goes on
            self._fail_batch(task, batch, exc, outbox)

    def _collect(self, task: str, batch: Batch, outbox: list[tuple[Job, Message]]) -> None:
        """The tokens of the step in flight to their requests (by the slots they held at its launch: rows may
        have moved since); the requests it finished leave the batch."""
        flight, batch.in_flight = batch.in_flight, None
        try:
            tokens = flight.read()
        except BaseException as exc:  # noqa: BLE001 - as in _launch
            self._fail_batch(task, batch, exc, outbox)
            return
        columns: dict[Job, list[int]] = {}
        for job, seq, slot in flight.holders:
            columns.setdefault(job, [0] * job.width)[seq] = tokens[slot]
        for job, column in columns.items():
            for produced, token in zip(job.produced, column):
                produced.append(token)
            if isinstance(job, ChatJob):
                reason = self._stop_reason(job, column[0])
                outbox.append((job, Message("tokens", column, reason)))
            else:
                n = len(job.produced[0])
                reason = "done" if n == self.model.config.num_image_tokens else None
                job.unsent.append(column)
                if reason is not None or n % job.report_every == 0:
                    outbox.append((job, Message("tokens", columns=job.unsent)))
                    job.unsent = []
            if reason is not None:
                self._leave(batch, job, reason, outbox)

    def _fail_batch(self, task: str, batch: Batch, exc: BaseException, outbox: list[tuple[Job, Message]]) -> None:
        log.error("batched %s step failed", task, exc_info=exc)
        error = user_error(exc)
        outbox.extend((job, Message("error", error=error)) for job in batch.members())
        batch.layout, batch.slots, batch.in_flight = None, [], None

    @staticmethod
    def _stop_reason(job: ChatJob, token: int) -> str | None:
        n = len(job.produced[0])
        if token == EOS_ID:
            return "eos"
        if n == job.budget:
            return "max_new_tokens" if job.budget == job.max_new_tokens else "position_limit"
        return None


def _task(job: Job) -> str:
    return "mmu" if isinstance(job, ChatJob) else "t2i"
