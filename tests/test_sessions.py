"""Sessions under misuse: limits checked before any work, failed turns that change nothing, threads, fair
eviction per owner, argument checks, and several images that differ."""
import math
import sys
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from omnimamba.batching import BatchGraph
from omnimamba.engine import SEVERAL_IMAGES, Engine, EngineError
from omnimamba.generation import DecodeGraph
from omnimamba.sampling import SamplingParams
from omnimamba.sessions import ChatSession, SessionStore


def snapshot(session: ChatSession) -> tuple:
    state = session.state
    return (list(session.history), list(session.pending), session.turns,
            None if state is None else (state.seqlen, state.conv.clone(), state.ssm.clone()))


def assert_same(before: tuple, after: tuple) -> None:
    assert before[:3] == after[:3]
    if before[3] is None:
        assert after[3] is None
    else:
        assert after[3] is not None and before[3][0] == after[3][0]
        assert torch.equal(before[3][1], after[3][1]) and torch.equal(before[3][2], after[3][2])


def test_a_question_that_does_not_fit_is_refused_before_any_work_with_what_fits(tiny_engine, monkeypatch):
    session = tiny_engine.new_session(Image.new("RGB", (32, 32), "red"))
    long = " ".join(["word"] * 400)
    calls = []
    monkeypatch.setattr(DecodeGraph, "prefill", lambda *a, **k: calls.append(1))
    with pytest.raises(EngineError, match=r"The question is \d+ tokens; this model's chat holds at most \d+"):
        tiny_engine.check_chat(long)
    with pytest.raises(EngineError, match=r"The question is \d+ tokens; this model's chat holds at most \d+"):
        list(tiny_engine.chat(session, long))
    assert calls == [] and tiny_engine.sessions[session].turns == 0 and not tiny_engine.lock.locked()


def test_a_full_conversation_says_so_with_the_models_limit_and_stays_usable(tiny_engine):
    session = tiny_engine.new_session(None)
    limit = tiny_engine.model.config.mmu_positions
    events = list(tiny_engine.chat(session, "Tell me a long story.", max_new_tokens=limit))
    if events[-1].metrics.stop_reason == "eos":  # random weights: rare, but then fill the chat turn by turn
        pytest.skip("the random tiny model ended its answer early")
    assert events[-1].note == f"the conversation reached the model's {limit}-position limit; start a new chat"
    before = snapshot(tiny_engine.sessions[session])
    for call in (lambda: tiny_engine.check_chat("And then?", session),
                 lambda: list(tiny_engine.chat(session, "And then?"))):
        with pytest.raises(EngineError, match="This conversation is full: .* Start a new chat"):
            call()
    assert_same(before, snapshot(tiny_engine.sessions[session]))
    assert tiny_engine.check_chat("And then?") > 1  # a new chat has room
    assert list(tiny_engine.chat(tiny_engine.new_session(None), "And then?", max_new_tokens=2))[-1].done


@pytest.mark.parametrize("batching", [False, True])
@pytest.mark.parametrize("evicted", [False, True])
@pytest.mark.parametrize("failure", ["prefill", "embed", "decode_step"])
def test_a_failed_turn_leaves_the_session_exactly_as_it_was(tiny_model, tokenizer, monkeypatch, evicted, failure,
                                                            batching):
    tiny_engine = Engine(tiny_model, tokenizer, use_cuda_graphs=False, batching=batching)
    session = tiny_engine.new_session(Image.new("RGB", (32, 32), "blue"))
    list(tiny_engine.chat(session, "What is it?", max_new_tokens=4))
    if evicted:
        tiny_engine.sessions[session].state = None
    before = snapshot(tiny_engine.sessions[session])

    def broken(*args, **kwargs):
        raise RuntimeError(f"simulated failure in {failure}")
    with monkeypatch.context() as patch:
        if failure == "prefill":
            patch.setattr(DecodeGraph, "prefill", broken)
        elif failure == "embed":
            patch.setattr(tiny_engine.model, "embed_mmu" if evicted else "embed_text", broken)
        else:
            patch.setattr(BatchGraph if batching else DecodeGraph, "step", broken)
        with pytest.raises(RuntimeError, match="simulated"):
            list(tiny_engine.chat(session, "And the colour?", max_new_tokens=6))
    assert_same(before, snapshot(tiny_engine.sessions[session]))
    assert not tiny_engine.lock.locked() and not tiny_engine.sessions[session].busy
    # and the next turn answers as if the failed one never happened
    reference = tiny_engine.restore_session(Image.new("RGB", (32, 32), "blue"),
                                            list(tiny_engine.chat(tiny_engine.new_session(
                                                Image.new("RGB", (32, 32), "blue")), "What is it?",
                                                max_new_tokens=4))[-1].record)
    expected = list(tiny_engine.chat(reference, "And the colour?", max_new_tokens=3))[-1].text
    assert list(tiny_engine.chat(session, "And the colour?", max_new_tokens=3))[-1].text == expected
    tiny_engine.close()


