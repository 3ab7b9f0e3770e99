"""Per-task losses: the right logits rows against the right targets, and nothing else."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from omnimamba.model.vision import preprocess_image
from omnimamba.train.batches import IGNORE, BatchBuilder
from omnimamba.train.losses import task_losses
from omnimamba.train.records import ChatRecord, T2IRecord, TextRecord

TURNS = (("What colour is the square?", "Red."), ("Where?", "Left."))


@pytest.fixture
def model(tiny_model):
    return tiny_model  # eval mode: no LoRA dropout, so the reference computation below is the same function


@pytest.fixture
def builder(tokenizer, tiny_model):
    return BatchBuilder(tokenizer, tiny_model.config, caption_dropout=0.0)


def row_nll(logits: torch.Tensor, targets: list[int]) -> list[float]:
    return [-F.log_softmax(logits[i].double(), -1)[t].item() for i, t in enumerate(targets)]


def test_mmu_loss_is_the_mean_over_answer_tokens_with_the_zero_image_for_text_only_rows(model, builder):
    image = Image.new("RGB", (30, 30), (10, 200, 10))
    batch = builder.mmu([ChatRecord(TURNS, image, "a"), ChatRecord(TURNS[:1], None, "b")])
    loss = task_losses(model, {"mmu": batch})["mmu"]
    cfg = model.config
    with torch.no_grad():
        pixels = {k: v[None] for k, v in preprocess_image(image, cfg.vision).items()}
        expected = []
        for row, embeds in ((0, model.image_features(pixels)), (1, None)):
            ids = batch.text_ids[row].tolist()
            full = [-1] * (4 + cfg.vision.num_patches) + ids  # the sequence as the model sees it
            logits = model.forward_mmu(torch.tensor([ids]), image_embeds=embeds)[0]
            labelled = [p for p, lab in enumerate(batch.labels[row].tolist()) if lab != IGNORE]
            positions = [4 + cfg.vision.num_patches + p for p in labelled]  # where each answer token sits
            expected += row_nll(logits[[q - 1 for q in positions]], [full[q] for q in positions])
    assert math.isclose(loss.item(), sum(expected) / len(expected), rel_tol=1e-5)


def test_t2i_loss_predicts_every_code_from_the_row_before_it(model, builder):
    cfg = model.config
    codes = [tuple((i * 7 + k) % cfg.image_vocab_size for k in range(cfg.num_image_tokens)) for i in range(2)]
    batch = builder.t2i([T2IRecord("a red square", "a", codes=codes[0]), T2IRecord("blue", "b", codes=codes[1])],
                        [False, True])
    loss = task_losses(model, {"t2i": batch})["t2i"]
    with torch.no_grad():
        logits = model.forward_t2i(batch.prefix_ids, batch.image_ids)
        p = batch.prefix_ids.shape[1]
        nll = [x for r in range(2) for x in row_nll(logits[r, p - 1:p - 1 + cfg.num_image_tokens], list(codes[r]))]
    assert math.isclose(loss.item(), sum(nll) / len(nll), rel_tol=1e-5)


def test_text_loss_is_a_plain_lm_without_positions_or_lora(model, builder):
    batch = builder.text([TextRecord("the red square is on the left", "a"), TextRecord("hi", "b")])
    loss = task_losses(model, {"text": batch})["text"]
    loss.backward()
    backbone = model.backbone
    untouched = [backbone.mmu_pos_embed, backbone.pos_embed, *(
        layer.mixer.in_proj.lora_pair(t)[i].weight for layer in backbone.layers for t in ("mmu", "t2i") for i in (0, 1))]
    assert all(p.grad is None for p in untouched)
    assert backbone.embedding.weight.grad is not None and backbone.layers[0].mixer.in_proj.weight.grad is not None
    with torch.no_grad():
        logits = model.forward_text(batch.ids)
        nll = []
        for r in range(2):
            targets = batch.labels[r, 1:].tolist()
            nll += [x for x, t in zip(row_nll(logits[r, :-1], [max(t, 0) for t in targets]), targets) if t != IGNORE]
    assert math.isclose(loss.item(), sum(nll) / len(nll), rel_tol=1e-5)


def test_all_tasks_at_once_and_an_unlabelled_batch_gives_zero(model, builder):
    batches = {"mmu": builder.mmu([ChatRecord(TURNS[:1], None, "a")]),
               "t2i": builder.t2i([T2IRecord("a", "a", codes=(1,) * model.config.num_image_tokens)], [False])}
    losses = task_losses(model, batches)
    assert set(losses) == {"mmu", "t2i"} and all(torch.isfinite(v) for v in losses.values())
    batches["mmu"].labels.fill_(IGNORE)
    unlabelled = task_losses(model, {"mmu": batches["mmu"]})["mmu"]
    assert unlabelled.item() == 0.0
    unlabelled.backward()  # a batch of text-only chats still reaches the projector (zero gradient: DDP waits for it)
    assert all(p.grad is not None and not p.grad.any() for p in model.projector.parameters())
    with pytest.raises(ValueError, match="unknown task"):
        task_losses(model, {"vqa": batches["mmu"]})


def test_the_head_from_a_row_on_is_the_full_head_cut_there(model, builder):
    ids = torch.tensor([[5, 6, 7, 8]])
    full, cut = model.forward_mmu(ids), model.forward_mmu(ids, first_row=9)
    assert cut.shape[1] == full.shape[1] - 9 and torch.allclose(cut, full[:, 9:], atol=1e-5)
    prefix = torch.zeros(1, model.config.caption_len + 4, dtype=torch.long)
    codes = torch.arange(model.config.num_image_tokens)[None] % model.config.image_vocab_size
    full, cut = model.forward_t2i(prefix, codes), model.forward_t2i(prefix, codes, first_row=prefix.shape[1] - 1)
    assert torch.allclose(cut, full[:, prefix.shape[1] - 1:], atol=1e-5)


def test_each_chat_row_gets_its_own_image_block_and_text_only_rows_the_zero_one(model, builder):
    from omnimamba.model.vision import normalize_pixels
    from omnimamba.train.losses import mmu_image_embeds

    red, blue = Image.new("RGB", (30, 30), (200, 10, 10)), Image.new("RGB", (30, 30), (10, 10, 200))
    batch = builder.mmu([ChatRecord(TURNS, None, "a"), ChatRecord(TURNS, red, "b"), ChatRecord(TURNS, None, "c"),
                         ChatRecord(TURNS, blue, "d")])
    with torch.no_grad():
        blocks = mmu_image_embeds(model, batch)
        features = model.image_features(normalize_pixels(batch.images, model.config.vision))
    assert torch.equal(blocks[1], features[0]) and torch.equal(blocks[3], features[1])
    assert not blocks[0].any() and not blocks[2].any()
