"""What the batching scheduler (scheduler.py) passes around: a request (`Job`, one per chat turn or image
request), the messages it sends back to the request's consumer, and a task's decode batch with the step in
flight."""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from .batching import BatchGraph, Layout
from .model import InferenceState
from .sampling import SamplingParams


@dataclass
class Message:
    kind: str  # "tokens", "end", "error"
    tokens: list[int] = field(default_factory=list)  # a chat's new token
    stop_reason: str | None = None
    error: BaseException | None = None
    columns: list[list[int]] = field(default_factory=list)  # images: the new columns (one token per image each)


@dataclass(eq=False)
class Job:
    """One request. The consumer reads `out`; it sets `cancel` to stop (the slot frees at the next step)."""
    params: SamplingParams
    generators: list[torch.Generator | None]  # one per sequence (a chat has one)
    out: queue.Queue = field(default_factory=queue.Queue)
    cancel: threading.Event = field(default_factory=threading.Event)
    slots: list[int] = field(default_factory=list)
    produced: list[list[int]] = field(default_factory=list)  # tokens per sequence
    over: str | None = None  # "end" or "error" once the worker let it go (set before the message is sent)

    def finish(self, message: Message) -> None:
        self.over = message.kind
        self.out.put(message)

    @property
    def width(self) -> int:
        return len(self.generators)


@dataclass(eq=False)
class ChatJob(Job):
    prepare: Callable[[], tuple[InferenceState, Tensor]] | None = None  # on the worker: (working state, embeds)
    max_new_tokens: int = 1
    state: InferenceState | None = None  # the chat's own one-row state; holds the prompt and fed tokens at "end"
    budget: int = 0
    seqlen: int = 0  # the state's length once it has taken what was fed


@dataclass(eq=False)
class ImageJob(Job):
    prefix: Tensor | None = None  # (1, 72) caption ids
    uncond: Tensor | None = None  # (1, 72) the unconditional caption when guided
    guidance_scale: float = 1.0
    # columns are sent after the first token, every `report_every` tokens and at the end: the consumer only looks
    # then, and a message per step per request costs the serving thread a wake-up of every consumer each step
    report_every: int = 1
    unsent: list[list[int]] = field(default_factory=list)


@dataclass
class InFlight:
    """A launched step: who held which slot when it was launched, and how to read its tokens."""
    holders: list[tuple[Job, int, int]]  # (job, its sequence, slot)
    read: Callable[[], list[int]]


@dataclass
class Batch:
    graph: BatchGraph
    layout: Layout | None = None
    slots: list[tuple[Job, int] | None] = field(default_factory=list)  # (job, its sequence) per slot
    in_flight: InFlight | None = None

    def members(self) -> list[Job]:
        return list(dict.fromkeys(entry[0] for entry in self.slots if entry is not None))

    def used(self) -> int:
        return sum(entry is not None for entry in self.slots)
