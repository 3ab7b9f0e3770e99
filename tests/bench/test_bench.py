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
