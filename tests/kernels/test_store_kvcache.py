import pytest
import torch
from kernel_testing import DEVICE, DTYPES, randn

from kernels import forward_scope
from kernels.store_kvcache import store_kvcache_cpu, store_kvcache_reference, store_kvcache_triton


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("heads_dim", [(3, 64), (8, 128)])
@pytest.mark.parametrize("slot_dtype", [torch.int32, torch.int64])
def test_store_kvcache_writes_only_mapped_slots(
    dtype: torch.dtype, heads_dim: tuple[int, int], slot_dtype: torch.dtype
) -> None:
    hk, d = heads_dim
    block_size, num_blocks = 16, 6
    # block boundaries ±1, the last slot of the cache, and a padded token (-1) that must not be stored
    slots = torch.tensor([0, 15, 16, 17, -1, 31, 32, 95], dtype=slot_dtype, device=DEVICE)
    k = randn(len(slots), hk, d, dtype=dtype, seed=31)
    v = randn(len(slots), hk, d, dtype=dtype, seed=32)
    k_cache = torch.full((num_blocks, block_size, hk, d), float("nan"), dtype=dtype, device=DEVICE)
    v_cache = k_cache.clone()
    k_ref, v_ref = k_cache.clone(), v_cache.clone()
    store_kvcache_triton(k, v, k_cache, v_cache, slots)
    store_kvcache_reference(k, v, k_ref, v_ref, slots)
    # bit-exact, NaN where nothing was written (equal_nan: unmapped slots must stay untouched)
    torch.testing.assert_close(k_cache, k_ref, atol=0, rtol=0, equal_nan=True)
    torch.testing.assert_close(v_cache, v_ref, atol=0, rtol=0, equal_nan=True)
    assert int(k_cache.isnan().any(-1).any(-1).sum()) == num_blocks * block_size - 7


def test_store_kvcache_from_fused_qkv_views() -> None:
    tokens, hq, hk, d = 5, 9, 3, 64
    qkv = randn(tokens, (hq + 2 * hk) * d, dtype=torch.float16, seed=33)
    k = qkv[:, hq * d : (hq + hk) * d].view(tokens, hk, d)
    v = qkv[:, (hq + hk) * d :].view(tokens, hk, d)
    slots = torch.tensor([3, 4, 5, 6, 7], device=DEVICE)
    k_cache = torch.zeros(2, 8, hk, d, dtype=torch.float16, device=DEVICE)
    v_cache = torch.zeros_like(k_cache)
    store_kvcache_triton(k, v, k_cache, v_cache, slots)
    assert torch.equal(k_cache.view(-1, hk, d)[3:8], k)
    assert torch.equal(v_cache.view(-1, hk, d)[3:8], v)


def test_store_kvcache_rejects_mismatched_cache() -> None:
    k = randn(2, 3, 64, dtype=torch.float32, seed=34)
    cache = torch.zeros(2, 16, 4, 64, device=DEVICE)
    with pytest.raises(ValueError, match="cache shape"):
        store_kvcache_triton(k, k, cache, cache.clone(), torch.zeros(2, dtype=torch.int64, device=DEVICE))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padded", [False, True])
def test_cpu_path_equals_the_reference_over_steps(dtype: torch.dtype, padded: bool) -> None:
    # Inside a forward scope the CPU path decides once per slot_mapping whether it can index_copy_; a step with a -1 slot takes
    # the reference. Two layers of one step share the slots; a second step brings new ones.
    tokens, hq, hk, d = 5, 9, 3, 64
    gen = torch.Generator().manual_seed(35)
    k_cache = torch.full((6, 16, hk, d), float("nan"), dtype=dtype)
    v_cache, k_ref, v_ref = k_cache.clone(), k_cache.clone(), k_cache.clone()
    for step in range(2):
        slots = torch.randperm(96, generator=gen)[:tokens]
        if padded:
            slots[2] = -1
        with forward_scope():
            for layer in range(2):
                qkv = randn(tokens, (hq + 2 * hk) * d, dtype=dtype, seed=36 + 2 * step + layer).cpu()
                k = qkv[:, hq * d : (hq + hk) * d].view(tokens, hk, d)
                v = qkv[:, (hq + hk) * d :].view(tokens, hk, d)
                store_kvcache_cpu(k, v, k_cache, v_cache, slots)
                store_kvcache_reference(k, v, k_ref, v_ref, slots)
                torch.testing.assert_close(k_cache, k_ref, atol=0, rtol=0, equal_nan=True)
                torch.testing.assert_close(v_cache, v_ref, atol=0, rtol=0, equal_nan=True)
