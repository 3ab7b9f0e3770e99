"""Which decode kernels a mode picks: the choice the step's speed depends on, checked without a GPU."""
import pytest
import torch

from omnimamba.model.kernels import decode


def product(rows: int, mode: str, dtype=torch.bfloat16, width: int = 64) -> str:
    return decode._product(torch.zeros(rows, width), torch.zeros(4, width, dtype=dtype), mode)


@pytest.fixture
def triton_everywhere(monkeypatch):
    monkeypatch.setattr(decode, "use_triton", lambda t: True)


def test_auto_uses_the_gemv_for_one_row_the_rows_kernel_up_to_16_and_cublas_beyond(triton_everywhere):
    assert product(1, "auto") == "gemv"
    assert [product(n, "auto") for n in (2, 4, 8, 16)] == ["rows"] * 4
    assert product(17, "auto") == "cublas" and product(32, "fused") == "cublas"


def test_explicit_modes_widths_and_fp32_weights(triton_everywhere):
    assert product(8, "fused") == product(8, "fused-serial") == "rows" and product(1, "cublas") == "cublas"
    assert product(1, "fused", torch.float32) == "cublas"  # the official fp32 numerics always go through cuBLAS
    assert product(1, "auto", width=384) == product(8, "auto", width=384) == "cublas"  # not a power of two
    with pytest.raises(ValueError, match="gemv mode"):
        product(1, "fast")


def test_nothing_overlaps_on_the_cpu():
    x = torch.zeros(1, 8)
    assert not any(decode.overlaps(x, mode) for mode in decode.GEMV_MODES)
