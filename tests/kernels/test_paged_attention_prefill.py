import pytest
import torch
from kernel_testing import DEVICE, DTYPES, GPU, assert_close, randn
from paged_cases import paged_cache

from kernels.paged_attention_prefill import (
    paged_attention_prefill_cpu,
    paged_attention_prefill_reference,
    paged_attention_prefill_triton,
)

# (q heads, kv heads, head_dim): GQA ratios 1, 3 (SmolLM2) and 8, head dims 64 and 128
HEADS = [(4, 4, 128), (9, 3, 64), (16, 2, 128), (16, 2, 64)]
# (new tokens, cached prefix) per sequence: a fresh prompt, an empty slot, an empty slot with nothing cached, a
# prefix hit ending on a block boundary +1, a 1-token chunk after a long prefix, a chunk crossing a 64-row tile
CHUNKS = [(5, 0), (0, 3), (0, 0), (17, 16), (1, 40), (65, 15)]


def _run(chunks: list[tuple[int, int]], hq: int, hk: int, d: int, dtype: torch.dtype, block_size: int, seed: int,
         **kw: int) -> None:  # fmt: skip
    seq_lens_list = [q + c for q, c in chunks]
    k_cache, v_cache, tables = paged_cache(seq_lens_list, block_size, hk, d, dtype, seed=seed)
    cu = [0]
    for q_len, _ in chunks:
        cu.append(cu[-1] + q_len)
    q = randn(cu[-1], hq, d, dtype=dtype, seed=seed + 10)
    cu_seqlens = torch.tensor(cu, dtype=torch.int32, device=DEVICE)
    seq_lens = torch.tensor(seq_lens_list, dtype=torch.int32, device=DEVICE)
    out = paged_attention_prefill_triton(q, k_cache, v_cache, cu_seqlens, seq_lens, tables, d**-0.5, **kw)
    assert_close(out, paged_attention_prefill_reference(q, k_cache, v_cache, cu_seqlens, seq_lens, tables, d**-0.5))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("heads", HEADS)
def test_prefill_matches_reference(dtype: torch.dtype, heads: tuple[int, int, int]) -> None:
    _run(CHUNKS, *heads, dtype, block_size=16, seed=51)


@pytest.mark.parametrize("block_size", [5, 32])
def test_prefill_small_tiles_odd_pages(block_size: int) -> None:
    # 16-row, 16-key tiles: many tiles per sequence, causal edges inside tiles, pages of an odd size
    _run([(33, 0), (2, 7), (20, 30)], 6, 3, 64, torch.float32, block_size, seed=52, block_m=16, block_n=16)


def test_prefill_single_token_batch() -> None:
    _run([(1, 0)], 8, 1, 64, torch.float16, 16, seed=53)


@pytest.mark.skipif(not GPU, reason="long prompts are for the GPU run")
def test_prefill_llama8b_heads_long_prompts() -> None:
    _run([(1000, 0), (0, 5), (513, 1500), (1, 2047), (2048, 0)], 32, 8, 128, torch.bfloat16, 16, seed=54)


def test_prefill_rejects_mismatched_batch() -> None:
    k_cache, v_cache, tables = paged_cache([4], 16, 2, 64, torch.float32, seed=55)
    q = randn(4, 4, 64, dtype=torch.float32, seed=56)
    cu = torch.tensor([0, 4, 4], dtype=torch.int32, device=DEVICE)
    with pytest.raises(ValueError, match="disagree"):
        paged_attention_prefill_triton(q, k_cache, v_cache, cu, torch.tensor([4], device=DEVICE), tables, 0.125)


def test_prefill_head_dim_not_a_power_of_two() -> None:
    _run([(9, 0), (3, 20)], 4, 2, 80, torch.float16, 16, seed=57)


# The CPU path (batched torch) against the reference: fp32 and bf16, GQA group 1 and 3, head dim 32, block 16
CPU_DTYPES = [torch.float32, torch.bfloat16]
BLK = 16
CPU_D = 32


