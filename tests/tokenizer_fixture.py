"""Tokenizer files for tests: the real GPT-NeoX-20B tokenizer.json when this machine has a copy, else a
stand-in with the same size and id layout (byte-level, 50277 ids) built here."""
from __future__ import annotations

import json
import os
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

REAL_CANDIDATES = [os.environ.get("OMNIMAMBA_TEST_TOKENIZER", ""),
                   str(Path(__file__).resolve().parents[2] / "shared/reference/gpt-neox-20b-tokenizer.json")]


def real_tokenizer_json() -> Path | None:
    for candidate in REAL_CANDIDATES:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def write_tokenizer_json(out: Path) -> Path:
    """Write a 50277-id tokenizer.json to `out`: the real one (minus extra added tokens some copies carry)
    when available, else a byte-level stand-in."""
    real = real_tokenizer_json()
    if real is not None:
        data = json.loads(real.read_text())
        data["added_tokens"] = [t for t in data["added_tokens"] if t["id"] < 50277]
        out.write_text(json.dumps(data))
        return out
    vocab = {"<|endoftext|>": 0, "<|padding|>": 1}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    for i in range(len(vocab), 50254):
        vocab[f"<unused{i}>"] = i
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>", "<|padding|>"])
    tok.add_tokens([" " * n for n in range(24, 1, -1)])  # the real file's 23 whitespace-run tokens
    tok.save(str(out))
    return out
