"""The world's text ids: a small closed set that holds every id its training data uses."""
from __future__ import annotations

import torch

from omnimamba.config import EOS_ID, PAD_ID, OmniMambaConfig
from omnimamba.shapes.vocab import share_unused_rows_, world_token_ids
from omnimamba.tokenizer import OmniTokenizer


def test_the_world_uses_a_few_hundred_ids_and_another_seed_finds_no_new_one():
    config, tok = OmniMambaConfig.shapes(), OmniTokenizer.from_file()
    ids = world_token_ids(config, tok, seed=0, samples=300)
    assert {EOS_ID, PAD_ID, config.padded_text_vocab - 1} <= set(ids) and len(ids) < 500
    assert set(world_token_ids(config, tok, seed=7, samples=300)) <= set(ids)
    assert set(tok.encode(" a red circle to the left of a blue square")) <= set(ids)


def test_unused_rows_become_one_shared_row():
    table = torch.randn(20, 3)
    used = [1, 5]
    before = table[used].clone()
    assert share_unused_rows_(table, used) == 18
    assert torch.equal(table[used], before) and torch.count_nonzero(table[[0, 2, 19]]) == 0
