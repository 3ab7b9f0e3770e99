"""The benchmarks' code paths on tiny models and tiny lengths (the real numbers come from a GPU)."""
import json

import pytest

from omnimamba import OmniMambaConfig
from omnimamba.cli import main
from omnimamba.bench.long_context import parse_lengths, run
from omnimamba.bench.report import render

TINY_PHI = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)


def test_lengths_parse():
    assert parse_lengths("1k, 4k,16k,100k,300") == [1000, 4000, 16000, 100000, 300]


def test_long_context_benchmark_writes_json_plots_and_a_table(tmp_path):
    result = run([16, 48], tmp_path, device="cpu", config=OmniMambaConfig.tiny(), phi_overrides=TINY_PHI,
                 new_tokens=3)
    data = json.loads((tmp_path / "long_context.json").read_text())
    modes = {(c["model"], c["mode"]) for c in data["cases"]}
    assert modes == {("OmniMamba", "recurrent state"), ("Transformer (Phi-1.5 shape)", "dynamic"),
                     ("Transformer (Phi-1.5 shape)", "no cache")}
    assert all(c["status"] == "ok" and c["ttft_s"] > 0 and c["ms_per_token"] is not None for c in data["cases"])
    # timed directly (the dynamic cache's figure is a difference of two generate() calls: noise at this size)
    assert all(c["ms_per_token"] > 0 for c in data["cases"] if c["mode"] != "dynamic")
    for name in ("decode_ms_per_token.png", "peak_memory.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "long_context.md").read_text()
    assert "L=16" in table and "L=48" in table and "OmniMamba" in table and result["cases"]
    assert table.split("\n\n", 1)[1].strip() in render(tmp_path)  # the report: the same table, from the JSON


def test_bench_cli_says_it_needs_a_gpu(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        main(["bench", "--long-context"])


def test_the_static_cache_case_reuses_one_cache_and_decodes_what_the_dynamic_cache_does():
    """The compiled Transformer's case keeps one cache length for its T(1) and T(N) calls (one compile per
    length on a GPU); its tokens are the model's own (the same as with the default dynamic cache)."""
    import torch
    from omnimamba.bench.long_context import Case, _transformer_case, phi_model, static_cache

    model = phi_model(torch.device("cpu"), torch.float32, 128, num_hidden_layers=2, hidden_size=64,
                      intermediate_size=128, num_attention_heads=4, vocab_size=1000)
    ids = torch.randint(0, 1000, (1, 40), generator=torch.Generator().manual_seed(0))
    case = Case("Transformer", "static+compile", 40)
    _transformer_case(model, ids, "static+compile", 6, case)
    assert case.status == "ok" and case.ms_per_token > 0
    cache = static_cache(model, 46)
    kw = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0)
    first = model.generate(ids, past_key_values=cache, **kw)
    cache.reset()
    assert torch.equal(model.generate(ids, past_key_values=cache, **kw), first)
    assert torch.equal(model.generate(ids, **kw), first)


def test_the_concurrency_benchmark_reports_each_user_count_and_the_host_cost_per_turn(tmp_path):
    from omnimamba.bench import concurrency

    out = tmp_path / "c.json"
    rows = concurrency.main(["--task", "chat", "--users", "1", "3", "--max-new-tokens", "4", "--out", str(out)])
    assert [(r["batching"], r["users"]) for r in rows] == [(True, 1), (True, 3), (False, 1), (False, 3)]
    assert all(r["ms_per_turn"] > 0 for r in rows if r["batching"]) and json.loads(out.read_text()) == rows
    assert all(r["decode_tokens_per_s"] > 0 for r in rows)  # 4-token answers: 3 decoded after the first
    host = concurrency.main(["--host-only", "--task", "chat", "--users", "2", "--max-new-tokens", "4"])
    assert len(host) == 1 and host[0]["batching"] and host[0]["tokens_per_s"] > 0
    # a stand-in step of 20 ms: no turn can be shorter than the step it waits for
    slow = concurrency.main(["--host-only", "--step-ms", "20", "--task", "chat", "--users", "2",
                             "--max-new-tokens", "4"])
    assert slow[0]["ms_per_turn"] >= 20
    with pytest.raises(SystemExit):
        concurrency.main(["--step-ms", "2"])
