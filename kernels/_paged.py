"""Torch pieces the two paged attention ops share (no triton here): input checks, the reference's per-sequence
gather and causal attention, and the CPU path's batched gather through the block tables.

Shapes: T = tokens, B = sequences, Hq/Hk = query/KV heads, D = head dim, L = padded KV length.
KV cache of one layer: [num_blocks, block_size, Hk, D].
"""

import torch


def check_paged_inputs(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor
) -> None:
    if q.dim() != 3 or k_cache.dim() != 4 or k_cache.shape != v_cache.shape:
        raise ValueError(f"expected q [T, Hq, D] and caches [N, block, Hk, D], got {tuple(q.shape)}, "
                         f"{tuple(k_cache.shape)}, {tuple(v_cache.shape)}")  # fmt: skip
    if q.shape[2] != k_cache.shape[3] or q.shape[1] % k_cache.shape[2] != 0:
        raise ValueError(f"q heads/dim {tuple(q.shape[1:])} do not fit the cache's {tuple(k_cache.shape[2:])}")
    if q.stride(2) != 1 or k_cache.stride(3) != 1 or v_cache.stride(3) != 1:
        raise ValueError("paged attention needs a contiguous head dim in q and the caches")
    if q.dtype != k_cache.dtype or v_cache.dtype != k_cache.dtype:
        raise ValueError(f"q and cache dtypes differ: {q.dtype}, {k_cache.dtype}, {v_cache.dtype}")
    if block_tables.dim() != 2 or block_tables.stride(1) != 1:
        raise ValueError(f"block_tables must be [B, max_blocks] with contiguous rows, got {tuple(block_tables.shape)}")


def check_attention_options(sliding_window: int | None, logits_soft_cap: float | None) -> None:
    if sliding_window is not None and sliding_window < 1:
        raise ValueError(f"sliding_window must be >= 1 (or None for full attention), got {sliding_window}")
    if logits_soft_cap is not None and not logits_soft_cap > 0:
        raise ValueError(f"logits_soft_cap must be > 0 (or None), got {logits_soft_cap}")


# -- the reference: one sequence at a time ------------------------------------------------------------------------


def gather_kv(cache: torch.Tensor, block_table: torch.Tensor, seq_len: int) -> torch.Tensor:
    # -> [seq_len, Hk, D]
    block_size = cache.shape[1]
    num_blocks = (seq_len + block_size - 1) // block_size
    return cache[block_table[:num_blocks].long()].reshape(-1, *cache.shape[2:])[:seq_len]


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_start: int, scale: float,
    sliding_window: int | None = None, logits_soft_cap: float | None = None,
) -> torch.Tensor:
    # q: [Lq, Hq, D] at absolute positions q_start..; k, v: [Lk, Hk, D] at 0..Lk-1; causal; -> [Lq, Hq, D].
    # sliding_window W: query p sees keys p - W + 1 .. p (itself included, as transformers counts);
    # logits_soft_cap c: scores become c * tanh(scores / c) before the mask (Gemma 2)
    lq, hq, _ = q.shape
    lk, hk, _ = k.shape
    group = hq // hk
    kk = k.float().repeat_interleave(group, dim=1)
    vv = v.float().repeat_interleave(group, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q.float(), kk) * scale
    if logits_soft_cap is not None:
        scores = torch.tanh(scores / logits_soft_cap) * logits_soft_cap
    qpos = torch.arange(q_start, q_start + lq, device=q.device)[:, None]
    kpos = torch.arange(lk, device=q.device)[None, :]
    masked = kpos > qpos
    if sliding_window is not None:
        masked |= kpos <= qpos - sliding_window
    scores = scores.masked_fill(masked, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return torch.einsum("hqk,khd->qhd", probs, vv).to(q.dtype)


# -- the CPU path: whole batches ---------------------------------------------------------------------------------


def gather_slots(
    block_tables: torch.Tensor, lens: torch.Tensor, max_len: int, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    # block_tables: [B, max_blocks], lens: [B] int64 -> slots [B, L] (cache row of each position), valid [B, L].
    # Positions past a sequence's length read its position 0 instead (always a written, finite slot) and are
    # masked out of the softmax, so stale or NaN cache rows never reach the output.
    pos = torch.arange(max_len, device=block_tables.device)
    num_blocks = (max_len + block_size - 1) // block_size
    slots = block_tables[:, :num_blocks].long()[:, pos // block_size] * block_size + pos % block_size
    valid = pos[None, :] < lens[:, None]
    return torch.where(valid, slots, slots[:, :1]), valid


def gather_window_slots(
    block_tables: torch.Tensor, lens: torch.Tensor, window: int, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    # Like gather_slots, over the last `window` positions of each sequence only (a sliding-window decode):
    # -> slots [B, W'] of positions max(len - W, 0) + j, valid [B, W'], with W' = min(window, longest length)
    width = max(1, min(window, int(lens.max()))) if lens.numel() else 1
    starts = (lens - window).clamp(min=0)
    pos = starts[:, None] + torch.arange(width, device=block_tables.device)[None, :]  # [B, W']
    valid = pos < lens[:, None]
    block_idx = (pos // block_size).clamp(max=block_tables.shape[1] - 1)
    slots = block_tables.long().gather(1, block_idx) * block_size + pos % block_size
    return torch.where(valid, slots, slots[:, :1]), valid


def gather_rows(cache: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    # cache: [num_blocks, block_size, Hk, D], slots: [B, L] -> [B, Hk, L, D] contiguous (one row gather + one copy)
    hk, d = cache.shape[2], cache.shape[3]
    rows = cache.view(-1, hk * d).index_select(0, slots.reshape(-1))  # [B*L, Hk*D]
    return rows.view(*slots.shape, hk, d).transpose(1, 2).contiguous()
