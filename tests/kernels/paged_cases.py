"""Random paged KV caches for the attention tests: each sequence's blocks are scattered over the cache in a random
order, block-table padding is 0 (as the engine pads), and cache blocks nobody owns hold NaN so a kernel that reads
outside a sequence's keys poisons its output."""

import torch
from kernel_testing import DEVICE, randn


def paged_cache(
    seq_lens: list[int], block_size: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # -> k_cache, v_cache [num_blocks, block_size, Hk, D]; block_tables [B, max_blocks] int32
    blocks_per_seq = [-(-n // block_size) for n in seq_lens]
    max_blocks = max(1, *blocks_per_seq)
    num_blocks = sum(blocks_per_seq) + 2  # two spare blocks nobody owns
    perm = torch.randperm(num_blocks, generator=torch.Generator().manual_seed(seed))
    table = torch.zeros(len(seq_lens), max_blocks, dtype=torch.int32)
    used = 0
    for b, nb in enumerate(blocks_per_seq):
        table[b, :nb] = perm[used : used + nb].to(torch.int32)
        used += nb
    shape = (num_blocks, block_size, num_kv_heads, head_dim)
    k_cache = randn(*shape, dtype=dtype, seed=seed + 1)
    v_cache = randn(*shape, dtype=dtype, seed=seed + 2)
    for b, n in enumerate(seq_lens):  # NaN in every slot past a sequence's length
        flat_k = k_cache.view(-1, num_kv_heads, head_dim)
        flat_v = v_cache.view(-1, num_kv_heads, head_dim)
        for pos in range(n, blocks_per_seq[b] * block_size):
            slot = int(table[b, pos // block_size]) * block_size + pos % block_size
            flat_k[slot] = float("nan")
            flat_v[slot] = float("nan")
    for spare in perm[used:].tolist():
        k_cache[spare] = float("nan")
        v_cache[spare] = float("nan")
    return k_cache, v_cache, table.to(DEVICE)
