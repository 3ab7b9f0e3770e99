"""What every tab's handlers share: the engine, the live panel, and failures turned into messages."""
from __future__ import annotations

import functools
import inspect
import logging
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import gradio as gr

from omnimamba.compare import CompareError
from omnimamba.engine import Engine, EngineError
from omnimamba.metrics import RequestMetrics

from .format import panel_html
from .inputs import refuse

log = logging.getLogger("omnimamba.app")


@contextmanager
def as_messages(name: str) -> Iterator[None]:
    """Failures inside -> messages for the user (never a traceback). The engine keeps serving after an EngineError;
    anything unexpected is logged here in full."""
    try:
        yield
    except gr.Error:
        raise
    except (EngineError, CompareError) as exc:
        raise refuse(str(exc)) from None
    except Exception:
        log.exception("handler %s failed", name)
        raise refuse("Something went wrong on the server (it is logged there). Please try again.") from None


def user_errors(fn: Callable) -> Callable:
    """Handler (streamed or not) -> the same handler, with failures turned into messages (see `as_messages`)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args: Any, **kwargs: Any) -> Iterator:
            with as_messages(fn.__name__):
                yield from fn(*args, **kwargs)
        return stream

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        with as_messages(fn.__name__):
            return fn(*args, **kwargs)
    return call


class Handlers:
    """One tab's handlers: thin streaming wrappers over the one shared Engine. Per-request settings travel as
    arguments and per-browser state in gr.State; nothing per request is stored here."""

    def __init__(self, engine: Engine, info: dict | None = None):
        self.engine = engine
        self.info = info if info is not None else engine.info()

    def panel(self, metrics: RequestMetrics | None = None, progress: str = "") -> str:
        return panel_html(self.info, metrics, progress)
