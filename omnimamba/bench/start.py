"""Start-up benchmark: first load (read the pickles, check, convert to safetensors) and cold start (a new
process from the converted cache to a model on the GPU), on assets written here in the real formats.

The real files cannot be downloaded on a machine without network, so this writes stand-ins of the same
size and layout into a local Hugging Face cache: OmniMamba-1.3b.pth (fp16 pickle of the official keys),
vq_ds16_t2i.pt ({"model": ...}), the two timm tower files (safetensors, DINOv2 with its 37 x 37 position
table); the tokenizer ships with the package.

    python -m omnimamba.bench.start [WORKDIR] [--out start.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ..config import OmniMambaConfig
from ..model.init import random_model
from . import fake_hub
from .timing import versions

def write_assets(cache: Path) -> float:
    """Stand-ins of every asset for the official configuration, real sizes and formats (GB written)."""
    model = random_model(OmniMambaConfig.official(), "cuda", torch.bfloat16)
    try:
        return fake_hub.write_assets(cache, model, dino_grid=37)  # the released DINOv2 table is 37 x 37
    finally:
        del model
        torch.cuda.empty_cache()


LOAD_SNIPPET = """
import json, time
t0 = time.perf_counter()
import torch
t_torch = time.perf_counter()
from omnimamba.hub import load_model
t_import = time.perf_counter()
model, report = load_model(device="cuda", dtype=torch.bfloat16, cache_dir={cache!r}, offline=True)
torch.cuda.synchronize()
report["ready_s"] = time.perf_counter() - t0
report["import_torch_s"], report["import_omnimamba_s"] = t_torch - t0, t_import - t_torch
report["gib_on_gpu"] = torch.cuda.memory_allocated() / 2**30
print("RESULT " + json.dumps(report))
"""


def load_in_new_process(cache: Path, env: dict) -> dict:
    """Time to a ready model in a fresh interpreter: imports, CUDA init and loading all included."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", LOAD_SNIPPET.format(cache=str(cache))], env=env,
                         capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    report = json.loads(next(line[7:] for line in out.stdout.splitlines() if line.startswith("RESULT ")))
    report["process_wall_s"] = wall
    return report


def drop_page_cache() -> bool:
    """Make the next read come from disk, where the system allows it (root on a VM)."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def run(workdir: Path, out: Path | None = None) -> dict:
    """Write the stand-ins, then time three fresh processes; `out` is rewritten after each (a run cut short
    keeps what it measured)."""
    cache = workdir / "hub"
    env = dict(os.environ, OMNIMAMBA_CACHE=str(workdir / "converted"), HF_HUB_OFFLINE="1")
    result = {"gpu": torch.cuda.get_device_name(), "versions": versions(), "assets_gb": write_assets(cache)}
    steps = [("first_load", lambda: True), ("warm_start", lambda: True),
             ("cold_start_after_dropping_page_cache", drop_page_cache)]
    for name, ready in steps:
        if ready():
            result[name] = load_in_new_process(cache, env)
            if out:
                out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir", type=Path, nargs="?", default=None,
                        help="where the 6.4 GB of stand-ins go (default: a temporary folder, removed after)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    args = parser.parse_args()
    if args.workdir is not None:
        run(args.workdir, args.out)
    else:
        with tempfile.TemporaryDirectory(prefix="omnimamba-start-") as tmp:
            run(Path(tmp), args.out)
