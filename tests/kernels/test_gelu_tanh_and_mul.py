import pytest
import torch
from kernel_testing import DTYPES, GPU, assert_close, randn

from kernels.gelu_tanh_and_mul import gelu_tanh_and_mul_reference, gelu_tanh_and_mul_triton

# (tokens, intermediate): 1 token, Gemma-3-1B's 6912, a non-power of two over two column tiles, Gemma-2-9B on a GPU
SHAPES = [(1, 64), (3, 6912), (3, 1500)] + ([(129, 14336)] if GPU else [])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_gelu_tanh_and_mul_matches_reference(dtype: torch.dtype, shape: tuple[int, int]) -> None:
    x = randn(shape[0], 2 * shape[1], dtype=dtype, seed=21, scale=4.0)  # |x| up to ~16: tanh saturates both ways
    assert_close(gelu_tanh_and_mul_triton(x), gelu_tanh_and_mul_reference(x))


def test_gelu_tanh_reference_is_torchs_tanh_gelu() -> None:
    x = randn(4, 32, dtype=torch.float32, seed=22)
    gate, up = x[:, :16].double(), x[:, 16:].double()
    formula = 0.5 * gate * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (gate + 0.044715 * gate**3))) * up
    torch.testing.assert_close(gelu_tanh_and_mul_reference(x).double(), formula, atol=1e-6, rtol=1e-6)


def test_gelu_tanh_and_mul_reads_strided_rows_and_rejects_odd_width() -> None:
    wide = randn(4, 300, dtype=torch.float32, seed=23)
    assert_close(gelu_tanh_and_mul_triton(wide[:, :256]), gelu_tanh_and_mul_reference(wide[:, :256].contiguous()))
    with pytest.raises(ValueError, match=r"\[T, 2I\]"):
        gelu_tanh_and_mul_triton(randn(2, 63, dtype=torch.float32, seed=24))
