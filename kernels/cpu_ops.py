"""Fast CPU versions of the ops where the torch reference's per-sequence Python costs: paged attention for a whole
batch in a few torch calls (one gather of K/V through the block tables, then two batched matmuls for decode, or
`scaled_dot_product_attention`'s flash kernel for each prefill chunk).
Same contracts and shapes as kernels/reference.py; the dispatch in kernels/ops.py picks these for CPU tensors.

Shapes: T = tokens, B = sequences, Hq/Hk = query/KV heads, G = Hq // Hk, D = head dim, L = padded KV length.
"""

import torch
import torch.nn.functional as F

# Decode batches are sorted by KV length and cut into groups of at least this many sequences, so the padded
# [B, Hk, L, D] gather holds little padding (a 64-sequence batch with lengths 40-700 gathers ~2x less) while the
# fixed cost per group stays small.
_DECODE_GROUP = 16


def _gather_slots(
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


def _gather(cache: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    # cache: [num_blocks, block_size, Hk, D], slots: [B, L] -> [B, Hk, L, D] contiguous (one row gather + one copy)
    hk, d = cache.shape[2], cache.shape[3]
    rows = cache.view(-1, hk * d).index_select(0, slots.reshape(-1))  # [B*L, Hk*D]
    return rows.view(*slots.shape, hk, d).transpose(1, 2).contiguous()


def _decode_group(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    lens: torch.Tensor,
    max_len: int,
    block_tables: torch.Tensor,
    scale: float,
    empty: bool,
) -> torch.Tensor:
    # q: [B, Hq, D] -> [B, Hq, D]; the G query heads of one KV head are its G "query positions" (GQA, no repeat)
    b, hq, d = q.shape
    hk = k_cache.shape[2]
    slots, valid = _gather_slots(block_tables, lens, max_len, k_cache.shape[1])
    k = _gather(k_cache, slots)  # [B, Hk, L, D]
    v = _gather(v_cache, slots)
    qg = q.view(b, hk, hq // hk, d).to(k.dtype)  # [B, Hk, G, D]
    # Two batched matmuls in the cache dtype, softmax in fp32: for one query row per head this is ~2x faster on
    # CPU than SDPA's flash kernel (which tiles for long queries). P·V from 16-bit probabilities, as on a GPU.
    scores = torch.matmul(qg, k.transpose(-1, -2)).float().mul_(scale)  # [B, Hk, G, L]
    scores.masked_fill_(~valid[:, None, None, :], float("-inf"))
    o = torch.matmul(scores.softmax(-1).to(v.dtype), v)  # [B, Hk, G, D]
    if empty:  # a sequence with no keys attends to nothing: zeros, like the reference
        o.masked_fill_((lens == 0)[:, None, None, None], 0)
    return o.reshape(b, hq, d).to(q.dtype)


def paged_attention_decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    seq_lens: torch.Tensor,
    block_tables: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    # q: [B, Hq, D], one query per sequence at position seq_lens[b] - 1 -> [B, Hq, D]
    b = q.shape[0]
    lens = seq_lens.long()
    host = lens.tolist()
    if b < 2 * _DECODE_GROUP:
        return _decode_group(q, k_cache, v_cache, lens, max(host), block_tables, scale, min(host) == 0)
    order = sorted(range(b), key=host.__getitem__)
    out = torch.empty_like(q)
    num_groups = b // _DECODE_GROUP
    for g in range(num_groups):
        rows = order[g * b // num_groups : (g + 1) * b // num_groups]
        idx = torch.tensor(rows, device=q.device)
        o = _decode_group(
            q[idx], k_cache, v_cache, lens[idx], host[rows[-1]], block_tables[idx], scale, host[rows[0]] == 0
        )
        out.index_copy_(0, idx, o)
    return out


def paged_attention_prefill(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    seq_lens: torch.Tensor,
    block_tables: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    # q: [T, Hq, D] over B sequences (cu_seqlens_q: [B+1]); seq_lens: [B] KV length incl. this chunk; causal.
    # Single-token sequences (decodes riding along a prefill chunk) go through the batched decode path together;
    # each longer chunk is one SDPA call over its gathered K/V. -> [T, Hq, D]
    out = torch.empty_like(q)
    cu = cu_seqlens_q.tolist()
    lens = seq_lens.tolist()
    hq = q.shape[1]
    hk, block_size = k_cache.shape[2], k_cache.shape[1]
    singles = [b for b in range(len(lens)) if cu[b + 1] - cu[b] == 1]
    if singles:
        rows = torch.tensor([cu[b] for b in singles], device=q.device)
        sel = torch.tensor(singles, device=q.device)
        o = paged_attention_decode(q[rows], k_cache, v_cache, seq_lens[sel], block_tables[sel], scale)
        out.index_copy_(0, rows, o)
    for b in range(len(lens)):
        s, e = cu[b], cu[b + 1]
        lq, lk = e - s, lens[b]
        if lq <= 1:
            continue
        table = block_tables[b : b + 1]
        slots, _ = _gather_slots(table, seq_lens[b : b + 1].long(), lk, block_size)
        # Each KV head repeated for its G query heads (SDPA's CPU flash kernel has no GQA; with
        # enable_gqa it falls back to the unfused math path, ~4x slower here; so does a 3-d input)
        k = _gather(k_cache, slots).repeat_interleave(hq // hk, dim=1)  # [1, Hq, Lk, D]
        v = _gather(v_cache, slots).repeat_interleave(hq // hk, dim=1)
        qh = q[s:e].transpose(0, 1)[None].to(k.dtype)  # [1, Hq, Lq, D]
        if lq == lk:  # no cached prefix: plain causal
            o = F.scaled_dot_product_attention(qh, k, v, is_causal=True, scale=scale)
        else:  # query i sits at absolute position lk - lq + i
            qpos = torch.arange(lk - lq, lk, device=q.device)[:, None]
            mask = torch.arange(lk, device=q.device)[None, :] <= qpos  # [Lq, Lk]
            o = F.scaled_dot_product_attention(qh, k, v, attn_mask=mask, scale=scale)
        out[s:e] = o[0].transpose(0, 1).to(q.dtype)  # [Lq, Hq, D]
    return out
