"""Our Triton decode kernels, run by Triton's interpreter on the CPU, against their PyTorch twins.

fp32 must agree to rounding. In 16 bits both paths round differently (the fused GEMVs accumulate in another
order), so the fast path is held to the reference's own 16-bit error: its distance from the fp32 trajectory
must be at most 1.5x the 16-bit reference's. The 16-bit run uses fp16: the interpreter truncates fp32 -> bf16
instead of rounding (the GPU rounds), which would double the fast path's error here and nowhere else.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

triton = pytest.importorskip("triton")

SCRIPT = textwrap.dedent("""
    import contextlib
    import copy
    import torch
    from omnimamba import OmniMamba, OmniMambaConfig
    from omnimamba.model import kernels
    from omnimamba.model.init import init_random_
    from omnimamba.model.kernels.dispatch import interpreting
    assert interpreting()
    rel = lambda a, b: ((a.float() - b.float()).norm() / b.float().norm()).item()
    fp32 = init_random_(OmniMamba(OmniMambaConfig.tiny()), seed=3).eval().merge_lora()
    half = copy.deepcopy(fp32).to(torch.float16).merge_lora()
    x = torch.randn(3, 9, fp32.config.d_model)

    def trajectory(model, reference, rows=2):
        # a teacher-forced forward (sequence kernels), then a prefill and decode steps (decode kernels)
        with torch.no_grad(), (kernels.reference_only() if reference else contextlib.nullcontext()):
            forward = model.forward_mmu(torch.arange(7)[None] * 997, image_embeds=x[:1, :4].to(model.dtype))
            state = model.new_state(rows)
            model.backbone(x[:rows, :5].to(model.dtype), "t2i", state)
            steps = [model.mamba.step_logits(x[:rows, t].to(model.dtype), "t2i", state)  # strided rows
                     for t in range(5, 9)]
            return torch.cat([forward.flatten(), torch.stack(steps).flatten()]), state

    exact, exact_state = trajectory(fp32, True)
    fast32, fast32_state = trajectory(fp32, False)
    print("fp32 fast vs ref", rel(fast32, exact), rel(fast32_state.ssm, exact_state.ssm))
    assert rel(fast32, exact) < 1e-5 and rel(fast32_state.ssm, exact_state.ssm) < 1e-5
    # "fused": our norm-folded GEMVs, for one row and (row by row) for two and three; "cublas": the norm kernels
    for rows, mode in ((1, "fused"), (2, "fused"), (3, "fused"), (2, "cublas")):
        half.mamba.decode_gemv = mode
        exact, exact_state = trajectory(fp32, True, rows)
        ref16, ref16_state = trajectory(half, True, rows)
        fast16, fast16_state = trajectory(half, False, rows)
        errors = {"logits": (rel(fast16, exact), rel(ref16, exact)),
                  "ssm state": (rel(fast16_state.ssm, exact_state.ssm), rel(ref16_state.ssm, exact_state.ssm)),
                  "conv state": (rel(fast16_state.conv, exact_state.conv), rel(ref16_state.conv, exact_state.conv))}
        print(rows, mode, "fp16 (fast, reference) error vs fp32:", errors)
        for name, (fast, ref) in errors.items():
            assert fast <= 1.5 * ref + 1e-4, (rows, mode, name, fast, ref)
    half.mamba.decode_gemv = "auto"
    half.quantize_decode()  # 8-bit decode weights: our int8 GEMVs against their PyTorch twin
    for rows in (1, 2):
        exact, _ = trajectory(fp32, True, rows)
        ref8, _ = trajectory(half, True, rows)
        fast8, _ = trajectory(half, False, rows)
        print(rows, "int8 fused vs int8 reference", rel(fast8, ref8), "int8 vs fp32", rel(ref8, exact))
        assert rel(fast8, ref8) < 2e-3 and rel(ref8, exact) < 5e-2
    print("OK")
""")


def test_triton_decode_kernels_match_the_reference_in_the_interpreter():
    """Both ways of multiplying (cuBLAS-style and our fused GEMVs) at one to three rows, prefill and decode, fp32
    and fp16."""
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    run = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    print(run.stdout[-2000:], run.stderr[-2000:])
    assert run.returncode == 0 and "OK" in run.stdout
