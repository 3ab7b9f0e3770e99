"""The image-chat tab's handlers and its per-browser state.

A conversation keeps, after each answer, the token ids the engine fed and sampled (`ChatRecord`). When the
engine no longer holds the chat (evicted, a retry, or a ZeroGPU call in a fresh process) it gets them back and
feeds them in one prefill: nothing is generated again.
"""
from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import gradio as gr

from omnimamba.engine import ChatRecord, Engine, EngineError
from omnimamba.metrics import RequestMetrics
from omnimamba.sampling import SamplingParams

from .format import md_text
from .handlers import Handlers, message_of, warning
from .inputs import (DEFAULT_QUESTION, MAX_QUESTION_CHARS, new_tokens, open_image, refuse, sampling,
                     text_input)


@dataclass
class Turn:
    question: str
    params: SamplingParams  # with the seed that was used
    record: ChatRecord  # the chat's ids after this answer (as far as it went, when stopped)


@dataclass
class Conversation:
    """One browser tab's chat, kept in gr.State. The engine session holds the model state; the last turn's
    record rebuilds it when the engine no longer has it."""
    image: str | None = None  # the uploaded file
    session_id: str | None = None
    turns: list[Turn] = field(default_factory=list)
    pending: str | None = None  # the question waiting for its answer
    last_metrics: RequestMetrics | None = None  # the last answer's, for the panel after Stop

    @property
    def record(self) -> ChatRecord:
        return self.turns[-1].record if self.turns else ChatRecord()


def input_box(busy: bool = False, text: str | None = None) -> gr.MultimodalTextbox:
    """The chat input while an answer streams (emptied, locked, a stop button) or when ready for the next message
    (holding `text` when given: a question that was not answered)."""
    if busy:
        return gr.MultimodalTextbox(value=None, interactive=False, submit_btn=False, stop_btn=True)
    value = {"value": {"text": text, "files": []}} if text is not None else {}
    return gr.MultimodalTextbox(**value, interactive=True, submit_btn=True, stop_btn=False)


def fits(engine: Engine, question: str, record: ChatRecord | None = None, session_id: str | None = None) -> None:
    """Refuse, before any work, a question that does not fit the chat (the app's record of it, the engine's
    session, or a new chat), with the engine's message of what to do."""
    try:
        engine.check_chat(question, session_id, record)
    except EngineError as exc:
        raise refuse(str(exc)) from None


def owned(method: Any, request: gr.Request | None) -> dict:
    """{"owner": the client's Gradio session} when the engine's `method` bounds sessions per owner, else {}: one
    client opening many chats then evicts only its own."""
    import inspect

    owner = getattr(request, "session_hash", None)
    return {"owner": owner} if owner and "owner" in inspect.signature(method).parameters else {}


