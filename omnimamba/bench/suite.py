"""Every published figure in one run: the task benchmark (ours and stock mamba-ssm), long context against the
Transformer, start-up; then the markdown tables rendered from what was written.

Each part runs in its own Python process, one after the other, so that one part's memory, graphs and
compiled code cannot leak into the next one's figures, a crash loses only that part, and a part that runs
past its share of the time is stopped (it has written its JSON as it went). Files in OUT:
tasks.json, long_context.json, start.json, the two long-context plots, suite.json (each part's exit status,
seconds and the tail of its log) and summary.md (what `python -m omnimamba.bench.report OUT` prints).

    python -m omnimamba bench --all --out OUT
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

LONG_LENGTHS = "1k,4k,16k,64k,100k"
COMPILE_LENGTHS = "1k,100k"  # the static cache compiles once per length (~40 s each)
LONG_TRANSFORMER_BUDGET_S = 170.0  # no Transformer case starts later than this into the long-context part
# part -> (seconds it may take at most, command after `python -m`)
PARTS = {
    "tasks": (230, ["omnimamba.bench.tasks", "--out", "{out}"]),
    "long_context": (230, ["omnimamba.bench.long_context", "--out", "{out}", "--lengths", LONG_LENGTHS,
                           "--compile-lengths", COMPILE_LENGTHS, "--budget-s", str(LONG_TRANSFORMER_BUDGET_S)]),
    "start": (110, ["omnimamba.bench.start", "--out", "{out}/start.json"]),
}
LOG_TAIL = 3000


def run_part(name: str, out_dir: Path, limit_s: float) -> dict:
    """One part in a fresh interpreter; its log is kept (tail) rather than printed."""
    _, argv = PARTS[name]
    cmd = [sys.executable, "-m"] + [a.format(out=out_dir) for a in argv]
    start = time.monotonic()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=limit_s)
        status, text = ("ok" if done.returncode == 0 else f"exit {done.returncode}"), done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        status = f"stopped after {limit_s:.0f} s"
        text = _text(exc.stdout) + _text(exc.stderr)
    return {"status": status, "seconds": round(time.monotonic() - start, 1), "command": " ".join(cmd),
            "log_tail": text[-LOG_TAIL:]}


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def run(out_dir: Path, parts: list[str] | None = None, budget_s: float = 570.0) -> dict:
    """Run the parts in order within `budget_s` in all; write suite.json after each, summary.md at the end."""
    from .report import render

    out_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + budget_s
    suite: dict = {}
    for name in parts or list(PARTS):
        left = deadline - time.monotonic()
        if left < 30:
            suite[name] = {"status": "skipped: out of time"}
        else:
            suite[name] = run_part(name, out_dir, min(PARTS[name][0], left))
        print(f"[bench] {name}: {suite[name]['status']} ({suite[name].get('seconds', 0):.0f} s)", flush=True)
        (out_dir / "suite.json").write_text(json.dumps(suite, indent=1))
    (out_dir / "long_context.md").unlink(missing_ok=True)  # the same table is in summary.md
    summary = render(out_dir)
    (out_dir / "summary.md").write_text(summary)
    print(summary)
    return suite
