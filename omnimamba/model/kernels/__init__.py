"""Fast kernels behind one small interface, each with its plain-PyTorch twin in `ssd.py`.

Sequence (`sequence.py`; prefill, teacher forcing):
  * `ssd_scan`        mamba_ssm's Triton chunked scan when it imports, else `ssd_scan_ref`.
  * `causal_conv`     causal-conv1d's CUDA kernel when it imports, else ours (Triton), else `causal_conv_ref`.
  * `add_rms_norm`    residual add + RMSNorm of every row.
  * `gated_rms_norm`  RMSNorm(y * SiLU(z)) of every row.
Decode (`decode.py`; one token, fused so a layer costs three kernels): `norm_linear`, `ssm_step`,
`gated_norm_linear`.
Every dispatcher falls back per kernel, so a missing package slows one piece down and breaks nothing.
Training: the sequence kernels are differentiable (ours with Triton backwards, `sequence_backward.py`); the
decode kernels refuse to run where autograd records (`autograd.py`).
`backends()` says what runs; `reference_only()` forces the twins (used to compare paths on the GPU).
"""
from .decode import GEMV_MODES, Gemv, gated_norm_linear, norm_linear, ssm_step
from .dispatch import backends, describe_backends, reference_only
from .sequence import add_rms_norm, causal_conv, gated_rms_norm, ssd_scan

__all__ = ["GEMV_MODES", "Gemv", "add_rms_norm", "backends", "causal_conv", "describe_backends",
           "gated_norm_linear", "gated_rms_norm", "norm_linear", "reference_only", "ssd_scan", "ssm_step"]
