import pytest
import torch
from kernel_testing import DEVICE, DTYPES, GPU, assert_close, randn
from paged_cases import paged_cache

from kernels import forward_scope
from kernels.paged_attention_decode import (
    paged_attention_decode_cpu,
    paged_attention_decode_reference,
    paged_attention_decode_triton,
)

# (q heads, kv heads, head_dim, splits): GQA ratios 1, 3 (SmolLM2: 9/3, 64) and 8; head dims 64 and 128; split-KV
# off and on (3 splits of a 100-key sequence leave one split empty). The interpreter is slow: no full cross product.
CASES = [(4, 4, 128, 1), (9, 3, 64, 3), (16, 2, 128, 3), (16, 2, 64, 1)]
# 1 token, block boundaries ±1 (block 16), tile boundaries ±1 (64 keys), and a padded batch slot (0 keys)
SEQ_LENS = [1, 15, 16, 17, 63, 64, 65, 100, 0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
def test_decode_matches_reference(dtype: torch.dtype, case: tuple[int, int, int, int]) -> None:
    hq, hk, head_dim, num_splits = case
    k_cache, v_cache, tables = paged_cache(SEQ_LENS, 16, hk, head_dim, dtype, seed=41)
    q = randn(len(SEQ_LENS), hq, head_dim, dtype=dtype, seed=42)
    seq_lens = torch.tensor(SEQ_LENS, dtype=torch.int32, device=DEVICE)
    scale = head_dim**-0.5
    out = paged_attention_decode_triton(q, k_cache, v_cache, seq_lens, tables, scale, num_splits=num_splits)
    assert_close(out, paged_attention_decode_reference(q, k_cache, v_cache, seq_lens, tables, scale))
    assert torch.equal(out[-1], torch.zeros_like(out[-1]))  # no keys: zeros, like the reference


@pytest.mark.parametrize("block_size", [5, 16, 32])
def test_decode_split_kv_with_small_tiles(block_size: int) -> None:
    # many tiles and splits per sequence, including empty splits, over an odd page size
    seq_lens_list = [1, 31, 33, 130]
    k_cache, v_cache, tables = paged_cache(seq_lens_list, block_size, 2, 64, torch.float32, seed=43)
    q = randn(4, 6, 64, dtype=torch.float32, seed=44)
    seq_lens = torch.tensor(seq_lens_list, dtype=torch.int32, device=DEVICE)
    out = paged_attention_decode_triton(q, k_cache, v_cache, seq_lens, tables, 0.125, num_splits=5, block_n=16)
    assert_close(out, paged_attention_decode_reference(q, k_cache, v_cache, seq_lens, tables, 0.125))


@pytest.mark.skipif(not GPU, reason="long contexts are for the GPU run")
@pytest.mark.parametrize("num_splits", [None, 1, 8])
def test_decode_llama8b_heads_long_context(num_splits: int | None) -> None:
    # None: the launch heuristic (splits when B·Hk is small next to the SM count)
    lens = [2048, 1, 1500, 2047, 777, 4096, 16, 2049]
    k_cache, v_cache, tables = paged_cache(lens, 16, 8, 128, torch.bfloat16, seed=45)
    q = randn(len(lens), 32, 128, dtype=torch.bfloat16, seed=46)
    seq_lens = torch.tensor(lens, dtype=torch.int32, device=DEVICE)
    out = paged_attention_decode_triton(q, k_cache, v_cache, seq_lens, tables, 128**-0.5, num_splits=num_splits)
    assert_close(out, paged_attention_decode_reference(q, k_cache, v_cache, seq_lens, tables, 128**-0.5))


def test_decode_rejects_indivisible_heads() -> None:
    k_cache, v_cache, tables = paged_cache([4], 16, 3, 64, torch.float32, seed=47)
    q = randn(1, 4, 64, dtype=torch.float32, seed=48)
    with pytest.raises(ValueError, match="do not fit"):
        paged_attention_decode_triton(q, k_cache, v_cache, torch.tensor([4], device=DEVICE), tables, 0.125)


def test_decode_head_dim_not_a_power_of_two() -> None:
    # D=80 runs in a 128-wide tile with the tail masked
    k_cache, v_cache, tables = paged_cache([1, 40, 70], 16, 2, 80, torch.float16, seed=49)
    q = randn(3, 4, 80, dtype=torch.float16, seed=50)
    seq_lens = torch.tensor([1, 40, 70], dtype=torch.int32, device=DEVICE)
    out = paged_attention_decode_triton(q, k_cache, v_cache, seq_lens, tables, 80**-0.5, num_splits=2)
    assert_close(out, paged_attention_decode_reference(q, k_cache, v_cache, seq_lens, tables, 80**-0.5))


# The CPU path (batched torch) against the reference: fp32 and bf16, GQA group 1 and 3, head dim 32, block 16
CPU_DTYPES = [torch.float32, torch.bfloat16]
BLK = 16
CPU_D = 32


@pytest.mark.parametrize("dtype", CPU_DTYPES)
@pytest.mark.parametrize("group", [1, 3])
@pytest.mark.parametrize(
    "seq_lens",
    [
        [1],
        [BLK - 1, BLK, BLK + 1],
        [2 * BLK + 1, 1, 3 * BLK - 1],
        list(range(1, 70, 2)),
        [0, 5],
        [0],
        [0] + list(range(1, 40)),
    ],
    ids=["one", "boundary", "mixed", "grouped", "no-keys", "only-no-keys", "grouped-no-keys"],
)
def test_cpu_decode_matches_reference(dtype: torch.dtype, group: int, seq_lens: list[int]) -> None:
    hq, hk = 2 * group, 2
    k_cache, v_cache, tables = paged_cache(seq_lens, BLK, hk, CPU_D, dtype, seed=len(seq_lens) + group)
    q = randn(len(seq_lens), hq, CPU_D, dtype=dtype, seed=5)
    lens = torch.tensor(seq_lens, dtype=torch.int32)
    expected = paged_attention_decode_reference(q, k_cache, v_cache, lens, tables, CPU_D**-0.5)
    assert_close(paged_attention_decode_cpu(q, k_cache, v_cache, lens, tables, CPU_D**-0.5), expected)


@pytest.mark.parametrize("window", [None, 8])
def test_cpu_decode_in_a_forward_scope_reuses_the_plan_across_layers(window: int | None) -> None:
    # One step's metadata, two layers' caches (and a grouped batch): the plan built for the first layer must give
    # the second layer its own correct output; a window is a plan of its own.
    seq_lens = [0] + list(range(1, 40))
    lens = torch.tensor(seq_lens, dtype=torch.int32)
    k_cache, v_cache, tables = paged_cache(seq_lens, BLK, 2, CPU_D, torch.float32, seed=70)
    layers = [(k_cache, v_cache), (v_cache * 2 - 0.5, k_cache * -1.5)]  # one block table, the caches differ
    q = randn(len(seq_lens), 4, CPU_D, dtype=torch.float32, seed=72)
    with forward_scope():
        for k_cache, v_cache in layers:
            for w in (window, None):
                expected = paged_attention_decode_reference(q, k_cache, v_cache, lens, tables, 0.125, sliding_window=w)
                out = paged_attention_decode_cpu(q, k_cache, v_cache, lens, tables, 0.125, sliding_window=w)
                assert_close(out, expected)


# Sliding window and soft-cap (Mistral, Gemma): windows shorter than, equal to and longer than the contexts, with
# split-KV (splits then cover only the window) and tiles that start inside a window.
OPTION_CASES = [  # (sliding_window, logits_soft_cap, num_splits)
    (16, None, 1), (17, None, 3), (1, None, 1), (200, None, 2), (None, 2.5, 1), (33, 2.5, 3),
]


@pytest.mark.parametrize("options", OPTION_CASES, ids=lambda o: f"w{o[0]}-cap{o[1]}-s{o[2]}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_decode_window_and_soft_cap_match_reference(options: tuple, dtype: torch.dtype) -> None:
    window, cap, num_splits = options
    lens = [1, 15, 17, 64, 100, 0]
    k_cache, v_cache, tables = paged_cache(lens, 16, 2, 64, dtype, seed=60)
    q = randn(len(lens), 6, 64, dtype=dtype, seed=61, scale=3.0)  # big scores, so the cap bites
    seq_lens = torch.tensor(lens, dtype=torch.int32, device=DEVICE)
    kw = {"sliding_window": window, "logits_soft_cap": cap}
    expected = paged_attention_decode_reference(q, k_cache, v_cache, seq_lens, tables, 0.125, **kw)
    out = paged_attention_decode_triton(q, k_cache, v_cache, seq_lens, tables, 0.125, num_splits=num_splits,
                                        block_n=16, **kw)  # fmt: skip
    assert_close(out, expected)
    assert_close(paged_attention_decode_cpu(q.cpu(), k_cache.cpu(), v_cache.cpu(), seq_lens.cpu(), tables.cpu(),
                                            0.125, **kw), expected.cpu())  # fmt: skip
    if cap is not None or window < max(lens):  # the options change the result
        plain = paged_attention_decode_reference(q, k_cache, v_cache, seq_lens, tables, 0.125)
        assert not torch.allclose(plain.float(), expected.float(), atol=1e-3)


def test_decode_window_semantics() -> None:
    # W = 1: each query sees only its own key, so the output is its own value; W >= length: plain attention
    lens = [5, 40]
    k_cache, v_cache, tables = paged_cache(lens, 16, 1, 32, torch.float32, seed=62)
    q = randn(2, 2, 32, dtype=torch.float32, seed=63)
    seq_lens = torch.tensor(lens, dtype=torch.int32, device=DEVICE)
    own = paged_attention_decode_reference(q, k_cache, v_cache, seq_lens, tables, 0.2, sliding_window=1)
    for b, n in enumerate(lens):
        slot = int(tables[b, (n - 1) // 16]) * 16 + (n - 1) % 16
        assert_close(own[b], v_cache.view(-1, 1, 32)[slot].expand(2, 32))
    wide = paged_attention_decode_reference(q, k_cache, v_cache, seq_lens, tables, 0.2, sliding_window=40)
    assert_close(wide, paged_attention_decode_reference(q, k_cache, v_cache, seq_lens, tables, 0.2))
    with pytest.raises(ValueError, match="sliding_window"):
        paged_attention_decode_triton(q, k_cache, v_cache, seq_lens, tables, 0.2, sliding_window=0)
