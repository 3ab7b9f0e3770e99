"""What the engine streams back (chat and image events, a chat's record) and the one error a user can act on."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from .metrics import RequestMetrics


class EngineError(RuntimeError):
    """A request that failed for a reason the user can act on; the engine keeps serving."""


def user_error(exc: BaseException) -> BaseException:
    """What a user is told for `exc`: the GPU running out of memory becomes an EngineError saying what to do (the
    cache is emptied, so the next request has room); anything else stays as it is."""
    if isinstance(exc, torch.OutOfMemoryError):
        torch.cuda.empty_cache()
        return EngineError("the GPU ran out of memory for this request; try fewer images or tokens")
    return exc


@dataclass(frozen=True)
class ChatRecord:
    """A chat's token ids: what was fed after the image block, and the last sampled token not yet fed. Enough
    to rebuild the chat's state with one prefill (`Engine.restore_session`) wherever its session went."""
    history: tuple[int, ...] = ()
    pending: tuple[int, ...] = ()
    turns: int = 0


@dataclass
class ChatEvent:
    delta: str  # new text since the last event
    text: str  # the whole answer so far
    metrics: RequestMetrics
    done: bool = False
    note: str | None = None  # e.g. why the answer stopped early
    record: ChatRecord | None = None  # the chat's ids if the answer ended here


@dataclass
class ImageEvent:
    images: list[Image.Image]
    metrics: RequestMetrics
    done: bool = False
    rows_done: int = 0  # token rows generated so far (of image_grid)
    note: str | None = None
    seeds: list[int] | None = None  # the seed of each image (None: greedy, the same image for any seed)
