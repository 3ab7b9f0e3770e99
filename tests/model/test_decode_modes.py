"""Which decode kernels a mode picks: the choice the step's speed depends on, checked without a GPU."""
import pytest
import torch

from omnimamba.model.kernels import decode


def picks_fused(rows: int, mode: str, dtype=torch.bfloat16) -> bool:
    return decode._fused_gemv(torch.zeros(rows, 8), torch.zeros(4, 8, dtype=dtype), mode)


@pytest.fixture
def triton_everywhere(monkeypatch):
    monkeypatch.setattr(decode, "use_triton", lambda t: True)


def test_auto_uses_the_fused_kernels_for_one_row_and_for_two_only_where_they_overlap(triton_everywhere, monkeypatch):
    monkeypatch.setattr(decode, "overlaps", lambda x, gemv: False)
    assert picks_fused(1, "auto") and not picks_fused(2, "auto")
    monkeypatch.setattr(decode, "overlaps", lambda x, gemv: True)
    assert picks_fused(2, "auto") and not picks_fused(3, "auto") and not picks_fused(8, "auto")


def test_explicit_modes_and_fp32_weights(triton_everywhere):
    assert picks_fused(8, "fused") and picks_fused(8, "fused-serial") and not picks_fused(1, "cublas")
    assert not picks_fused(1, "fused", torch.float32)  # the official fp32 numerics always go through cuBLAS
    with pytest.raises(ValueError, match="gemv mode"):
        picks_fused(1, "fast")


def test_nothing_overlaps_on_the_cpu():
    x = torch.zeros(1, 8)
    assert not any(decode.overlaps(x, mode) for mode in decode.GEMV_MODES)
