"""GPT-NeoX-20B tokenizer with OmniMamba's added tokens, and the two prompt formats (reference §4).

Image chat (the official inference template, "phi1.5"):  "USER: {question} ASSISTANT:"  (no BOS/EOS);
later turns follow the answer and its <|endoftext|>:       "USER: {question} ASSISTANT:"
Text to image: [<|t2i|>, <|sot|>] + caption ids (first 68 kept, left-padded with [PAD]) + [<|eot|>, <|soi|>].
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from tokenizers import Tokenizer

from .model.omnimamba import EOS_ID, EOT_ID, PAD_ID, SOI_ID, SOT_ID, T2I_ID

ADDED_TOKENS = ["<|soi|>", "<|eoi|>", "<|sot|>", "<|eot|>", "<|t2i|>", "<|mmu|>", "<|soc|>", "<|eoc|>", "<|lvg|>"]
BASE_VOCAB = 50277
CHAT_TURN = "USER: {question} ASSISTANT:"


class PromptError(ValueError):
    """A prompt the model cannot take (empty, or not text)."""


@dataclass(frozen=True)
class Caption:
    ids: list[int]  # the full T2I prefix (caption_len + 4 ids)
    truncated: bool  # the prompt had more than caption_len tokens; its tail was dropped (official behaviour)
    num_tokens: int  # tokens in the prompt before truncation


class OmniTokenizer:
    def __init__(self, tokenizer: Tokenizer):
        base = tokenizer.get_vocab_size(with_added_tokens=True)
        if base != BASE_VOCAB:
            raise ValueError(f"expected the GPT-NeoX-20B tokenizer ({BASE_VOCAB} ids), got one with {base} ids")
        tokenizer.add_special_tokens(["[PAD]"])
        tokenizer.add_tokens(ADDED_TOKENS)  # plain added tokens, as in the official UniversalPrompting
        got = [tokenizer.token_to_id(t) for t in ["[PAD]", *ADDED_TOKENS]]
        if got != list(range(PAD_ID, PAD_ID + 10)):
            raise ValueError(f"added tokens got ids {got}, expected {PAD_ID}..{PAD_ID + 9}")
        self.tok = tokenizer

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "OmniTokenizer":
        """Load a tokenizer.json (EleutherAI/gpt-neox-20b's)."""
        return cls(Tokenizer.from_file(str(path)))

    def __len__(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)  # 50287

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        """Text of generated ids; <|endoftext|> and the task tokens are dropped."""
        return self.tok.decode([i for i in ids if i != EOS_ID and i < PAD_ID], skip_special_tokens=True)

    def chat_turn(self, question: str) -> list[int]:
        """Ids of one user turn of an image chat (the first turn and every later one use the same text)."""
        return self.encode(CHAT_TURN.format(question=_clean(question, "question")))

    def caption(self, prompt: str, caption_len: int) -> Caption:
        ids = self.encode(_clean(prompt, "prompt"))
        kept = ids[:caption_len]  # the official code keeps the head of a long caption
        padded = [PAD_ID] * (caption_len - len(kept)) + kept
        return Caption([T2I_ID, SOT_ID, *padded, EOT_ID, SOI_ID], len(ids) > caption_len, len(ids))

    @staticmethod
    def unconditional_caption(caption_len: int) -> list[int]:
        """The all-[PAD] caption: the unconditional side of classifier-free guidance."""
        return [T2I_ID, SOT_ID, *([PAD_ID] * caption_len), EOT_ID, SOI_ID]


def _clean(text: str, what: str) -> str:
    if not isinstance(text, str):
        raise PromptError(f"the {what} must be text, got {type(text).__name__}")
    text = text.strip()
    if not text:
        raise PromptError(f"the {what} is empty: type a few words")
    return text


class StreamingDetokenizer:
    """Turns a growing list of ids into text deltas; holds back an incomplete UTF-8 character."""

    def __init__(self, tokenizer: OmniTokenizer):
        self.tokenizer, self.ids, self.emitted = tokenizer, [], ""

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids)
        if text.endswith("\ufffd"):  # a multi-byte character split across tokens: wait for the rest
            return ""
        delta, self.emitted = text[len(self.emitted):], text
        return delta

    @property
    def text(self) -> str:
        return self.tokenizer.decode(self.ids)
