"""Where a request's tokens come from: the model under the engine's lock (one request at a time), or the
batching scheduler (many at once, see scheduler.py). Both give the same steps (generation.ChatStep /
ImageStep), so the engine turns them into events one way, and closing either stream stops the request.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import Tensor

from .events import EngineError, user_error
from .generation import ChatStep, ImageStep, ModelRunner, chat_tokens, image_tokens
from .jobs import ChatJob, ImageJob, Job, Message
from .model import InferenceState
from .sampling import SamplingParams
from .scheduler import Scheduler

Prepare = Callable[[], "tuple[InferenceState, Tensor]"]  # on the device's thread: (working state, embeddings)


@dataclass
class ChatRun:
    """A chat turn's steps; once they end (or are closed), `state` holds the prompt and `tokens` but the last."""
    steps: Iterator[ChatStep] | None = None
    state: InferenceState | None = None
    tokens: list[int] = field(default_factory=list)


def locked_chat(runner: ModelRunner, lock: threading.Lock, prepare: Prepare, params: SamplingParams,
                max_new_tokens: int) -> ChatRun:
    run = ChatRun()

    def steps() -> Iterator[ChatStep]:
        with LockedOOM(lock, runner.model.device):
            run.state, embeds = prepare()
            inner = chat_tokens(runner, run.state, embeds, params, max_new_tokens,
                                generator(params.seed, runner.model.device))
            try:
                for step in inner:
                    run.tokens.append(step.token)
                    yield step
            finally:
                inner.close()  # stopped: the state keeps what was taken (a failure already left it untouched)
    run.steps = steps()
    return run


def batched_chat(scheduler: Scheduler, prepare: Prepare, params: SamplingParams, max_new_tokens: int) -> ChatRun:
    run = ChatRun()
    job = ChatJob(params, [generator(params.seed, scheduler.model.device)], prepare=prepare,
                  max_new_tokens=max_new_tokens)

    def steps() -> Iterator[ChatStep]:
        messages = token_messages(scheduler, job)
        try:
            for message in messages:
                yield ChatStep(message.tokens[0], message.stop_reason)
        finally:
            messages.close()  # stopped early: the job is cancelled and has ended when this returns
            if job.over == "end" and job.state is not None:
                run.state, run.tokens = job.state, job.produced[0]
    run.steps = steps()
    return run


def locked_images(runner: ModelRunner, lock: threading.Lock, prefix: Tensor, uncond: Tensor | None,
                  params: SamplingParams, guidance_scale: float, report_every: int,
                  generators: list[torch.Generator] | None) -> Iterator[ImageStep]:
    """All images of the request as one batch (prefix (n, 72))."""
    device = runner.model.device
    with LockedOOM(lock, device):
        steps = image_tokens(runner, prefix.to(device), params, guidance_scale,
                             uncond.to(device) if uncond is not None else None, report_every, generators)
        try:
            yield from steps
        finally:
            steps.close()


def batched_images(scheduler: Scheduler, prefix: Tensor, uncond: Tensor | None, params: SamplingParams,
                   guidance_scale: float, report_every: int, generators: list[torch.Generator | None]
                   ) -> Iterator[ImageStep]:
    """The images join the scheduler's text-to-image batch one slot each; steps as `image_tokens` gives them
    (after the first token, every `report_every`, and done), with the tokens on the CPU."""
    guided = uncond is not None and guidance_scale != 1.0
    job = ImageJob(params, generators, prefix=prefix[:1], uncond=uncond[:1] if guided else None,
                   guidance_scale=guidance_scale if guided else 1.0,
                   report_every=report_every or scheduler.model.config.num_image_tokens)
    total = scheduler.model.config.num_image_tokens
    columns: list[list[int]] = []
    messages = token_messages(scheduler, job)
    try:
        for message in messages:
            columns.extend(message.columns)
            k = len(columns)
            if k == 1 or (report_every and k % report_every == 0 and k < total):
                yield ImageStep(torch.tensor(columns).T, done=False)
    finally:
        messages.close()  # stopped early: the job is cancelled and has ended when this returns
    if len(columns) != total:
        raise EngineError(f"image generation ended after {len(columns)} of {total} tokens")
    yield ImageStep(torch.tensor(columns).T, done=True)


def token_messages(scheduler: Scheduler, job: Job) -> Iterator[Message]:
    """Submit `job` and yield its token messages until its end (an error message raises). Closed before the
    end, it cancels the job (the slot frees at the next step) and waits for the worker to let it go."""
    scheduler.submit(job)
    ended = False
    try:
        while True:
            message = scheduler.receive(job)
            if message.kind == "end":
                ended = True
                return
            yield message
    finally:
        if not ended:
            job.cancel.set()
            drain(scheduler, job)


def drain(scheduler: Scheduler, job: Job) -> bool:
    """Wait for a stopped job's end; False when it failed instead (its error may have been read already)."""
    try:
        while not (job.over and job.out.empty()):
            scheduler.receive(job)
        return job.over == "end"
    except Exception:  # noqa: BLE001 - the request is being abandoned; its error has no reader
        return False


def generator(seed: int | None, device: torch.device) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, ()).item()))
    return gen


class LockedOOM:
    """Holds the GPU lock; turns an out-of-memory error into an EngineError after freeing the cache."""

    def __init__(self, lock: threading.Lock, device: torch.device):
        self.lock, self.device = lock, device

    def __enter__(self) -> None:
        self.lock.acquire()

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is not None and issubclass(exc_type, torch.OutOfMemoryError):
                raise user_error(exc) from exc
        finally:
            self.lock.release()
        return False
