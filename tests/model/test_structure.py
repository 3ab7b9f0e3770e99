"""The module tree produces exactly the official state_dict: every key, shape and the order."""
import json
from pathlib import Path

import torch

from omnimamba import OmniMamba, OmniMambaConfig

OFFICIAL = json.loads((Path(__file__).parents[1] / "data/official_state_dict.json").read_text())


def test_official_config_keys_shapes_and_order_match_the_reference():
    with torch.device("meta"):
        model = OmniMamba(OmniMambaConfig.official())
    got = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    want = [(k, shape) for k, shape, _ in OFFICIAL]
    assert len(got) == len(want) == 1674
    missing = sorted({k for k, _ in want} - {k for k, _ in got})
    extra = sorted({k for k, _ in got} - {k for k, _ in want})
    assert not missing and not extra, (missing[:5], extra[:5])
    assert got == want


def test_derived_sizes_of_the_official_config():
    cfg = OmniMambaConfig.official()
    assert (cfg.d_inner, cfg.nheads, cfg.d_in_proj, cfg.conv_dim) == (4096, 64, 8512, 4352)
    assert (cfg.padded_text_vocab, cfg.image_vocab_size, cfg.t2i_positions, cfg.lora_scaling) == (50288, 16384, 329, 4.0)
    assert (cfg.num_image_tokens, cfg.caption_len, cfg.image_size, cfg.vision.num_patches) == (256, 68, 256, 729)


def test_heads_are_tied_to_their_tables(tiny_model):
    mamba = tiny_model.mamba
    assert mamba.lm_head.weight is mamba.backbone.embedding.weight
    assert mamba.img_head.weight is mamba.backbone.img_embeddings.word_embeddings.weight
    assert mamba.lm_head.weight.shape[0] == 50288  # logits span the padded table, as in the official model


def test_unknown_preset_lists_the_valid_ones():
    try:
        OmniMambaConfig.from_name("nope")
    except ValueError as exc:
        assert "omnimamba-1.3b" in str(exc) and "tiny" in str(exc)
    else:
        raise AssertionError("expected ValueError")
