import pytest
import torch
from kernel_testing import DEVICE, DTYPES, GPU, assert_close, randn
from paged_cases import paged_cache

from kernels import reference
from kernels.triton_ops.paged_attention_prefill import paged_attention_prefill

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
    out = paged_attention_prefill(q, k_cache, v_cache, cu_seqlens, seq_lens, tables, d**-0.5, **kw)
    assert_close(out, reference.paged_attention_prefill(q, k_cache, v_cache, cu_seqlens, seq_lens, tables, d**-0.5))


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
        paged_attention_prefill(q, k_cache, v_cache, cu, torch.tensor([4], device=DEVICE), tables, 0.125)


def test_prefill_head_dim_not_a_power_of_two() -> None:
    _run([(9, 0), (3, 20)], 4, 2, 80, torch.float16, 16, seed=57)
