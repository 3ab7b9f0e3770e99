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

from omnimamba.engine import ChatRecord
from omnimamba.sampling import SamplingParams

from .handlers import Handlers
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


def input_box(busy: bool = False) -> gr.MultimodalTextbox:
    """The chat input while an answer streams (emptied, locked, a stop button) or when ready for the next message."""
    if busy:
        return gr.MultimodalTextbox(value=None, interactive=False, submit_btn=False, stop_btn=True)
    return gr.MultimodalTextbox(interactive=True, submit_btn=True, stop_btn=False)


class ChatHandlers(Handlers):
    def add_message(self, message: dict | None, history: list, conv: Conversation) -> tuple[list, Any, Conversation]:
        """The user's message goes into the chat at once (no GPU); `respond` answers it from the GPU queue."""
        message = message or {}
        files = message.get("files") or []
        if len(files) > 1:
            raise refuse("Attach one image per message: a conversation is about one image.")
        text = (message.get("text") or "").strip()
        if not text and not files:
            raise refuse("Type a question, or attach an image (it will be described).")
        text = text_input(text or DEFAULT_QUESTION, "question", MAX_QUESTION_CHARS)
        if files:
            path = files[0]["path"] if isinstance(files[0], dict) else str(files[0])
            open_image(path)  # refuse a bad file now, before it is shown
            if conv.turns:
                gr.Info("New image: a new conversation starts.")
            self.forget(conv)
            conv, history = Conversation(image=path), [{"role": "user", "content": {"path": path}}]
        conv.pending = text
        return history + [{"role": "user", "content": text}], input_box(busy=True), conv

    def respond(self, history: list, conv: Conversation, max_new_tokens: float, temperature: float, top_k: float,
                top_p: float, seed: float | None) -> Iterator[tuple[list, Conversation, str]]:
        if conv.pending is None:  # nothing to answer (the message was refused)
            yield gr.skip(), gr.skip(), gr.skip()
            return
        params = sampling(temperature, top_k, top_p, seed)
        limit = new_tokens(max_new_tokens)
        question, conv.pending = conv.pending, None
        reading = not self.engine.has_session(conv.session_id) and conv.image
        yield history, conv, self.panel(progress="reading the image…" if reading else "starting")
        session = self.session(conv)
        history = history + [{"role": "assistant", "content": ""}]
        turn, event = None, None
        with closing(self.engine.chat(session, question, params, limit)) as events:
            for event in events:
                if turn is None:
                    turn = Turn(question, params, event.record)
                    conv.turns.append(turn)
                turn.record = event.record  # kept current, so a stopped answer is rebuilt as far as it went
                history[-1] = {"role": "assistant", "content": event.text}
                yield history, conv, self.panel(event.metrics)
        if event is not None and event.note:
            gr.Info(event.note)

    def session(self, conv: Conversation) -> str:
        """The engine session of `conv`; when the engine no longer has it, a new one fed the image and the
        last turn's record."""
        if self.engine.has_session(conv.session_id):
            return conv.session_id
        if conv.image and not Path(conv.image).is_file():
            raise refuse("This conversation's image is no longer on the server; attach it again to go on.")
        image = open_image(conv.image) if conv.image else None
        record = conv.turns[-1].record if conv.turns else ChatRecord()
        conv.session_id = self.engine.restore_session(image, record)
        return conv.session_id

    def retry(self, history: list, conv: Conversation) -> tuple[list, Conversation, Any]:
        """Drop the last answer; `respond` then answers the same question again with the current settings."""
        if not conv.turns:
            raise refuse("There is no answer to retry yet.")
        turn = conv.turns.pop()
        while history and history[-1].get("role") == "assistant":
            history = history[:-1]
        self.forget(conv)  # its state includes the dropped answer; `session` rebuilds it without
        conv.pending = turn.question
        return history, conv, input_box(busy=True)

    def clear(self, conv: Conversation) -> tuple[list, Conversation, str]:
        self.forget(conv)
        return [], Conversation(), self.panel()

    def forget(self, conv: Conversation) -> None:
        if conv.session_id is not None:
            self.engine.end_session(conv.session_id)
            conv.session_id = None

    def api_chat(self, image: str | None, question: str, session_id: str | None, max_new_tokens: float,
                 temperature: float, top_k: float, top_p: float, seed: float | None
                 ) -> Iterator[tuple[str, dict, str]]:
        """Stream (answer so far, metrics, session_id). An image starts a new conversation; no image and a
        session_id from an earlier call asks a follow-up (the model's state is reused); neither: text only."""
        question = text_input(question, "question", MAX_QUESTION_CHARS)
        params = sampling(temperature, top_k, top_p, seed)
        limit = new_tokens(max_new_tokens)
        if image:
            session_id = self.engine.new_session(open_image(image))
        elif session_id:
            if not self.engine.has_session(session_id):
                raise refuse("Unknown or expired session_id: start a new conversation (send the image again).")
        else:
            session_id = self.engine.new_session(None)
        with closing(self.engine.chat(session_id, question, params, limit)) as events:
            for event in events:
                yield event.text, {**event.metrics.as_dict(), "seed": params.seed, "note": event.note}, session_id
