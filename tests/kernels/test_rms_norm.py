import pytest
import torch
from kernel_testing import DTYPES, GPU, assert_close, randn

from kernels.rms_norm import (
    add_rms_norm_cpu,
    add_rms_norm_reference,
    add_rms_norm_triton,
    rms_norm_cpu,
    rms_norm_reference,
    rms_norm_triton,
)

# (tokens, hidden): 1 token, SmolLM2's 576, a non-power of two, Llama-8B's 4096 on a GPU
SHAPES = [(1, 64), (7, 576), (3, 1000)] + ([(257, 4096)] if GPU else [])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_rms_norm_matches_reference(dtype: torch.dtype, shape: tuple[int, int]) -> None:
    x = randn(*shape, dtype=dtype, seed=1, scale=3.0)
    w = randn(shape[1], dtype=dtype, seed=2)
    assert_close(rms_norm_triton(x, w, 1e-6), rms_norm_reference(x, w, 1e-6))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_add_rms_norm_matches_reference(dtype: torch.dtype, shape: tuple[int, int]) -> None:
    x = randn(*shape, dtype=dtype, seed=3)
    res = randn(*shape, dtype=dtype, seed=4, scale=5.0)
    w = randn(shape[1], dtype=torch.float32, seed=5)
    out, summed = add_rms_norm_triton(x, res, w, 1e-5)
    ref_out, ref_summed = add_rms_norm_reference(x, res, w, 1e-5)
    assert_close(summed, ref_summed)
    assert_close(out, ref_out)


def test_rms_norm_reads_strided_rows() -> None:
    # the residual stream can arrive as a row slice of a wider buffer
    wide = randn(5, 300, dtype=torch.float32, seed=6)
    x = wide[:, :200]
    w = randn(200, dtype=torch.float32, seed=7)
    assert_close(rms_norm_triton(x, w, 1e-6), rms_norm_reference(x.contiguous(), w, 1e-6))


def test_rms_norm_rejects_mismatched_weight() -> None:
    with pytest.raises(ValueError, match="weight shape"):
        rms_norm_triton(randn(2, 64, dtype=torch.float32, seed=8), randn(32, dtype=torch.float32, seed=9), 1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES)
def test_cpu_path_is_bit_identical_to_the_reference(dtype: torch.dtype, shape: tuple[int, int]) -> None:
    x = randn(*shape, dtype=dtype, seed=14, scale=3.0).cpu()
    res = randn(*shape, dtype=dtype, seed=15).cpu()
    w = randn(shape[1], dtype=dtype, seed=16).cpu()
    assert torch.equal(rms_norm_cpu(x, w, 1e-5), rms_norm_reference(x, w, 1e-5))
    out, summed = add_rms_norm_cpu(x, res, w, 1e-5)
    ref_out, ref_summed = add_rms_norm_reference(x, res, w, 1e-5)
    assert torch.equal(summed, ref_summed) and torch.equal(out, ref_out)
    w32 = w.float()  # a weight of another dtype takes the reference
    assert torch.equal(rms_norm_cpu(x, w32, 1e-5), rms_norm_reference(x, w32, 1e-5))
