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

from .format import md_text, panel_html
from .inputs import refuse

log = logging.getLogger("omnimamba.app")


def message_of(exc: BaseException, name: str) -> str:
    """What the user reads for a failure: a refusal's or a user error's own message; for anything unexpected a
    generic line (the traceback goes to the server log, never to the page)."""
    from omnimamba.model import PositionLimitError
    from omnimamba.model.vision import ImageError
    from omnimamba.tokenizer import PromptError

    if isinstance(exc, gr.Error):
        return str(exc.message)
    if isinstance(exc, PositionLimitError):
        return position_message(exc)
    if isinstance(exc, (EngineError, CompareError, ImageError, PromptError)):
        return str(exc)
    log.error("handler %s failed", name, exc_info=exc)
    return "Something went wrong on the server (it is logged there). Please try again."


def position_message(exc: Exception) -> str:
    """A chat that does not fit the model's positions, and what to do about it."""
    needed, available = getattr(exc, "needed", None), getattr(exc, "available", None)
    if needed is None or available is None:
        return f"{exc}"
    return (f"This does not fit: the conversation would need {needed:,} positions and this model has {available:,}. "
            "Start a new chat (clear it), or ask a shorter question.")


@contextmanager
def as_messages(name: str) -> Iterator[None]:
    """Failures inside -> messages for the user (never a traceback). The engine keeps serving after an EngineError;
    anything unexpected is logged here in full."""
    try:
        yield
    except gr.Error:
        raise
    except Exception as exc:
        raise refuse(message_of(exc, name)) from None


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

    def ended_panel(self, metrics: RequestMetrics | None, ended: str, detail: str = "") -> str:
        return panel_html(self.info, metrics, detail, ended)


def warning(message: str) -> str:
    """A mistake shown beside the input (Markdown), instead of an error toast over the outputs."""
    return f"⚠️ {md_text(message)}" if message else ""


def beside(handler: Callable, outputs: int, note: int, panel: int | None = None, panel_html_of: Callable | None = None
           ) -> Callable:
    """A UI handler whose failures are shown in its note output (`note`: its index among `outputs`), with every other
    output left as it is, and the panel (when given) leaving its working state; nothing is raised, so the event
    ends cleanly and the next one runs."""
    def on_error(exc: BaseException) -> tuple:
        values = [gr.skip()] * outputs
        values[note] = warning(message_of(exc, handler.__name__))
        if panel is not None and panel_html_of is not None:
            values[panel] = panel_html_of()
        return tuple(values)

    if inspect.isgeneratorfunction(handler):
        @functools.wraps(handler)
        def stream(*args: Any, **kwargs: Any) -> Iterator:
            try:
                yield from handler(*args, **kwargs)
            except Exception as exc:
                yield on_error(exc)
        return stream

    @functools.wraps(handler)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except Exception as exc:
            return on_error(exc)
    return call


class NotCopied:
    """A callable that deep copies as itself. Gradio deep-copies every component's properties on each page view;
    a bound handler method there (a gr.State's delete_callback) would drag the engine, and with it every weight
    of the model, into that copy: seconds per view, and a copy of the weights in GPU memory."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __copy__(self) -> "NotCopied":
        return self

    def __deepcopy__(self, memo: dict) -> "NotCopied":
        return self