@pytest.mark.parametrize("dtype", CPU_DTYPES)
@pytest.mark.parametrize("group", [1, 3])
@pytest.mark.parametrize(
    "q_lens,seq_lens",
    [
        ([1], [1]),  # a one-token prompt
        ([BLK - 1, BLK, BLK + 1], [BLK - 1, BLK, BLK + 1]),  # no cached prefix, block boundaries
        ([5, 0, BLK + 1, 1], [BLK + 5, 7, 2 * BLK + 1, 3 * BLK - 1]),  # cached prefixes, empty, a decode
        ([0, 3, 0], [4, 3, 9]),  # empty sequences around a chunk
        ([1] * 5 + [20], [9, 17, 16, 33, 1, 40]),  # decodes riding along a prefill chunk
    ],
    ids=["one", "boundary", "prefix", "empty", "decodes"],
)
def test_cpu_prefill_matches_reference(dtype: torch.dtype, group: int, q_lens: list[int], seq_lens: list[int]) -> None:
    hq, hk = 2 * group, 2
    k_cache, v_cache, tables = paged_cache(seq_lens, BLK, hk, CPU_D, dtype, seed=len(q_lens) + group)
    q = randn(sum(q_lens), hq, CPU_D, dtype=dtype, seed=6)
    cu = torch.zeros(len(q_lens) + 1, dtype=torch.int32)
    cu[1:] = torch.tensor(q_lens).cumsum(0)
    lens = torch.tensor(seq_lens, dtype=torch.int32)
    expected = paged_attention_prefill_reference(q, k_cache, v_cache, cu, lens, tables, CPU_D**-0.5)
    assert_close(paged_attention_prefill_cpu(q, k_cache, v_cache, cu, lens, tables, CPU_D**-0.5), expected)


# Sliding window and soft-cap: windows inside one key tile and across several, chunks after a cached prefix longer
# than the window (whole key tiles are skipped), decodes riding along.
@pytest.mark.parametrize(
    "options", [(16, None), (5, None), (40, 2.0), (None, 2.0), (1, None)], ids=lambda o: f"w{o[0]}-cap{o[1]}"
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_prefill_window_and_soft_cap_match_reference(options: tuple, dtype: torch.dtype) -> None:
    window, cap = options
    chunks = [(33, 0), (2, 7), (20, 45), (1, 30), (0, 4)]
    seq_lens_list = [q + c for q, c in chunks]
    k_cache, v_cache, tables = paged_cache(seq_lens_list, 8, 2, 32, dtype, seed=70)
    cu = torch.tensor([0, *torch.tensor([q for q, _ in chunks]).cumsum(0).tolist()], dtype=torch.int32, device=DEVICE)
    q = randn(int(cu[-1]), 4, 32, dtype=dtype, seed=71, scale=3.0)
    seq_lens = torch.tensor(seq_lens_list, dtype=torch.int32, device=DEVICE)
    kw = {"sliding_window": window, "logits_soft_cap": cap}
    expected = paged_attention_prefill_reference(q, k_cache, v_cache, cu, seq_lens, tables, 0.18, **kw)
    out = paged_attention_prefill_triton(q, k_cache, v_cache, cu, seq_lens, tables, 0.18, block_m=16, block_n=16,
                                         **kw)  # fmt: skip
    assert_close(out, expected)
    cpu = paged_attention_prefill_cpu(q.cpu(), k_cache.cpu(), v_cache.cpu(), cu.cpu(), seq_lens.cpu(), tables.cpu(),
                                      0.18, **kw)  # fmt: skip
    assert_close(cpu, expected.cpu())
    plain = paged_attention_prefill_reference(q, k_cache, v_cache, cu, seq_lens, tables, 0.18)
    assert not torch.allclose(plain.float(), expected.float(), atol=1e-3)  # the options change the result
