"""GPU-bound handlers: one queue, and on Hugging Face ZeroGPU a GPU reserved per call for as long as the
request needs (a duration that follows the tokens and images asked for, so a 0.4 s image does not spend a
visitor's daily quota on a two-minute reservation). `app.py` imports `spaces` before torch, as ZeroGPU needs.

The queue's width is the Blocks queue's default concurrency (`gpu_slots`, set once at launch): a batching engine
lets as many requests in as its largest decode batch holds and steps them together; a one-at-a-time engine, and
ZeroGPU (one request per GPU call), take one."""
from __future__ import annotations

import math
import os
from typing import Any, Callable

from omnimamba.batching import BUCKETS

from .handlers import user_errors

GPU_QUEUE = "gpu"  # every GPU-bound handler shares this concurrency id, `gpu_slots` wide
ZERO_GPU = "SPACES_ZERO_GPU" in os.environ  # set on Hugging Face ZeroGPU hardware
START_S = 20.0  # a fresh ZeroGPU worker: CUDA graphs captured again, maybe a Triton autotune, the image read
TOKEN_S = 0.02  # per text token asked for (1.5 ms on an H100; margin for a shared, colder GPU)
IMAGE_S = 2.0  # per image (0.4 s on an H100), doubled with guidance (two rows per image)
LONGEST_S = 300.0

try:  # present on Hugging Face Spaces
    import spaces
except ImportError:
    spaces = None

Seconds = Callable[..., float]


def seconds(tokens: Any = 0, images: Any = 0, guidance: Any = 1.0) -> float:
    """GPU seconds to reserve for a request of `tokens` text tokens and `images` images. Bad values (the
    handler refuses them with a message) count as nothing."""
    def number(value: Any) -> float:
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) and value > 0 else 0.0
    per_image = IMAGE_S * (2 if number(guidance) not in (0.0, 1.0) else 1)
    return min(LONGEST_S, START_S + TOKEN_S * number(tokens) + per_image * number(images))


def by_tokens(position: int) -> Seconds:
    """Duration of a handler whose argument `position` is max_new_tokens."""
    return lambda *args, **kwargs: seconds(tokens=args[position] if len(args) > position else 0)


def by_images(count: int | None, guidance: int) -> Seconds:
    """Duration of a handler whose arguments `count` (None: one image) and `guidance` say what it draws."""
    def duration(*args: Any, **kwargs: Any) -> float:
        pick = lambda i: args[i] if i is not None and len(args) > i else None  # noqa: E731
        return seconds(images=1 if count is None else pick(count), guidance=pick(guidance))
    return duration


def one_pair(guidance: int, tokens: int) -> Seconds:
    """Duration of one Show-o pair: an image or an answer, whichever the pair turns out to be."""
    def duration(*args: Any, **kwargs: Any) -> float:
        pick = lambda i: args[i] if len(args) > i else None  # noqa: E731
        return max(seconds(images=1, guidance=pick(guidance)), seconds(tokens=pick(tokens)))
    return duration


def on_gpu(fn: Callable, duration: Seconds) -> Callable:
    """fn, holding a ZeroGPU GPU for `duration(*fn's arguments)` seconds per call; fn itself elsewhere."""
    return spaces.GPU(duration=duration)(fn) if spaces is not None else fn


def gpu_event(handler: Callable, duration: Seconds | None) -> dict:
    """Keyword arguments of a GPU-bound listener: in the GPU queue (`gpu_slots` at a time), errors as messages,
    on the GPU per call. duration None: the handler asks for the GPU itself, piece by piece (e.g. one Show-o pair
    per call)."""
    fn = user_errors(handler)
    return dict(fn=on_gpu(fn, duration) if duration is not None else fn, concurrency_limit="default",
                concurrency_id=GPU_QUEUE)


def gpu_slots(batching: bool) -> int:
    """Requests the GPU queue lets in at once: a batching engine's largest batch, else one."""
    return BUCKETS[-1] if batching else 1


def wants_batching(choice: str) -> bool:
    """--batching auto|on|off: auto batches concurrent requests except on ZeroGPU, where each request holds the
    GPU for its own call."""
    return choice == "on" or (choice == "auto" and not ZERO_GPU)
