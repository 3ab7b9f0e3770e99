"""Decoding: teacher-forcing invariant, greedy determinism, seeds, stops, guidance plumbing."""
import pytest
import torch

from omnimamba.generation import ModelRunner, GraphKey, chat_tokens, image_tokens
from omnimamba.model.backbone import PositionLimitError
from omnimamba.sampling import SamplingParams, guided_logits, sample_tokens


@pytest.fixture
def runner(tiny_model):
    return ModelRunner(tiny_model, use_cuda_graphs=False)


def greedy_run(runner, task, embeds, steps):
    graph = runner.graph_for(GraphKey(task, embeds.shape[0], False, False))
    graph.load_state(None)
    graph.prefill(embeds, None)
    rows, tokens = [graph.logits.clone()], [graph.token.clone()]
    for token in graph.decode(steps - 1, None):
        rows.append(graph.logits.clone())
        tokens.append(token.clone())
    return torch.stack(rows, 1), torch.stack(tokens, 1)


@pytest.mark.parametrize("task", ["t2i", "mmu"])
def test_prefill_plus_decode_steps_equals_one_teacher_forced_forward(runner, task):
    model = runner.model
    with torch.no_grad():
        embeds = (model.embed_t2i_prefix(torch.randint(0, 50000, (2, 16))) if task == "t2i"
                  else model.embed_mmu(torch.randint(0, 50000, (2, 6)), None))
        logits, tokens = greedy_run(runner, task, embeds, 12)
        start = embeds.shape[1]
        fed = tokens[:, :-1]
        tail = model.embed_image_tokens(fed, start) if task == "t2i" else model.embed_text(fed, start)
        full = model.mamba.head(model.backbone(torch.cat([embeds, tail], 1), task), task)[:, start - 1:]
    torch.testing.assert_close(logits, full, atol=2e-5, rtol=1e-5)
    assert torch.equal(tokens, logits.argmax(-1))


def test_greedy_is_deterministic_and_seeds_reproduce_samples(runner):
    prefix = torch.randint(0, 50000, (2, 16))
    def run(params, seed=None):
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        return [s.tokens for s in image_tokens(runner, prefix, params, generator=gen)][-1]
    assert torch.equal(run(SamplingParams()), run(SamplingParams()))
    sampling = SamplingParams(temperature=1.0, top_k=0, top_p=0.0)
    assert torch.equal(run(sampling, 7), run(sampling, 7))
    assert not torch.equal(run(sampling, 7), run(sampling, 8))


def test_guidance_runs_the_unconditional_rows_and_mixes_the_logits(runner):
    prefix = torch.randint(0, 50000, (2, 16))
    plain = [s.tokens for s in image_tokens(runner, prefix, SamplingParams())][-1]
    # with the unconditional rows equal to the prompt, guided logits equal the conditional ones
    same = [s.tokens for s in image_tokens(runner, prefix, SamplingParams(), 3.0, prefix.clone())][-1]
    assert torch.equal(plain, same)
    uncond = torch.full_like(prefix, 50277)
    guided = [s.tokens for s in image_tokens(runner, prefix, SamplingParams(), 3.0, uncond)][-1]
    assert not torch.equal(plain, guided)
    off = [s.tokens for s in image_tokens(runner, prefix, SamplingParams(), 1.0, uncond)][-1]
    assert torch.equal(plain, off)  # scale 1 is the official conditional path


def test_image_tokens_reports_progress_and_the_right_count(runner):
    steps = list(image_tokens(runner, torch.randint(0, 50000, (3, 16)), SamplingParams(), report_every=16))
    assert [s.tokens.shape[1] for s in steps] == [1, 16, 32, 48, 64] and steps[-1].done
    assert steps[-1].tokens.shape == (3, 64) and steps[-1].tokens.max() < 64


def test_chat_stops_at_eos_and_leaves_it_pending(runner):
    model = runner.model
    calls = {"n": 0}
    mamba = model.mamba
    original_head, original_step = mamba.head, mamba.step_logits

    def eos_on_third(logits):
        calls["n"] += 1
        if calls["n"] == 3:
            logits = logits.clone()
            logits[..., 0] = 1e4
        return logits
    mamba.head = lambda *a: eos_on_third(original_head(*a))  # the prefill's head
    mamba.step_logits = lambda *a: eos_on_third(original_step(*a))  # each decode step's
    state = model.new_state(1)
    embeds = model.embed_mmu(torch.randint(0, 50000, (1, 5)), None)
    steps = list(chat_tokens(runner, state, embeds, SamplingParams(), 50))
    assert [s.stop_reason for s in steps] == [None, None, "eos"] and steps[-1].token == 0
    assert state.seqlen == embeds.shape[1] + 2  # the EOS itself is fed with the next turn


def test_chat_stops_at_the_token_limit_and_at_the_position_table(runner):
    model = runner.model
    embeds = model.embed_mmu(torch.randint(1, 50000, (1, 5)), None)
    steps = list(chat_tokens(runner, model.new_state(1), embeds, SamplingParams(), 4))
    assert len(steps) == 4 and steps[-1].stop_reason == "max_new_tokens"
    state = model.new_state(1)
    table = model.config.mmu_positions
    steps = list(chat_tokens(runner, state, embeds, SamplingParams(), 10_000))
    assert steps[-1].stop_reason == "position_limit"
    assert len(steps) == table - embeds.shape[1] + 1 and state.seqlen == table
    with pytest.raises(PositionLimitError, match="mmu_pos_embed has 160 rows"):
        list(chat_tokens(runner, state, model.embed_text(torch.ones(1, 3, dtype=torch.long), state.seqlen),
                         SamplingParams(), 5))


def test_closing_a_chat_stream_keeps_a_consistent_state(runner):
    model = runner.model
    embeds = model.embed_mmu(torch.randint(1, 50000, (1, 5)), None)
    state = model.new_state(1)
    stream = chat_tokens(runner, state, embeds, SamplingParams(), 100)
    for _ in range(4):
        next(stream)
    stream.close()
    assert state.seqlen == embeds.shape[1] + 3  # prompt + all taken tokens but the last


def test_sampling_filters_follow_the_official_order():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    ones = torch.ones(1, 5)
    pick = lambda k, p, noise=ones: sample_tokens(logits, torch.ones(1, 1), torch.tensor([[k]]), torch.tensor([[p]]), noise)
    assert pick(1, 0.0).item() == 0  # top-1 is greedy
    favour_last = torch.tensor([[1.0, 1.0, 1e-9, 1e-9, 1e-9]])  # the race favours small noise
    assert pick(2, 0.0, favour_last).item() in (0, 1)  # top-k keeps the two best only
    assert pick(0, 0.5, favour_last).item() == 0  # top-p 0.5: the best token alone holds 64%
    assert pick(0, 0.0, favour_last).item() in (2, 3, 4)  # no filter: any token can win
    assert torch.equal(guided_logits(torch.ones(2), torch.zeros(2), 3.0), torch.full((2,), 3.0))


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(top_k=-2), dict(top_p=1.5), dict(seed=-3)])
def test_sampling_params_are_validated(bad):
    with pytest.raises(ValueError):
        SamplingParams(**bad)
