"""Pure-torch references for every hot op. The engine calls these on CPU; each Triton kernel must match them.

Shapes: T = tokens in the flattened batch, B = sequences, Hq/Hk = query/KV heads, D = head dim.
KV cache of one layer: [num_blocks, block_size, Hk, D].
"""

import torch


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # x: [T, H] -> [T, H]; computed in fp32, returned in x's dtype
    xf = x.float()
    out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (out * weight.float()).to(x.dtype)


def add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    # returns (rms_norm(x + residual), x + residual); the sum is kept in x's dtype like the fused kernel
    summed = (x.float() + residual.float()).to(x.dtype)
    return rms_norm(summed, weight, eps), summed


def rotary_cos_sin(max_positions: int, head_dim: int, theta: float, device=None) -> torch.Tensor:
    # [max_positions, head_dim] fp32: first half cos, second half sin (rotate-half convention)
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64, device=device) / head_dim))
    freqs = torch.outer(torch.arange(max_positions, dtype=torch.float64, device=device), inv_freq)
    return torch.cat([freqs.cos(), freqs.sin()], dim=-1).float()


def apply_rotary(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, cos_sin: torch.Tensor) -> None:
    # in place; q: [T, Hq, D], k: [T, Hk, D], positions: [T] int, cos_sin: [P, D]
    half = q.shape[-1] // 2
    cs = cos_sin[positions.long()]
    cos = cs[:, None, :half]
    sin = cs[:, None, half:]
    for t in (q, k):
        x1 = t[..., :half].float()
        x2 = t[..., half:].float()
        o1 = x1 * cos - x2 * sin
        o2 = x2 * cos + x1 * sin
        t.copy_(torch.cat([o1, o2], dim=-1).to(t.dtype))


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    # x: [T, 2I] (gate | up) -> [T, I]
    gate, up = x.chunk(2, dim=-1)
    return (torch.nn.functional.silu(gate.float()) * up.float()).to(x.dtype)


def store_kvcache(
    k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, slot_mapping: torch.Tensor
) -> None:
    # k, v: [T, Hk, D]; slot_mapping: [T] int (block * block_size + offset; -1 = don't store)
    keep = slot_mapping >= 0
    slots = slot_mapping[keep].long()
    block_size = k_cache.shape[1]
    kf = k_cache.view(-1, *k_cache.shape[2:])
    vf = v_cache.view(-1, *v_cache.shape[2:])
    assert kf.data_ptr() == k_cache.data_ptr() and block_size > 0
    kf[slots] = k[keep].to(k_cache.dtype)
    vf[slots] = v[keep].to(v_cache.dtype)


def _gather_kv(cache: torch.Tensor, block_table: torch.Tensor, seq_len: int) -> torch.Tensor:
    # -> [seq_len, Hk, D]
    block_size = cache.shape[1]
    num_blocks = (seq_len + block_size - 1) // block_size
    return cache[block_table[:num_blocks].long()].reshape(-1, *cache.shape[2:])[:seq_len]


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_start: int, scale: float) -> torch.Tensor:
    # q: [Lq, Hq, D] at absolute positions q_start..; k, v: [Lk, Hk, D] at 0..Lk-1; causal; -> [Lq, Hq, D]
    lq, hq, _ = q.shape
    lk, hk, _ = k.shape
    group = hq // hk
    kk = k.float().repeat_interleave(group, dim=1)
    vv = v.float().repeat_interleave(group, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q.float(), kk) * scale
    qpos = torch.arange(q_start, q_start + lq, device=q.device)[:, None]
    kpos = torch.arange(lk, device=q.device)[None, :]
    scores = scores.masked_fill(kpos > qpos, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return torch.einsum("hqk,khd->qhd", probs, vv).to(q.dtype)


def paged_attention_prefill(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    seq_lens: torch.Tensor,
    block_tables: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    # q: [T, Hq, D] flattened over B sequences (cu_seqlens_q: [B+1]); seq_lens: [B] total KV length per sequence
    # (cached prefix + this chunk); K/V of this chunk must already be in the cache. Query i of sequence b sits at
    # absolute position seq_lens[b] - q_len_b + i. Causal. -> [T, Hq, D]
    out = torch.empty_like(q)
    cu = cu_seqlens_q.tolist()
    lens = seq_lens.tolist()
    for b in range(len(lens)):
        s, e = cu[b], cu[b + 1]
        if e == s:
            continue
        k = _gather_kv(k_cache, block_tables[b], lens[b])
        v = _gather_kv(v_cache, block_tables[b], lens[b])
        out[s:e] = _attend(q[s:e], k, v, lens[b] - (e - s), scale)
    return out


def paged_attention_decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    seq_lens: torch.Tensor,
    block_tables: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    # q: [B, Hq, D], one query per sequence at position seq_lens[b] - 1 -> [B, Hq, D]
    cu = torch.arange(q.shape[0] + 1, dtype=torch.int32, device=q.device)
    return paged_attention_prefill(q, k_cache, v_cache, cu, seq_lens, block_tables, scale)


def top_k_top_p_min_p_mask(
    logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor, min_p: torch.Tensor
) -> torch.Tensor:
    # logits: [B, V] fp32 (already temperature-scaled); top_k: [B] int (0 = off); top_p, min_p: [B] fp32
    # (1.0 / 0.0 = off). Returns logits with everything outside the kept set at -inf. Ties at the cut are kept.
    vocab = logits.shape[-1]
    sorted_logits, _ = logits.sort(dim=-1, descending=True)
    k = torch.where(top_k <= 0, vocab, top_k.clamp(max=vocab)).long()
    kth = sorted_logits.gather(1, (k - 1)[:, None])
    probs = sorted_logits.softmax(-1)
    cum = probs.cumsum(-1) - probs  # mass strictly before each token
    # top_p >= 1 is "off" exactly: the fp32 cumsum can reach 1.0 before the tail and would drop it
    p_keep = (cum < top_p[:, None]) | (top_p[:, None] >= 1.0)
    p_keep[:, 0] = True
    num_p = p_keep.sum(-1)
    pth = sorted_logits.gather(1, (num_p - 1)[:, None])
    threshold = torch.maximum(kth, pth)
    max_logit = sorted_logits[:, :1]
    min_p_logit = max_logit + torch.log(min_p.clamp(min=1e-30))[:, None]
    threshold = torch.where(min_p[:, None] > 0, torch.maximum(threshold, min_p_logit), threshold)
    return logits.masked_fill(logits < threshold, float("-inf"))