class ChatHandlers(Handlers):
    def add_message(self, message: dict | None, history: list, conv: Conversation
                    ) -> tuple[list, Any, Conversation, str]:
        """The user's message goes into the chat at once (no GPU); `respond` answers it from the GPU queue.
        A mistake is shown beside the input, the message stays in the box, nothing else changes."""
        try:
            return self.accept(message, history, conv)
        except gr.Error as exc:
            conv.pending = None
            return gr.skip(), input_box(), conv, warning(exc.message)

    def accept(self, message: dict | None, history: list, conv: Conversation) -> tuple[list, Any, Conversation, str]:
        message = message or {}
        files = message.get("files") or []
        if len(files) > 1:
            raise refuse("Attach one image per message: a conversation is about one image.")
        text = (message.get("text") or "").strip()
        if not text and not files:
            raise refuse("Type a question, or attach an image (it will be described).")
        text = text_input(text or DEFAULT_QUESTION, "question", MAX_QUESTION_CHARS)
        note = ""
        if files:
            path = files[0]["path"] if isinstance(files[0], dict) else str(files[0])
            open_image(path)  # refuse a bad file now, before it is shown
            fits(self.engine, text)
            note = "New image: a new conversation starts." if conv.turns else ""
            self.forget(conv)
            conv, history = Conversation(image=path), [{"role": "user", "content": {"path": path}}]
        else:
            fits(self.engine, text, record=conv.record)
        conv.pending = text
        return history + [{"role": "user", "content": text}], input_box(busy=True), conv, note

    def respond(self, history: list, conv: Conversation, max_new_tokens: float, temperature: float, top_k: float,
                top_p: float, seed: float | None, request: gr.Request | None = None
                ) -> Iterator[tuple[list, Conversation, str, str, Any]]:
        """Stream (chat, state, panel, note, input box). Whatever happens, the last update re-enables the input and
        takes the panel out of its working state; a failure is said in the note, the conversation kept as it was."""
        if conv.pending is None:  # nothing to answer (the message was refused)
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), input_box()
            return
        question, conv.pending = conv.pending, None
        shown = history
        try:
            for shown, panel, note in self.answer(history, conv, question, max_new_tokens, temperature, top_k,
                                                  top_p, seed, owned(self.engine.restore_session, request)):
                yield shown, conv, panel, note, gr.skip()
        except Exception as exc:  # the question goes back into the box, to be changed and sent again
            answered = bool(shown) and shown[-1].get("role") == "assistant" and bool(shown[-1].get("content"))
            yield (shown if answered else history[:-1]), conv, self.ended_panel(conv.last_metrics, "Not answered"), \
                warning(message_of(exc, "respond")), input_box(text=None if answered else question)
            return
        yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), input_box()

    def answer(self, history: list, conv: Conversation, question: str, max_new_tokens: float, temperature: float,
               top_k: float, top_p: float, seed: float | None, owner: dict | None = None
               ) -> Iterator[tuple[list, str, str]]:
        params = sampling(temperature, top_k, top_p, seed)
        limit = new_tokens(max_new_tokens)
        reading = not self.engine.has_session(conv.session_id) and conv.image
        yield history, self.panel(progress="reading the image…" if reading else "starting"), ""
        session = self.session(conv, owner or {})
        history = history + [{"role": "assistant", "content": ""}]
        turn, event = None, None
        with closing(self.engine.chat(session, question, params, limit)) as events:
            for event in events:
                if turn is None:
                    turn = Turn(question, params, event.record)
                    conv.turns.append(turn)
                turn.record = event.record  # kept current, so a stopped answer is rebuilt as far as it went
                conv.last_metrics = event.metrics
                history[-1] = {"role": "assistant", "content": event.text}
                yield history, self.panel(event.metrics), ""
        if event is not None and event.note:
            yield history, self.panel(event.metrics), f"ℹ️ {md_text(event.note)}"

    def stopped(self, conv: Conversation) -> tuple[str, str, Any]:
        """Stop: the panel and the note say so; the answer so far stays (a follow-up goes on from it)."""
        return (self.ended_panel(conv.last_metrics, "Stopped"),
                "**Stopped.** The answer so far is kept; a follow-up goes on from it.", input_box())

    def session(self, conv: Conversation, owner: dict | None = None) -> str:
        """The engine session of `conv`; when the engine no longer has it, a new one fed the image and the
        last turn's record."""
        if self.engine.has_session(conv.session_id):
            return conv.session_id
        if conv.image and not Path(conv.image).is_file():
            raise refuse("This conversation's image is no longer on the server; attach it again to go on.")
        image = open_image(conv.image) if conv.image else None
        conv.session_id = self.engine.restore_session(image, conv.record, **(owner or {}))
        return conv.session_id

    def retry(self, history: list, conv: Conversation) -> tuple[list, Conversation, Any, str]:
        """Drop the last answer; `respond` then answers the same question again with the current settings."""
        if not conv.turns:
            conv.pending = None
            return gr.skip(), conv, input_box(), warning("There is no answer to retry yet.")
        turn = conv.turns.pop()
        while history and history[-1].get("role") == "assistant":
            history = history[:-1]
        self.forget(conv)  # its state includes the dropped answer; `session` rebuilds it without
        conv.pending = turn.question
        return history, conv, input_box(busy=True), ""

    def clear(self, conv: Conversation) -> tuple[list, Conversation, str, Any]:
        """A new chat; the panel keeps the last request's numbers."""
        self.forget(conv)
        return [], Conversation(), "", input_box()

    def forget(self, conv: Conversation) -> None:
        if conv.session_id is not None:
            self.engine.end_session(conv.session_id)
            conv.session_id = None

    def api_chat(self, image: str | None, question: str, session_id: str | None, max_new_tokens: float,
                 temperature: float, top_k: float, top_p: float, seed: float | None,
                 request: gr.Request | None = None) -> Iterator[tuple[str, dict, str]]:
        """Stream (answer so far, metrics, session_id). An image starts a new conversation; no image and a
        session_id from an earlier call asks a follow-up (the model's state is reused); neither: text only."""
        question = text_input(question, "question", MAX_QUESTION_CHARS)
        params = sampling(temperature, top_k, top_p, seed)
        limit = new_tokens(max_new_tokens)
        owner = owned(self.engine.new_session, request)
        if image:
            picture = open_image(image)
            fits(self.engine, question)
            session_id = self.engine.new_session(picture, **owner)
        elif session_id:
            if not self.engine.has_session(session_id):
                raise refuse("Unknown or expired session_id: start a new conversation (send the image again).")
            fits(self.engine, question, session_id=session_id)
        else:
            fits(self.engine, question)
            session_id = self.engine.new_session(None, **owner)
        with closing(self.engine.chat(session_id, question, params, limit)) as events:
            for event in events:
                yield event.text, {**event.metrics.as_dict(), "seed": params.seed, "note": event.note}, session_id
