"""Image-chat sessions: who may hold how many, which ones are forgotten first, and which keep a live state.

A session id is a bearer token: 128 random bits (uuid4) that let whoever holds it ask follow-ups in that chat
(and so learn what the image showed and what was said) and end it. It grants nothing else: no other session,
no listing, no owner's other chats. The owner key (the app passes the Gradio session hash or the client's
address) only bounds how many chats one client can keep: a client that opens more than `per_owner` chats
forgets its own oldest, never anyone else's. `max_total` is a memory bound only; beyond it the least recently
used chat of the owners holding the most chats goes first, so a flood of new chats evicts the flooder.

Every change to the table happens under one lock, so threads may create, end and use sessions freely.
"""
from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterator

from torch import Tensor

from .model import InferenceState

ANONYMOUS = ""  # the owner of sessions opened without one (the Python API, the CLI)


@dataclass
class ChatSession:
    image_embeds: Tensor | None  # (1, patches, d) on CPU, or None for a chat without an image
    owner: str = ANONYMOUS
    history: list[int] = field(default_factory=list)  # every text id fed after the image block
    pending: list[int] = field(default_factory=list)  # sampled but not yet fed (the last token of an answer)
    state: InferenceState | None = None  # live recurrent state (None when evicted or never built)
    turns: int = 0
    busy: bool = False  # a turn is running; a second one at the same time is refused


class SessionBusyError(RuntimeError):
    pass


class SessionStore:
    """Sessions by id, least recently used first; see the module docstring for the eviction rules."""

    def __init__(self, per_owner: int = 32, max_total: int = 1024, max_live_states: int = 16):
        if min(per_owner, max_total, max_live_states) < 1:
            raise ValueError("session limits must be at least 1")
        self.per_owner, self.max_total, self.max_live_states = per_owner, max_total, max_live_states
        self.lock = threading.RLock()
        self._sessions: OrderedDict[str, ChatSession] = OrderedDict()
        self._counts: dict[str, int] = {}

    def add(self, session: ChatSession) -> str:
        session_id = uuid.uuid4().hex
        with self.lock:
            self._sessions[session_id] = session
            self._counts[session.owner] = self._counts.get(session.owner, 0) + 1
            while self._counts[session.owner] > self.per_owner:
                self._drop(self._oldest_of(session.owner))
            while len(self._sessions) > self.max_total:  # the oldest chat of the owner(s) holding the most
                most = max(self._counts.values())
                self._drop(next(sid for sid, s in self._sessions.items() if self._counts[s.owner] == most))
        return session_id

    def get(self, session_id: str | None) -> ChatSession | None:
        with self.lock:
            return self._sessions.get(session_id) if isinstance(session_id, str) else None

    def __getitem__(self, session_id: str) -> ChatSession:
        session = self.get(session_id)
        if session is None:
            raise KeyError(session_id)
        return session

    def __contains__(self, session_id: object) -> bool:
        return self.get(session_id) is not None  # type: ignore[arg-type]

    def __len__(self) -> int:
        with self.lock:
            return len(self._sessions)

    def values(self) -> list[ChatSession]:
        """A snapshot, least recently used first."""
        with self.lock:
            return list(self._sessions.values())

    def __iter__(self) -> Iterator[str]:
        with self.lock:
            return iter(list(self._sessions))

    def remove(self, session_id: str) -> None:
        with self.lock:
            if session_id in self._sessions:
                self._drop(session_id)

    def count(self, owner: str) -> int:
        with self.lock:
            return self._counts.get(owner, 0)

    def begin_turn(self, session_id: str) -> ChatSession | None:
        """Mark the session busy (refusing a second concurrent turn) and most recently used."""
        with self.lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if session.busy:
                raise SessionBusyError("this conversation is still answering; wait for it or stop it first")
            session.busy = True
            self._sessions.move_to_end(session_id)
            return session

    def end_turn(self, session: ChatSession) -> None:
        with self.lock:
            session.busy = False

    def keep_live(self, session: ChatSession, state: InferenceState) -> None:
        """Give `session` its live state; the least recently used live states beyond the bound are dropped
        (those sessions are rebuilt from their history on their next turn)."""
        with self.lock:
            session.state = state
            others = [s for s in self._sessions.values() if s.state is not None and s is not session and not s.busy]
            for old in others[:max(0, len(others) + 1 - self.max_live_states)]:  # least recently used first
                old.state = None

    def _oldest_of(self, owner: str) -> str:
        return next(sid for sid, s in self._sessions.items() if s.owner == owner)

    def _drop(self, session_id: str) -> None:
        session = self._sessions.pop(session_id)
        self._counts[session.owner] -= 1
        if not self._counts[session.owner]:
            del self._counts[session.owner]
