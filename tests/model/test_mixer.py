"""The Mamba-2 reference: chunked scan == step-by-step recurrence; LoRA routing and merging."""
import pytest
import torch

from omnimamba.model.ssd import causal_conv_ref, conv_state_after, conv_step_ref, ssd_scan_ref, ssd_step_ref


@pytest.mark.parametrize("length,chunk", [(1, 4), (7, 4), (8, 8), (21, 8), (33, 16)])
@pytest.mark.parametrize("with_initial_state", [False, True])
def test_chunked_scan_equals_recurrence(length, chunk, with_initial_state):
    g = torch.Generator().manual_seed(length * 31 + chunk)
    b, h, p, n = 2, 3, 4, 5
    x = torch.randn(b, length, h, p, generator=g)
    dt = torch.rand(b, length, h, generator=g) * 0.5
    A = -torch.rand(h, generator=g) * 4
    B, C = torch.randn(b, length, n, generator=g), torch.randn(b, length, n, generator=g)
    D = torch.randn(h, generator=g)
    init = torch.randn(b, h, p, n, generator=g) if with_initial_state else None
    y, final = ssd_scan_ref(x, dt, A, B, C, D, chunk, init)
    state = init.clone() if with_initial_state else torch.zeros(b, h, p, n)
    y_steps = torch.stack([ssd_step_ref(state, x[:, t], dt[:, t], A, B[:, t], C[:, t], D) for t in range(length)], 1)
    print("max |scan - recurrence|", (y - y_steps).abs().max().item())
    torch.testing.assert_close(y, y_steps, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(final, state, atol=2e-5, rtol=1e-5)


def test_conv_over_a_sequence_equals_conv_steps_and_continues_from_context():
    g = torch.Generator().manual_seed(1)
    b, l, c, w = 2, 6, 5, 4
    xBC, weight, bias = torch.randn(b, l, c, generator=g), torch.randn(c, w, generator=g), torch.randn(c, generator=g)
    context = torch.randn(b, c, w - 1, generator=g)
    out = causal_conv_ref(xBC, weight, bias, context)
    state = torch.cat([torch.zeros(b, c, 1), context], dim=2)
    steps = torch.stack([conv_step_ref(state, xBC[:, t], weight, bias) for t in range(l)], 1)
    torch.testing.assert_close(out, steps)
    torch.testing.assert_close(conv_state_after(xBC, context, w), state)


@pytest.mark.parametrize("task", ["mmu", "t2i"])
def test_prefill_then_steps_equals_one_forward_for_the_whole_model(tiny_model, task):
    x = torch.randn(2, 13, tiny_model.config.d_model)
    tiny_model.merge_lora()  # decode steps multiply by the merged task weights
    with torch.no_grad():
        full = tiny_model.mamba.head(tiny_model.backbone(x, task), task)
        state = tiny_model.new_state(2)
        first = tiny_model.mamba.head(tiny_model.backbone(x[:, :5], task, state), task)
        second = tiny_model.mamba.head(tiny_model.backbone(x[:, 5:9], task, state), task)  # continues the state
        steps = [tiny_model.mamba.step_logits(x[:, t], task, state) for t in range(9, 13)]
    torch.testing.assert_close(torch.cat([first, second, torch.stack(steps, 1)], 1), full, atol=1e-5, rtol=1e-5)


def test_decoding_without_merged_weights_says_what_to_do(tiny_model):
    with pytest.raises(RuntimeError, match="merge_lora"):
        tiny_model.mamba.step_logits(torch.randn(1, tiny_model.config.d_model), "t2i", tiny_model.new_state(1))


def test_merged_lora_equals_routed_lora(tiny_model):
    ids, prefix, image_ids = torch.randint(0, 50000, (1, 9)), torch.randint(0, 50000, (1, 16)), torch.randint(0, 64, (1, 64))
    with torch.no_grad():
        routed = tiny_model.forward_mmu(ids), tiny_model.forward_t2i(prefix, image_ids)
        tiny_model.merge_lora()
        assert tiny_model.lora_merged
        merged = tiny_model.forward_mmu(ids), tiny_model.forward_t2i(prefix, image_ids)
    for a, b in zip(routed, merged):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("task,other", [("mmu", "t2i"), ("t2i", "mmu")])
def test_only_the_tasks_own_lora_takes_effect(tiny_model, task, other):
    x = torch.randn(1, 7, tiny_model.config.d_model)
    with torch.no_grad():
        before = tiny_model.backbone(x, task)
        for layer in tiny_model.backbone.layers:
            getattr(layer.mixer.in_proj, f"{other}_lora_B0").weight.mul_(3.0)
        assert torch.equal(tiny_model.backbone(x, task), before)
        for layer in tiny_model.backbone.layers:
            getattr(layer.mixer.in_proj, f"{task}_lora_B0").weight.mul_(3.0)
        assert not torch.allclose(tiny_model.backbone(x, task), before, atol=1e-3)


def test_prefill_pieces_are_powers_of_two_that_add_up():
    from omnimamba.generation import power_of_two_pieces
    assert power_of_two_pieces(745) == [512, 128, 64, 32, 8, 1]
    assert power_of_two_pieces(1) == [1] and power_of_two_pieces(3000) == [1024, 1024, 512, 256, 128, 32, 16, 8]
    assert all(sum(power_of_two_pieces(n)) == n for n in range(1, 2000))


def test_serving_can_keep_only_the_merged_weights(tiny_model):
    x = torch.randn(1, 7, tiny_model.config.d_model)
    with torch.no_grad():
        before = [tiny_model.backbone(x, task) for task in ("mmu", "t2i")]
        tiny_model.merge_lora(release_unmerged=True)
        after = [tiny_model.backbone(x, task) for task in ("mmu", "t2i")]
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)
    keys = tiny_model.state_dict().keys()
    assert not any(k.endswith(("in_proj.weight", "lora_A0.weight")) for k in keys)
    with pytest.raises(RuntimeError, match="reload the model"):
        tiny_model.backbone.layers[0].mixer.in_proj.unmerge()
