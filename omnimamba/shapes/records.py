"""Infinite seeded streams of training records in the training contract's formats (never held-out combos).

    chat_records(seed)  {"image": PIL | None, "conversations": [{"from": "human"|"gpt", "value": str}, ...]}
                        image chats of 1-3 turns; some text-only chats that answer from a caption in the prompt
    t2i_records(seed)   {"caption": str, "image": PIL}
    text_records(seed)  {"text": str}: captions and caption-grounded Q/A in the chat template (stage 0),
                        laid out as the engine feeds a chat: "USER: q ASSISTANT: a<|endoftext|>USER: ..."
Each stream draws from its own generator derived from (seed, stream name), so one seed gives independent
streams; give every data-loader worker its own seed. Evaluation (quality.py) draws from a separate domain.
"""
from __future__ import annotations

import zlib
from typing import Iterator

import numpy as np

from ..tokenizer import CHAT_TURN
from .language import caption
from .questions import QA, Facts, ask, facts_of_description, facts_of_scene
from .world import TRAIN_COMBOS, render, sample_scene

# how often each question type is drawn for an image chat (describe is the longest answer: fewer of them)
CHAT_MIX = {"colour": 0.22, "shape": 0.22, "count": 0.2, "relation": 0.24, "describe": 0.12}
# `--where-questions`: one turn in seven asks where a named shape is (docs/shapes-model.md, the next run)
WHERE_MIX = {**{t: w * 6 / 7 for t, w in CHAT_MIX.items()}, "where": 1 / 7}
TEXT_ONLY_TYPES = ("colour", "shape", "count", "relation")  # what a caption alone can answer
MAX_TURNS = 3
EOS_TEXT = "<|endoftext|>"  # the tokenizer reads it as the EOS id


def stream_rng(seed: int, stream: str) -> np.random.Generator:
    """A generator for one named stream of one seed (stable across runs and Python versions)."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(stream.encode())]))


def chat_records(seed: int, text_only: float = 0.15, multi_turn: float = 0.3,
                 mix: dict[str, float] = CHAT_MIX) -> Iterator[dict]:
    """Image chats (1 turn, or 2-3 with probability `multi_turn`) and, with probability `text_only`,
    chats without an image whose first question carries the caption it is answered from. `mix`: how often each
    question type of an image chat is drawn."""
    rng = stream_rng(seed, "chat")
    while True:
        scene = sample_scene(rng, TRAIN_COMBOS)
        turns = int(rng.integers(2, MAX_TURNS + 1)) if rng.random() < multi_turn else 1
        if rng.random() < text_only:
            text, description = caption(scene, rng)
            qas = questions(facts_of_description(description), rng, turns, TEXT_ONLY_TYPES, mix)
            context = text[0].upper() + text[1:] + "."
            yield {"image": None, "conversations": conversation(qas, context)}
        else:
            qas = questions(facts_of_scene(scene), rng, turns, tuple(mix), mix)
            yield {"image": render(scene), "conversations": conversation(qas)}


def questions(facts: Facts, rng: np.random.Generator, turns: int, types: tuple[str, ...],
              mix: dict[str, float] = CHAT_MIX) -> list[QA]:
    """Up to `turns` questions of different types (types that would be ambiguous here are skipped)."""
    weights = np.array([mix[t] for t in types])
    order = rng.choice(len(types), len(types), replace=False, p=weights / weights.sum())
    found = []
    for i in order:
        qa = ask(facts, types[i], rng)
        if qa is not None:
            found.append(qa)
        if len(found) == turns:
            break
    return found  # never empty: a count question is always possible


def conversation(qas: list[QA], context: str | None = None) -> list[dict]:
    turns = []
    for i, qa in enumerate(qas):
        question = f"{context} {qa.question}" if context and i == 0 else qa.question
        turns += [{"from": "human", "value": question}, {"from": "gpt", "value": qa.answer}]
    return turns


def t2i_records(seed: int) -> Iterator[dict]:
    rng = stream_rng(seed, "t2i")
    while True:
        scene = sample_scene(rng, TRAIN_COMBOS)
        yield {"caption": caption(scene, rng)[0], "image": render(scene)}


def text_records(seed: int, captions_only: float = 0.4) -> Iterator[dict]:
    """Stage 0 text: bare captions, or a caption-grounded chat in the inference chat template."""
    rng = stream_rng(seed, "text")
    while True:
        text, description = caption(sample_scene(rng, TRAIN_COMBOS), rng)
        if rng.random() < captions_only:
            yield {"text": text[0].upper() + text[1:] + "."}
            continue
        turns = int(rng.integers(1, MAX_TURNS + 1))
        qas = questions(facts_of_description(description), rng, turns, TEXT_ONLY_TYPES)
        chat = conversation(qas, text[0].upper() + text[1:] + ".")
        pairs = zip(chat[::2], chat[1::2])
        # turns joined by <|endoftext|> (id 0), as the engine feeds them; the text pipeline appends the last EOS
        yield {"text": EOS_TEXT.join(f"{CHAT_TURN.format(question=h['value'])} {g['value']}" for h, g in pairs)}
