import pytest
import torch
from kernel_testing import DTYPES, GPU, assert_close, randn

from kernels.silu_and_mul import silu_and_mul_cpu, silu_and_mul_reference, silu_and_mul_triton

# (tokens, intermediate): 1 token, SmolLM2's 1536, a non-power of two over two column tiles, Llama-8B on a GPU
SHAPES = [(1, 64), (5, 1536), (3, 1500)] + ([(129, 14336)] if GPU else [])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_silu_and_mul_matches_reference(dtype: torch.dtype, shape: tuple[int, int]) -> None:
    x = randn(shape[0], 2 * shape[1], dtype=dtype, seed=11, scale=4.0)
    assert_close(silu_and_mul_triton(x), silu_and_mul_reference(x))


def test_silu_and_mul_reads_strided_rows() -> None:
    wide = randn(4, 300, dtype=torch.float32, seed=12)
    x = wide[:, :256]
    assert_close(silu_and_mul_triton(x), silu_and_mul_reference(x.contiguous()))


def test_silu_and_mul_rejects_odd_width() -> None:
    with pytest.raises(ValueError, match=r"\[T, 2I\]"):
        silu_and_mul_triton(randn(2, 63, dtype=torch.float32, seed=13))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_path_matches_reference(dtype: torch.dtype) -> None:
    x = randn(9, 2 * 1536, dtype=dtype, seed=61, scale=3.0).cpu()
    assert_close(silu_and_mul_cpu(x), silu_and_mul_reference(x))
