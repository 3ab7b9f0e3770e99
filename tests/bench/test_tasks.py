"""The task benchmark's code paths on a tiny model on the CPU (the numbers come from a GPU run): both sides
timed by one helper, stock's graph caches kept per shape, the JSON the report renders, the suite's runner."""
import json
import subprocess
import sys

import pytest
import torch

from omnimamba import OmniMambaConfig
from omnimamba.bench import suite
from omnimamba.bench.report import render
from omnimamba.bench.stock import stock_tasks
from omnimamba.bench.tasks import SHAPES, run


class FakeStock:
    """Stands in for MambaLMHeadModel.generate(cg=True): a call that finds no graph cache captures one."""

    def __init__(self, *_):
        self._decoding_cache = None
        self.calls: list[tuple[tuple[int, int], bool]] = []

    def generate(self, input_ids: torch.Tensor, max_length: int, cg: bool, top_k: int) -> torch.Tensor:
        assert cg and top_k == 1 and input_ids.is_contiguous()
        captured = self._decoding_cache is None
        if captured:
            self._decoding_cache = object()
        self.calls.append(((input_ids.shape[0], max_length), captured))
        return torch.zeros(input_ids.shape[0], max_length, dtype=torch.long)


def test_stock_captures_once_per_shape_in_the_untimed_call():
    fake = FakeStock()
    shapes = {"a": (1, 16, 64), "b": (2, 16, 64), "c": (1, 35, 8)}
    out = stock_tasks(fake, shapes, repeat=3, device=torch.device("cpu"))
    assert "error" not in out and set(out["generation"]) == set(shapes)
    timed = fake.calls[:-4]  # the last 1 + 3 calls show the old method (capture in every call)
    keys = [(rows, prompt + n) for rows, prompt, new in shapes.values() for n in (1, new)]
    assert [key for key, _ in timed] == [key for key in keys for _ in range(1 + 3)]  # one warm-up + 3 timed
    assert [captured for _, captured in timed] == [i % 4 == 0 for i in range(len(timed))]
    assert all(captured for _, captured in fake.calls[-4:]) and out["graph_caches_kept"] == len(keys)


@pytest.mark.slow
def test_task_benchmark_writes_json_that_the_report_renders(tmp_path):
    cfg = OmniMambaConfig.tiny()
    run(tmp_path, dtype=torch.float32, config=cfg, device="cpu", repeat=1, chat_new=4, stock_factory=FakeStock)
    data = json.loads((tmp_path / "tasks.json").read_text())
    ours, stock = data["ours"], data["stock_mamba_ssm"]
    rows = {name: key.batch * (2 if key.guidance else 1) for name, (key, _) in SHAPES.items()}
    for name, (r, prompt, new) in ours["shapes"].items():
        assert r == rows[name] and new == (4 if "chat" in name else cfg.num_image_tokens)
        assert prompt == (cfg.t2i_prefix_len if "chat" not in name else prompt) and prompt > 1
        for side in (ours, stock):
            g = side["generation"][name]
            assert g["new_tokens"] == new and g["s"] > 0 and g["first_token_s"] > 0
    assert set(ours["tasks"]) == {"one image", "four images, guidance", "chat answer"}
    report = render(tmp_path)
    s1, o1 = stock["generation"]["image, batch 1"]["s"], ours["generation"]["image, batch 1"]["s"]
    assert f"{s1 / o1:.2f}x" in report and "four images with guidance" in report
    assert "## Long context\n\nnot measured" in report and "## Start-up\n\nnot measured" in report


@pytest.mark.slow
def test_suite_records_a_failed_part_and_still_writes_the_summary(tmp_path):
    suite.run(tmp_path, parts=["tasks"], budget_s=120)  # no GPU here: the part exits with its message
    status = json.loads((tmp_path / "suite.json").read_text())["tasks"]
    assert status["status"] == "exit 1" and "needs a CUDA GPU" in status["log_tail"]
    summary = (tmp_path / "summary.md").read_text()
    assert "part tasks: exit 1" in summary and "## Tasks\n\nnot measured" in summary


def test_benchmarks_do_not_import_gradio():
    code = ("import sys, omnimamba.bench.suite, omnimamba.bench.tasks, omnimamba.bench.stock, "
            "omnimamba.bench.long_context, omnimamba.bench.start, omnimamba.bench.report, omnimamba.cli; "
            "assert 'gradio' not in sys.modules, 'gradio imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_shipped_h200_results_render_with_every_section(tmp_path):
    """docs/bench_h200 is rendered by the report (the docs' tables come from it), decode variants included."""
    import shutil
    from pathlib import Path

    folder = tmp_path / "h200"
    shutil.copytree(Path(__file__).resolve().parents[2] / "docs" / "bench_h200", folder)
    tasks = json.loads((folder / "tasks.json").read_text())
    (folder / "decode.json").write_text(json.dumps({"gpu": tasks["gpu"], "floor_ms": tasks["floor_ms"],
                                                    "decode_variants": tasks["decode_variants"]}))
    report = render(folder)
    for heading in ("## Tasks", "## Long context", "## Start-up", "## For the README",
                    "## The decode step's variants", "## Matrix-vector kernels", "## Concurrent requests"):
        assert heading in report, heading
    assert "static+compile: taken from a second run" in report and "| fused-serial |" in report
