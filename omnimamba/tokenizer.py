"""GPT-NeoX-20B tokenizer with OmniMamba's added tokens, and the two prompt formats (reference §4).

Image chat (the official inference template, "phi1.5"):  "USER: {question} ASSISTANT:"  (no BOS/EOS);
later turns follow the answer and its <|endoftext|>:       "USER: {question} ASSISTANT:"
Text to image: [<|t2i|>, <|sot|>] + caption ids (first 68 kept, left-padded with [PAD]) + [<|eot|>, <|soi|>].
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer
from tokenizers.decoders import DecodeStream

from .config import EOS_ID, EOT_ID, PAD_ID, SOI_ID, SOT_ID, T2I_ID

ADDED_TOKENS = ["<|soi|>", "<|eoi|>", "<|sot|>", "<|eot|>", "<|t2i|>", "<|mmu|>", "<|soc|>", "<|eoc|>", "<|lvg|>"]
BASE_VOCAB = PAD_ID  # the base vocabulary ends where [PAD] starts
CHAT_TURN = "USER: {question} ASSISTANT:"
# EleutherAI/gpt-neox-20b's tokenizer.json (Apache-2.0, see NOTICE), shipped so nothing needs the Hub to talk
SHIPPED_TOKENIZER = Path(__file__).parent / "assets" / "gpt-neox-20b-tokenizer.json"


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
    def from_file(cls, path: str | os.PathLike | None = None) -> "OmniTokenizer":
        """Load a tokenizer.json with GPT-NeoX-20B's ids; by default the copy shipped in the package."""
        path = Path(path) if path is not None else SHIPPED_TOKENIZER
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {path}; pass a GPT-NeoX-20B tokenizer.json, or "
                                    f"leave the option out to use the one shipped with omnimamba")
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
    """Turns generated ids into text deltas as they come (the tokenizers library's DecodeStream: each id costs
    one small decode, and an incomplete UTF-8 character is held back until its last byte arrives).
    <|endoftext|> and the task tokens are dropped, as in `OmniTokenizer.decode`."""

    def __init__(self, tokenizer: OmniTokenizer):
        self.tokenizer, self.stream, self.text = tokenizer, DecodeStream(skip_special_tokens=True), ""

    def push(self, token: int) -> str:
        if token == EOS_ID or token >= PAD_ID:
            return ""
        delta = self.stream.step(self.tokenizer.tok, token) or ""
        self.text += delta
        return delta
