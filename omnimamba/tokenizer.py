"""GPT-NeoX-20B tokenizer with OmniMamba's added tokens, and the two prompt formats (reference §4).

Image chat (the official inference template, "phi1.5"):  "USER: {question} ASSISTANT:"  (no BOS/EOS);
later turns follow the answer and its <|endoftext|>:       "USER: {question} ASSISTANT:"
Text to image: [<|t2i|>, <|sot|>] + caption ids (first 68 kept, left-padded with [PAD]) + [<|eot|>, <|soi|>].

User text is only text: a control token written in a question or a prompt (`<|t2i|>`, `<|soi|>`, `<|endoftext|>`,
`[PAD]`, ...) is tokenized as the characters it is written with, never as the control id, so no input can change
the task layout (the official code lets them through; see README "What user text can do").
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer
from tokenizers.decoders import DecodeStream

from .config import EOS_ID, EOT_ID, PAD_ID, SOI_ID, SOT_ID, T2I_ID

ADDED_TOKENS = ["<|soi|>", "<|eoi|>", "<|sot|>", "<|eot|>", "<|t2i|>", "<|mmu|>", "<|soc|>", "<|eoc|>", "<|lvg|>"]
# strings the tokenizer would turn into control ids; in user text they stay plain characters
CONTROL_TOKENS = ("<|endoftext|>", "<|padding|>", "[PAD]", *ADDED_TOKENS)
_CONTROL = re.compile("|".join(re.escape(token) for token in CONTROL_TOKENS))
CONTROL_IDS = frozenset({EOS_ID, 1, *range(PAD_ID, PAD_ID + 10)})  # <|endoftext|>, <|padding|>, [PAD], task tokens
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
        if path is None and not SHIPPED_TOKENIZER.is_file():
            raise FileNotFoundError(f"the tokenizer shipped with omnimamba is missing ({SHIPPED_TOKENIZER}): "
                                    "reinstall the package, or pass --tokenizer /path/to/tokenizer.json "
                                    "(GPT-NeoX-20B's)")
        path = Path(path).expanduser() if path is not None else SHIPPED_TOKENIZER
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {path}; pass --tokenizer /path/to/tokenizer.json "
                                    "(GPT-NeoX-20B's), or leave --tokenizer out to use the copy shipped with omnimamba")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # not JSON, not a tokenizer: the library raises a bare Exception
            raise ValueError(f"{path} could not be read as a tokenizer.json ({type(exc).__name__}: "
                             f"{str(exc)[:200]}); pass --tokenizer with GPT-NeoX-20B's tokenizer.json") from None
        return cls(tokenizer)

    def __len__(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)  # 50287

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_user_text(self, text: str) -> list[int]:
        """Ids of text a user wrote: each control token in it is cut after its first character, so that it is
        tokenized as plain characters (text without control tokens gets exactly `encode`'s ids)."""
        ids, start = [], 0
        for match in _CONTROL.finditer(text):
            ids += self.encode(text[start:match.start() + 1])
            start = match.start() + 1
        ids += self.encode(text[start:])
        if CONTROL_IDS.intersection(ids):  # cannot happen; the task layout depends on it, so it is checked
            raise PromptError("the text could not be tokenized without control tokens")
        return ids

    def decode(self, ids: list[int]) -> str:
        """Text of generated ids; <|endoftext|> and the task tokens are dropped."""
        return self.tok.decode([i for i in ids if i != EOS_ID and i < PAD_ID], skip_special_tokens=True)

    def chat_turn(self, question: str) -> list[int]:
        """Ids of one user turn of an image chat (the first turn and every later one use the same text)."""
        return self.encode_user_text(CHAT_TURN.format(question=_clean(question, "question")))

    def caption(self, prompt: str, caption_len: int) -> Caption:
        ids = self.encode_user_text(_clean(prompt, "prompt"))
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
