"""8-bit decode weights: what they store, that the model's checkpoint is untouched, and that decoding with
them stays close to the 16/32-bit model (the GPU kernels' own check is in test_kernels_interpret.py)."""
import copy

import pytest
import torch

from omnimamba import OmniMamba, OmniMambaConfig
from omnimamba.model.init import init_random_
from omnimamba.model.quant import Int8Weight


def test_each_row_is_stored_within_half_a_step_of_its_own_scale():
    w = torch.randn(64, 128) * torch.logspace(-3, 1, 64)[:, None]  # rows of very different sizes
    w[5] = 0.0
    q = Int8Weight.quantize(w.to(torch.bfloat16))
    assert q.q.dtype == torch.int8 and q.scale.shape == (64,) and q.dtype == torch.bfloat16
    error = (q.dequantize() - w.to(torch.bfloat16).float()).abs().amax(dim=1)
    assert torch.all(error <= q.scale * (0.5 + 1e-5))  # half a step, and fp32 rounding
    assert torch.all(q.dequantize()[5] == 0) and q.nbytes == 64 * 128 + 64 * 4


def _steps(model: OmniMamba, x: torch.Tensor, task: str) -> torch.Tensor:
    with torch.no_grad():
        state = model.new_state(x.shape[0])
        model.backbone(x[:, :5], task, state)
        return torch.stack([model.mamba.step_logits(x[:, t], task, state) for t in range(5, x.shape[1])])


def test_decoding_with_8bit_weights_stays_close_and_the_checkpoint_keys_do_not_change():
    model = init_random_(OmniMamba(OmniMambaConfig.tiny()), seed=2).eval().merge_lora()
    keys = list(model.state_dict())
    q8 = copy.deepcopy(model).quantize_decode()
    assert q8.decode_int8 and not model.decode_int8 and list(q8.state_dict()) == keys
    x = torch.randn(2, 12, model.config.d_model)
    for task in ("t2i", "mmu"):
        full, eight = _steps(model, x, task), _steps(q8, x, task)
        err = ((eight - full).norm() / full.norm()).item()
        assert 0 < err < 0.02, (task, err)  # the 8-bit weights are used, and their error is small
    with torch.no_grad():  # the prefill (sequence path) keeps the model's own weights
        ids = torch.arange(6)[None] * 911
        assert torch.equal(q8.forward_mmu(ids, image_embeds=x[:1, :4]), model.forward_mmu(ids, image_embeds=x[:1, :4]))


def test_an_engine_asked_for_8bit_decode_weights_says_so_and_answers(tiny_model, tokenizer):
    from omnimamba.engine import Engine
    from omnimamba.sampling import SamplingParams

    engine = Engine(copy.deepcopy(tiny_model), tokenizer, use_cuda_graphs=False, int8_decode=True)
    assert engine.info()["decode_weights"] == "int8"
    events = list(engine.chat(engine.new_session(None), "Hello", SamplingParams(), 5))
    assert events[-1].done and len(events) == 5


def test_bf16_decode_copies_are_exact_for_a_bf16_trained_model_and_round_only_the_inputs():
    """An fp32 model whose weights are bf16 values (a file trained and shipped in bf16, as the shapes model):
    bf16 copies hold the same weights, so decoding from them differs from the fp32 model only by each
    product's input rounded to bf16; the prefill and the checkpoint keys are untouched."""
    model = init_random_(OmniMamba(OmniMambaConfig.tiny()), seed=3).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())  # the values a bf16 file holds
    model.merge_lora()
    keys = list(model.state_dict())
    b16 = copy.deepcopy(model).quantize_decode("bf16")
    assert b16.decode_copies == "bf16" and not b16.decode_int8 and list(b16.state_dict()) == keys
    mixer = b16.backbone.layers[0].mixer
    assert torch.equal(mixer.decode_out_weight().w.float(), model.backbone.layers[0].mixer.out_proj.weight)
    x = torch.randn(2, 12, model.config.d_model)
    for task in ("t2i", "mmu"):
        full, half = _steps(model, x, task), _steps(b16, x, task)
        err = ((half - full).norm() / full.norm()).item()
        assert 0 < err < 0.02, (task, err)
    assert b16.unquantize_decode().decode_copies is None


def test_bf16_decode_copies_are_refused_where_they_make_no_sense():
    model = init_random_(OmniMamba(OmniMambaConfig.tiny()), seed=3).eval().merge_lora()
    with pytest.raises(ValueError, match="fp32 model on the CPU"):
        copy.deepcopy(model).to(torch.bfloat16).quantize_decode("bf16")
    with pytest.raises(ValueError, match="'int8' or 'bf16'"):
        model.quantize_decode("fp8")


def test_an_engine_asked_for_bf16_decode_copies_says_so_and_answers(tiny_model, tokenizer):
    from omnimamba.engine import Engine
    from omnimamba.sampling import SamplingParams

    engine = Engine(copy.deepcopy(tiny_model), tokenizer, use_cuda_graphs=False, bf16_decode=True)
    assert engine.info()["decode_weights"] == "bf16"
    events = list(engine.chat(engine.new_session(None), "Hello", SamplingParams(), 5))
    assert events[-1].done and len(events) == 5
    with pytest.raises(ValueError, match="one of"):
        Engine(copy.deepcopy(tiny_model), tokenizer, use_cuda_graphs=False, bf16_decode=True, int8_decode=True)
