"""The engine: sessions that reuse their state, text-to-image streams, cancellation, errors, metrics."""
import numpy as np
import pytest
import torch
from PIL import Image

from omnimamba.engine import Engine, EngineError
from omnimamba.generation import DecodeGraph
from omnimamba.sampling import SamplingParams


def picture(seed: int = 0, size=(40, 30)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def answer(engine: Engine, session: str, question: str, **kw) -> list:
    return list(engine.chat(session, question, **kw))


def test_a_follow_up_reuses_the_state_and_equals_re_encoding_the_conversation(tiny_engine):
    live, rebuilt = tiny_engine.new_session(picture()), tiny_engine.new_session(picture())
    for question in ["What is in the image?", "And the colours?"]:
        for session in (live, rebuilt):
            answer(tiny_engine, session, question, max_new_tokens=6)
    tiny_engine.sessions[rebuilt].state = None  # forces one prefill over image + whole conversation
    last_live = answer(tiny_engine, live, "Anything else?", max_new_tokens=6)
    last_rebuilt = answer(tiny_engine, rebuilt, "Anything else?", max_new_tokens=6)
    assert last_live[-1].text == last_rebuilt[-1].text
    a, b = tiny_engine.sessions[live].state, tiny_engine.sessions[rebuilt].state
    assert a.seqlen == b.seqlen
    torch.testing.assert_close(a.ssm, b.ssm, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(a.conv, b.conv, atol=1e-5, rtol=1e-5)


def test_a_turn_costs_its_own_tokens_only(tiny_engine):
    session = tiny_engine.new_session(picture())
    answer(tiny_engine, session, "First question?", max_new_tokens=5)
    before = tiny_engine.sessions[session].state.seqlen
    answer(tiny_engine, session, "Second?", max_new_tokens=5)
    fed = tiny_engine.sessions[session].state.seqlen - before
    turn = len(tiny_engine.tokenizer.chat_turn("Second?"))
    assert fed == 1 + 1 + turn + 4  # pending last token + <|endoftext|> + the turn + 4 of the 5 answer tokens


def test_evicted_sessions_are_rebuilt_with_the_same_answers(tiny_model, tokenizer):
    roomy = Engine(tiny_model, tokenizer, use_cuda_graphs=False, max_live_states=8)
    tight = Engine(tiny_model, tokenizer, use_cuda_graphs=False, max_live_states=1)
    results = []
    for engine in (roomy, tight):
        a, b = engine.new_session(picture(1)), engine.new_session(None)
        texts = []
        for session, q in [(a, "Describe it."), (b, "Hello?"), (a, "More?"), (b, "Why?"), (a, "Last one.")]:
            texts.append(answer(engine, session, q, max_new_tokens=5)[-1].text)
        results.append(texts)
        if engine is tight:
            assert sum(s.state is not None for s in engine.sessions.values()) == 1
    assert results[0] == results[1]


def test_cancelling_mid_answer_keeps_the_engine_and_the_session_usable(tiny_engine):
    session = tiny_engine.new_session(picture())
    stream = tiny_engine.chat(session, "Tell me everything.", max_new_tokens=50)
    events = [next(stream) for _ in range(3)]
    stream.close()
    assert not events[-1].done and not tiny_engine.lock.locked()
    follow_up = answer(tiny_engine, session, "Shorter, please.", max_new_tokens=4)
    assert follow_up[-1].done and follow_up[-1].metrics.tokens == 4
    images = list(tiny_engine.text_to_image("a red cube", 1))
    assert images[-1].done


def test_chat_without_an_image_and_streamed_metrics(tiny_engine):
    session = tiny_engine.new_session(None)
    events = answer(tiny_engine, session, "Hi there", max_new_tokens=5, params=SamplingParams(top_k=0, seed=3))
    assert len(events) == 5 and events[-1].done and events[-1].metrics.stop_reason == "max_new_tokens"
    assert "".join(e.delta for e in events) == events[-1].text
    m = events[-1].metrics
    assert m.task == "chat" and m.device == "CPU" and m.tokens == 5 and m.ttft_s > 0 and m.decode_tokens_per_s > 0
    again = answer(tiny_engine, tiny_engine.new_session(None), "Hi there", max_new_tokens=5,
                   params=SamplingParams(top_k=0, seed=3))
    assert again[-1].text == events[-1].text  # same seed, same answer


def test_text_to_image_batch_previews_and_note(tiny_engine):
    events = list(tiny_engine.text_to_image("a red cube", 3, preview_every=16,
                                            params=SamplingParams(seed=1)))
    final = events[-1]
    assert final.done and len(final.images) == 3 and all(im.size == (64, 64) for im in final.images)
    previews = [e for e in events[:-1] if e.images]
    assert previews and [e.rows_done for e in previews] == [2, 4, 6]
    assert final.metrics.tokens == 3 * 64 and final.metrics.ttft_s > 0 and final.note is None
    long = " ".join(["word"] * 40)
    assert "truncated" in list(tiny_engine.text_to_image(long, 1))[-1].note


def test_guided_images_differ_from_plain_ones_and_seeds_repeat(tiny_engine):
    def final(**kw):
        return [np.asarray(im) for im in list(tiny_engine.text_to_image("a blue ball", 2, **kw))[-1].images]
    plain, guided = final(), final(guidance_scale=4.0)
    assert any((a != b).any() for a, b in zip(plain, guided))
    sampled = dict(params=SamplingParams(top_k=0, temperature=1.0, seed=11))
    assert all((a == b).all() for a, b in zip(final(**sampled), final(**sampled)))


@pytest.mark.parametrize("call,message", [
    (lambda e: list(e.text_to_image("   ", 1)), "prompt is empty"),
    (lambda e: list(e.text_to_image("cat", 9)), "num_images must be a whole number in 1..8"),
    (lambda e: list(e.text_to_image("cat", 1, guidance_scale=-1)), r"guidance_scale must be a number in \[0, 20\]"),
    (lambda e: list(e.chat("nope", "hi")), "expired"),
    (lambda e: list(e.chat(e.new_session(None), "")), "question is empty"),
    (lambda e: list(e.chat(e.new_session(None), "hi", max_new_tokens=0)), "max_new_tokens must be a whole number in 1..65536"),
    (lambda e: e.new_session(Image.new("RGB", (9000, 9000))), "megapixels"),
])
def test_bad_requests_get_clear_errors_and_release_the_engine(tiny_engine, call, message):
    with pytest.raises(EngineError, match=message):
        call(tiny_engine)
    assert not tiny_engine.lock.locked()
    assert list(tiny_engine.text_to_image("still works", 1))[-1].done


def test_out_of_memory_is_reported_and_the_engine_keeps_serving(tiny_engine, monkeypatch):
    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
    with monkeypatch.context() as patch:
        patch.setattr(DecodeGraph, "prefill_t2i", oom)
        with pytest.raises(EngineError, match="ran out of memory"):
            list(tiny_engine.text_to_image("a cat", 8))
    assert list(tiny_engine.text_to_image("a cat", 1))[-1].done


def test_a_chat_restored_from_its_record_continues_without_answering_again(tiny_engine, monkeypatch):
    image = Image.new("RGB", (32, 32), "red")
    live = tiny_engine.new_session(image)
    record = [e.record for e in tiny_engine.chat(live, "What is it?", SamplingParams(), 5)][-1]
    expected = [e.text for e in tiny_engine.chat(live, "And then?", SamplingParams(), 5)][-1]
    restored = tiny_engine.restore_session(image, record)
    assert tiny_engine.has_session(restored) and restored != live
    prefills = []
    real = tiny_engine.model.embed_mmu
    monkeypatch.setattr(tiny_engine.model, "embed_mmu", lambda *a, **k: prefills.append(1) or real(*a, **k))
    assert [e.text for e in tiny_engine.chat(restored, "And then?", SamplingParams(), 5)][-1] == expected
    assert prefills == [1], "the image and the recorded ids go in one prefill; no earlier answer is generated"