def test_a_second_turn_at_the_same_time_is_refused_and_the_first_goes_on(tiny_engine):
    session = tiny_engine.new_session(None)
    first = tiny_engine.chat(session, "Hello there", max_new_tokens=5)
    next(first)
    with pytest.raises(EngineError, match="still answering"):
        list(tiny_engine.chat(session, "Again?"))
    assert list(first)[-1].done and not tiny_engine.sessions[session].busy


def test_threads_creating_ending_and_using_sessions_never_break_the_table(tiny_model, tokenizer):
    engine = Engine(tiny_model, tokenizer, use_cuda_graphs=False, max_sessions=6, max_live_states=2,
                    sessions_per_owner=3)
    errors: list[BaseException] = []

    def user(owner: str) -> None:
        try:
            for i in range(6):
                sid = engine.new_session(None, owner=owner)
                try:
                    list(engine.chat(sid, f"hi {i}", max_new_tokens=1))
                except EngineError as exc:  # another thread's flood may evict it first: a clear message
                    assert "expired" in str(exc)
                if i % 2:
                    engine.end_session(sid)
                engine.has_session(sid)
        except BaseException as exc:  # noqa: BLE001 - any failure in a thread fails the test
            errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=user, args=(f"client{n % 3}",)) for n in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert errors == []
    assert len(engine.sessions) <= 6 and all(engine.sessions.count(f"client{n}") <= 3 for n in range(3))
    assert sum(s.state is not None for s in engine.sessions.values()) <= 2


def test_one_client_cannot_evict_another_clients_chats():
    store = SessionStore(per_owner=3, max_total=5, max_live_states=2)
    mine = store.add(ChatSession(None, owner="alice"))
    flood = [store.add(ChatSession(None, owner="mallory")) for _ in range(50)]
    assert mine in store and store.count("mallory") == 3 and flood[-3:] == [s for s in store if s != mine]
    crowd = [store.add(ChatSession(None, owner=f"visitor{i}")) for i in range(3)]  # 1 + 3 + 3 > 5
    assert mine in store and all(c in store for c in crowd)  # the biggest holder (mallory) gave way
    assert store.count("mallory") == 1 and len(store) == 5


@pytest.mark.parametrize("value", [1.5, math.nan, -1, 0, True, "8", 100_000])
def test_max_new_tokens_is_checked_and_named(tiny_engine, value):
    with pytest.raises(EngineError, match=r"max_new_tokens must be a whole number in 1\.\.65536"):
        list(tiny_engine.chat(tiny_engine.new_session(None), "hi", max_new_tokens=value))


@pytest.mark.parametrize("bad", [dict(seed=1.5), dict(top_k=True), dict(seed=True), dict(top_k=2.0),
                                 dict(temperature=math.nan), dict(top_p=math.nan), dict(temperature="1")])
def test_sampling_params_refuse_bools_fractions_and_nan(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        SamplingParams(**bad)


@pytest.mark.parametrize("call", [
    lambda e: list(e.text_to_image("cat", math.nan)),
    lambda e: list(e.text_to_image("cat", 2.5)),
    lambda e: list(e.text_to_image("cat", 1, guidance_scale=math.nan)),
    lambda e: list(e.text_to_image("cat", 1, params="greedy")),
])
def test_text_to_image_arguments_are_checked(tiny_engine, call):
    with pytest.raises(EngineError, match="must be"):
        call(tiny_engine)


def test_several_images_differ_by_default_and_each_seed_reproduces_its_image(tiny_engine):
    one = list(tiny_engine.text_to_image("a red cube", 1))[-1]
    assert one.seeds is None  # one image: greedy, the official setting
    events = list(tiny_engine.text_to_image("a red cube", 3, params=None))
    final = events[-1]
    assert len(final.seeds) == 3 and len(set(final.seeds)) == 3
    pixels = [np.asarray(im) for im in final.images]
    assert all((pixels[0] != p).mean() > 0.1 for p in pixels[1:])
    alone = list(tiny_engine.text_to_image("a red cube", 1,
                                           params=SamplingParams(1.0, SEVERAL_IMAGES.top_k, 0.0, final.seeds[2])))
    # the same tokens; the VQ decoder rounds a few pixels differently for a batch of 3 than for 1
    assert alone[-1].seeds == [final.seeds[2]] and (np.asarray(alone[-1].images[0]) != pixels[2]).mean() < 0.01
