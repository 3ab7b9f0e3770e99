"""Our Triton decode kernels, run by Triton's interpreter on the CPU, against their PyTorch twins."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

triton = pytest.importorskip("triton")

SCRIPT = textwrap.dedent("""
    import torch
    from omnimamba import OmniMamba, OmniMambaConfig
    from omnimamba.model import kernels
    from omnimamba.model.init import init_random_
    assert kernels._INTERPRET
    model = init_random_(OmniMamba(OmniMambaConfig.tiny()), seed=3).eval()
    for dtype, tol in [(torch.float32, 1e-5), (torch.bfloat16, 0.1)]:
        model.to(dtype)
        x = torch.randn(2, 9, model.config.d_model).to(dtype)
        with torch.no_grad():
            fast, ref = model.new_state(2), model.new_state(2)
            model.backbone(x[:, :5], "t2i", fast)
            ref.copy_(fast)
            for t in range(5, 9):
                out = model.backbone.step(x[:, t], "t2i", fast)  # strided rows on purpose
                with kernels.reference_only():
                    out_ref = model.backbone.step(x[:, t], "t2i", ref)
                diffs = [(out.float() - out_ref.float()).abs().max().item(),
                         (fast.ssm - ref.ssm).abs().max().item(),
                         (fast.conv.float() - ref.conv.float()).abs().max().item()]
                print(dtype, t, diffs)
                assert max(diffs) < tol, (dtype, t, diffs)
    print("OK")
""")


def test_triton_decode_kernels_match_the_reference_in_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    run = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    print(run.stdout[-2000:], run.stderr[-2000:])
    assert run.returncode == 0 and "OK" in run.stdout
