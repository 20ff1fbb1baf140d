import pytest
import torch
from kernel_testing import DTYPES, GPU, assert_close, randn

from kernels.layer_norm import (
    add_layer_norm_cpu,
    add_layer_norm_reference,
    add_layer_norm_triton,
    layer_norm_reference,
    layer_norm_triton,
)

# (tokens, hidden): 1 token, MiniLM's 384, a non-power of two, an empty batch, BERT-large's 1024 on a GPU
SHAPES = [(1, 64), (7, 384), (3, 1000), (0, 384)] + ([(257, 1024)] if GPU else [])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_layer_norm_matches_reference(dtype: torch.dtype, shape: tuple[int, int]) -> None:
    x = randn(*shape, dtype=dtype, seed=1, scale=3.0) + 2.0  # an offset mean: centering matters
    w, b = randn(shape[1], dtype=dtype, seed=2), randn(shape[1], dtype=dtype, seed=3)
    assert_close(layer_norm_triton(x, w, b, 1e-12), layer_norm_reference(x, w, b, 1e-12))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_add_layer_norm_matches_reference(dtype: torch.dtype, shape: tuple[int, int]) -> None:
    x = randn(*shape, dtype=dtype, seed=4)
    res = randn(*shape, dtype=dtype, seed=5, scale=5.0)
    w, b = randn(shape[1], dtype=torch.float32, seed=6), randn(shape[1], dtype=torch.float32, seed=7)
    assert_close(add_layer_norm_triton(x, res, w, b, 1e-5), add_layer_norm_reference(x, res, w, b, 1e-5))


def test_reference_is_layer_norm_in_float64_and_cpu_path_equals_it() -> None:
    x, res = randn(9, 384, dtype=torch.float32, seed=8), randn(9, 384, dtype=torch.float32, seed=9)
    w, b = randn(384, dtype=torch.float32, seed=10), randn(384, dtype=torch.float32, seed=11)
    want = torch.nn.functional.layer_norm((x + res).double(), (384,), w.double(), b.double(), 1e-12)
    assert_close(add_layer_norm_reference(x, res, w, b, 1e-12), want.float())
    assert torch.equal(add_layer_norm_cpu(x, res, w, b, 1e-12), add_layer_norm_reference(x, res, w, b, 1e-12))


def test_layer_norm_rejects_mismatched_bias() -> None:
    x = randn(2, 64, dtype=torch.float32, seed=12)
    with pytest.raises(ValueError, match="weight/bias"):
        layer_norm_triton(x, randn(64, dtype=torch.float32, seed=13), randn(32, dtype=torch.float32, seed=14), 1e-6)
