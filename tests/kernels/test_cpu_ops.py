"""kernels/cpu_ops.py against the torch reference on CPU: fp32 and bf16, awkward shapes (1 token, block boundaries
±1, GQA group 1 and 3, empty sequences in a prefill, decodes riding along a prefill chunk, batches big enough to be
cut into length groups). The caches hold NaN wherever no sequence wrote, so a read past a length shows."""

import pytest
import torch
from kernel_testing import assert_close, randn
from paged_cases import paged_cache

import kernels
from kernels import cpu_ops, reference

DTYPES = [torch.float32, torch.bfloat16]
BLOCK = 16
D = 32


def _heads(group: int) -> tuple[int, int]:
    return 2 * group, 2  # Hq, Hk


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("group", [1, 3])
@pytest.mark.parametrize(
    "seq_lens",
    [
        [1],
        [BLOCK - 1, BLOCK, BLOCK + 1],
        [2 * BLOCK + 1, 1, 3 * BLOCK - 1],
        list(range(1, 70, 2)),
        [0, 5],
        [0],
        [0] + list(range(1, 40)),
    ],
    ids=["one", "boundary", "mixed", "grouped", "no-keys", "only-no-keys", "grouped-no-keys"],
)
def test_decode_matches_reference(dtype: torch.dtype, group: int, seq_lens: list[int]) -> None:
    hq, hk = _heads(group)
    k_cache, v_cache, tables = paged_cache(seq_lens, BLOCK, hk, D, dtype, seed=len(seq_lens) + group)
    q = randn(len(seq_lens), hq, D, dtype=dtype, seed=5)
    lens = torch.tensor(seq_lens, dtype=torch.int32)
    expected = reference.paged_attention_decode(q, k_cache, v_cache, lens, tables, D**-0.5)
    assert_close(cpu_ops.paged_attention_decode(q, k_cache, v_cache, lens, tables, D**-0.5), expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("group", [1, 3])
@pytest.mark.parametrize(
    "q_lens,seq_lens",
    [
        ([1], [1]),  # a one-token prompt
        ([BLOCK - 1, BLOCK, BLOCK + 1], [BLOCK - 1, BLOCK, BLOCK + 1]),  # no cached prefix, block boundaries
        ([5, 0, BLOCK + 1, 1], [BLOCK + 5, 7, 2 * BLOCK + 1, 3 * BLOCK - 1]),  # cached prefixes, empty, a decode
        ([0, 3, 0], [4, 3, 9]),  # empty sequences around a chunk
        ([1] * 5 + [20], [9, 17, 16, 33, 1, 40]),  # decodes riding along a prefill chunk
    ],
    ids=["one", "boundary", "prefix", "empty", "decodes"],
)
def test_prefill_matches_reference(dtype: torch.dtype, group: int, q_lens: list[int], seq_lens: list[int]) -> None:
    hq, hk = _heads(group)
    k_cache, v_cache, tables = paged_cache(seq_lens, BLOCK, hk, D, dtype, seed=len(q_lens) + group)
    q = randn(sum(q_lens), hq, D, dtype=dtype, seed=6)
    cu = torch.zeros(len(q_lens) + 1, dtype=torch.int32)
    cu[1:] = torch.tensor(q_lens).cumsum(0)
    lens = torch.tensor(seq_lens, dtype=torch.int32)
    expected = reference.paged_attention_prefill(q, k_cache, v_cache, cu, lens, tables, D**-0.5)
    assert_close(cpu_ops.paged_attention_prefill(q, k_cache, v_cache, cu, lens, tables, D**-0.5), expected)


def test_dispatch_takes_cpu_ops_unless_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = cpu_ops.paged_attention_decode
    monkeypatch.setattr(cpu_ops, "paged_attention_decode", lambda *a: calls.append(1) or real(*a))
    k_cache, v_cache, tables = paged_cache([3, 20], BLOCK, 1, D, torch.float32, seed=9)
    q = randn(2, 3, D, dtype=torch.float32, seed=10)
    lens = torch.tensor([3, 20], dtype=torch.int32)
    expected = reference.paged_attention_decode(q, k_cache, v_cache, lens, tables, 0.2)
    assert_close(kernels.paged_attention_decode(q, k_cache, v_cache, lens, tables, 0.2), expected)
    assert calls == [1]
    monkeypatch.setenv("HEARTH_KERNELS", "reference")
    assert torch.equal(kernels.paged_attention_decode(q, k_cache, v_cache, lens, tables, 0.2), expected)
    assert calls == [1]
