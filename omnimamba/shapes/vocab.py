"""Which of the 50,288 text ids the shapes world's training data uses, and a text table that shares the rest.

The world's captions, questions and answers use a few hundred GPT-NeoX ids. `share_unused_rows_` starts every
other row of the tied text table at one value (zero): they then stay equal through training (packed_rows.py
says why), and the shipped file stores them once. A user's word outside the world reads as that one row.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..config import EOS_ID, PAD_ID, OmniMambaConfig
from ..tokenizer import OmniTokenizer
from ..train.batches import BatchBuilder
from ..train.records import parse_record
from .sources import make_item


def world_token_ids(config: OmniMambaConfig, tokenizer: OmniTokenizer, seed: int = 0, samples: int = 2000,
                    chat_mix: dict[str, float] | None = None) -> list[int]:
    """The text ids in `samples` training records of each task (as the batches tokenize them), the end-of-text
    id and every special id; ascending. An id the sample misses still trains: its row just starts shared."""
    builder = BatchBuilder(tokenizer, config)
    ids = {EOS_ID, *range(PAD_ID, config.padded_text_vocab)}
    for index in range(samples):
        chat = parse_record(make_item(seed, "mmu", index, chat_mix), f"mmu[{index}]", "mmu", Path("."), config)
        ids.update(builder.chat_ids(chat.turns)[0])
        ids.update(tokenizer.encode(make_item(seed, "text", index)["text"]))
        ids.update(builder.caption_prefix(make_item(seed, "t2i", index)["caption"], dropped=False))
    return sorted(ids)


@torch.no_grad()
def share_unused_rows_(table: torch.Tensor, used_ids: list[int]) -> int:
    """Set every row of `table` outside `used_ids` to zero; returns how many rows that was."""
    unused = torch.ones(table.shape[0], dtype=torch.bool)
    unused[torch.tensor(used_ids, dtype=torch.long)] = False
    table[unused.to(table.device)] = 0
    return int(unused.sum())
