"""Prefill attention over a flattened variable-length batch, every key read from the paged cache (the new tokens'
K/V are stored first), causal, grouped-query heads. Covers prefix-cache hits and chunked prefill: query i of
sequence b sits at absolute position seq_lens[b] - q_len_b + i.

Triton, grid (T // BLOCK_Q + B, Hk): tile `pid` belongs to the last sequence b with cu_seqlens_q[b] // BLOCK_Q + b <= pid
(a binary search in the kernel), so the launch needs no host sync. A tile holds BLOCK_Q tokens × the GROUP_PAD query
heads of one KV head, flattened to BLOCK_M = BLOCK_Q·GROUP_PAD rows, so each K/V tile serves the whole group.
CPU: each chunk is one SDPA call over its gathered K/V; decodes riding along go through the batched decode path.

Options (keyword, off by default): `sliding_window` W — query p attends keys p - W + 1 .. p (Mistral, Gemma's local
layers; the Triton kernel skips key tiles wholly outside the window); `logits_soft_cap` c — scores become
c * tanh(scores / c) before masking (Gemma 2; on the CPU that path leaves SDPA for two matmuls).
"""

import torch
import torch.nn.functional as F

from kernels import _dispatch
from kernels._dispatch import Backend
from kernels._paged import attend, check_attention_options, check_paged_inputs, gather_kv, gather_rows, gather_slots
from kernels.paged_attention_decode import paged_attention_decode_cpu

# Rows (tokens × group heads) and keys per tile; both ≥ 16 so every dot is legal on sm_90 with 16-bit inputs.
BLOCK_M = 64
BLOCK_N = 64


def launch_config(dtype: torch.dtype, head_dim: int) -> tuple[int, int, int, int]:
    # (block_m, block_n, num_warps, num_stages), from the sm_90 register reports of test_sm90_compile.py: bf16 at
    # D=128 with 4 warps spills (255 registers + 168 B stack), with 8 warps and 3 stages it takes 218 and none;
    # fp32 (IEEE dots on FMA units, a debugging path): 64-row tiles, 8 warps. 32-row tiles (any key tile, 4 or 8
    # warps) crash Triton 3.6's TritonGPURemoveLayoutConversions on sm_90 ("'tt.load' op failed to verify that mask
    # type matches ptr type" on the block-table load; seen on an H200, 2026-11-26), which Triton 3.9 compiles.
    # Spills at D=128 (200 B with Triton 3.6, ~1 KB with 3.9), none at D=64: fine for a debugging path.
    if dtype == torch.float32:
        return 64, 32, 8, 2
    return (BLOCK_M, BLOCK_N, 8, 3) if head_dim > 64 else (BLOCK_M, BLOCK_N, 4, 2)


# -- Triton (defined only where triton can run: kernels/_dispatch.py TRITON) ------------------------------------


if _dispatch.TRITON:
    import triton
    import triton.language as tl

    from kernels._triton_attention import LOG2E, _attend_tile, dot_mode

    @triton.jit
    def _find_sequence(cu_ptr, pid, num_seqs, BLOCK_Q: tl.constexpr):
        lo: tl.int32 = 0
        hi = num_seqs
        while lo < hi:
            mid = (lo + hi) // 2
            if tl.load(cu_ptr + mid) // BLOCK_Q + mid <= pid:
                lo = mid + 1
            else:
                hi = mid
        return lo - 1


    @triton.jit
    def _paged_attention_prefill_kernel(
        q_ptr, kc_ptr, vc_ptr, cu_ptr, seq_lens_ptr, bt_ptr, out_ptr,
        stride_qt, stride_qh, stride_kb, stride_kt, stride_kh, stride_vb, stride_vt, stride_vh,
        stride_bt, stride_ot, stride_oh,
        scale_log2, block_size, group, head_dim, num_seqs, window, soft_cap_log2,
        GROUP_PAD: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
        UPCAST: tl.constexpr, IEEE: tl.constexpr, WINDOW: tl.constexpr, SOFT_CAP: tl.constexpr,
    ):  # fmt: skip
        pid = tl.program_id(0)
        kvh = tl.program_id(1)
        b = _find_sequence(cu_ptr, pid, num_seqs, BLOCK_Q)
        q_start = tl.load(cu_ptr + b)
        tile = pid - (q_start // BLOCK_Q + b)
        q_len = tl.load(cu_ptr + b + 1) - q_start
        if tile * BLOCK_Q >= q_len:
            return
        seq_len = tl.load(seq_lens_ptr + b)
        ctx = seq_len - q_len  # keys already cached before this chunk

        rows = tl.arange(0, BLOCK_Q * GROUP_PAD)
        tok = tile * BLOCK_Q + rows // GROUP_PAD  # token index within the sequence's chunk
        g = rows % GROUP_PAD
        heads = kvh * group + g
        row_ok = (tok < q_len) & (g < group)
        dims = tl.arange(0, BLOCK_D)
        dmask = dims < head_dim
        q_off = (q_start + tok).to(tl.int64) * stride_qt + heads * stride_qh
        q = tl.load(q_ptr + q_off[:, None] + dims[None, :], mask=row_ok[:, None] & dmask[None, :], other=0.0)  # [M, D]
        if UPCAST:
            q = q.to(tl.float32)
        pos = ctx + tok  # [M] absolute position of each row's query

        m_i = tl.full([BLOCK_Q * GROUP_PAD], -1.0e30, tl.float32)
        l_i = tl.zeros([BLOCK_Q * GROUP_PAD], tl.float32)
        acc = tl.zeros([BLOCK_Q * GROUP_PAD, BLOCK_D], tl.float32)
        kv_end = tl.minimum(seq_len, ctx + (tile + 1) * BLOCK_Q)  # one past the tile's last query position
        kv_start = 0
        if WINDOW:  # the tile's first query sees keys from ctx + tile * BLOCK_Q - window + 1 on
            kv_start = tl.maximum(ctx + tile * BLOCK_Q - window + 1, 0) // BLOCK_N * BLOCK_N
        bt_row = bt_ptr + b.to(tl.int64) * stride_bt
        for n0 in range(kv_start, kv_end, BLOCK_N):
            n = n0 + tl.arange(0, BLOCK_N)
            key_ok = row_ok[:, None] & (n[None, :] <= pos[:, None]) & (n < seq_len)[None, :]
            if WINDOW:
                key_ok = key_ok & (n[None, :] > pos[:, None] - window)
            m_i, l_i, acc = _attend_tile(
                q, m_i, l_i, acc, kc_ptr, vc_ptr, bt_row, n, key_ok, kvh, scale_log2, soft_cap_log2,
                stride_kb, stride_kt, stride_kh, stride_vb, stride_vt, stride_vh, block_size, dims, dmask, UPCAST, IEEE,
                SOFT_CAP,
            )  # fmt: skip

        out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
        o_off = (q_start + tok).to(tl.int64) * stride_ot + heads * stride_oh
        tl.store(out_ptr + o_off[:, None] + dims[None, :], out.to(out_ptr.dtype.element_ty),
                 mask=row_ok[:, None] & dmask[None, :])  # fmt: skip


def paged_attention_prefill_triton(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    seq_lens: torch.Tensor,
    block_tables: torch.Tensor,
    scale: float,
    *,
    sliding_window: int | None = None,
    logits_soft_cap: float | None = None,
    block_m: int | None = None,
    block_n: int | None = None,
) -> torch.Tensor:
    # q: [T, Hq, D] over B sequences (cu_seqlens_q: [B+1]); seq_lens: [B] KV length incl. this chunk -> [T, Hq, D]
    check_paged_inputs(q, k_cache, v_cache, block_tables)
    check_attention_options(sliding_window, logits_soft_cap)
    num_seqs = seq_lens.shape[0]
    if cu_seqlens_q.shape != (num_seqs + 1,) or block_tables.shape[0] != num_seqs:
        raise ValueError(f"cu_seqlens_q {tuple(cu_seqlens_q.shape)}, seq_lens {tuple(seq_lens.shape)} and "
                         f"block_tables {tuple(block_tables.shape)} disagree on the batch size")  # fmt: skip
    num_tokens, num_heads, head_dim = q.shape
    num_kv_heads, block_size = k_cache.shape[2], k_cache.shape[1]
    out = torch.empty_like(q)
    if num_tokens == 0 or num_seqs == 0:
        return out
    default_m, default_n, num_warps, num_stages = launch_config(q.dtype, head_dim)
    block_m, block_n = block_m or default_m, block_n or default_n
    group = num_heads // num_kv_heads
    group_pad = triton.next_power_of_2(group)
    block_q = max(1, block_m // group_pad)
    if block_q * group_pad < 16:
        raise ValueError(f"block_m {block_m} leaves fewer than 16 rows per tile")
    upcast, ieee = dot_mode(q.dtype)
    grid = (num_tokens // block_q + num_seqs, num_kv_heads)
    _paged_attention_prefill_kernel[grid](
        q, k_cache, v_cache, cu_seqlens_q, seq_lens, block_tables, out,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2), block_tables.stride(0), out.stride(0), out.stride(1),
        scale * LOG2E, block_size, group, head_dim, num_seqs, sliding_window or 0, (logits_soft_cap or 0.0) * LOG2E,
        GROUP_PAD=group_pad, BLOCK_Q=block_q, BLOCK_N=block_n, BLOCK_D=triton.next_power_of_2(head_dim),
        UPCAST=upcast, IEEE=ieee, WINDOW=sliding_window is not None, SOFT_CAP=logits_soft_cap is not None,
        num_warps=num_warps, num_stages=num_stages,
    )  # fmt: skip
    return out


# -- CPU ---------------------------------------------------------------------------------------------------------


def paged_attention_prefill_cpu(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    seq_lens: torch.Tensor,
    block_tables: torch.Tensor,
    scale: float,
    *,
    sliding_window: int | None = None,
    logits_soft_cap: float | None = None,
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
        o = paged_attention_decode_cpu(q[rows], k_cache, v_cache, seq_lens[sel], block_tables[sel], scale,
                                       sliding_window=sliding_window, logits_soft_cap=logits_soft_cap)
        out.index_copy_(0, rows, o)
    for b in range(len(lens)):
        s, e = cu[b], cu[b + 1]
        lq, lk = e - s, lens[b]
        if lq <= 1:
            continue
        table = block_tables[b : b + 1]
        slots, _ = gather_slots(table, seq_lens[b : b + 1].long(), lk, block_size)
        # A window: keys before the chunk's first query's window are never read (a chunk after a long prefix)
        k0 = max(0, lk - lq - sliding_window + 1) if sliding_window is not None else 0
        slots = slots[:, k0:]
        # Each KV head repeated for its G query heads (SDPA's CPU flash kernel has no GQA; with
        # enable_gqa it falls back to the unfused math path, ~4x slower here; so does a 3-d input)
        k = gather_rows(k_cache, slots).repeat_interleave(hq // hk, dim=1)  # [1, Hq, Lk, D]
        v = gather_rows(v_cache, slots).repeat_interleave(hq // hk, dim=1)
        qh = q[s:e].transpose(0, 1)[None].to(k.dtype)  # [1, Hq, Lq, D]
        if lq == lk and sliding_window is None and logits_soft_cap is None:  # no cached prefix: plain causal
            o = F.scaled_dot_product_attention(qh, k, v, is_causal=True, scale=scale)
            out[s:e] = o[0].transpose(0, 1).to(q.dtype)  # [Lq, Hq, D]
            continue
        # query i sits at absolute position lk - lq + i
        qpos = torch.arange(lk - lq, lk, device=q.device)[:, None]
        kpos = torch.arange(k0, lk, device=q.device)[None, :]
        mask = kpos <= qpos  # [Lq, Lk - k0]
        if sliding_window is not None:
            mask &= kpos > qpos - sliding_window
        if logits_soft_cap is None:
            o = F.scaled_dot_product_attention(qh, k, v, attn_mask=mask, scale=scale)
        else:  # SDPA has no soft-cap: scores in fp32, capped, masked, softmax, then P·V in the cache dtype
            scores = torch.matmul(qh, k.transpose(-1, -2)).float().mul_(scale)  # [1, Hq, Lq, Lk]
            scores = torch.tanh(scores / logits_soft_cap).mul_(logits_soft_cap).masked_fill_(~mask, float("-inf"))
            o = torch.matmul(scores.softmax(-1).to(v.dtype), v)
        out[s:e] = o[0].transpose(0, 1).to(q.dtype)  # [Lq, Hq, D]
    return out


# -- torch reference ---------------------------------------------------------------------------------------------


def paged_attention_prefill_reference(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    seq_lens: torch.Tensor,
    block_tables: torch.Tensor,
    scale: float,
    *,
    sliding_window: int | None = None,
    logits_soft_cap: float | None = None,
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
        k = gather_kv(k_cache, block_tables[b], lens[b])
        v = gather_kv(v_cache, block_tables[b], lens[b])
        out[s:e] = attend(q[s:e], k, v, lens[b] - (e - s), scale, sliding_window, logits_soft_cap)
    return out


# -- dispatch ----------------------------------------------------------------------------------------------------


def paged_attention_prefill(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    seq_lens: torch.Tensor,
    block_tables: torch.Tensor,
    scale: float,
    *,
    sliding_window: int | None = None,
    logits_soft_cap: float | None = None,
) -> torch.Tensor:
    # q: [T, Hq, D] over B sequences (cu_seqlens_q: [B+1]); seq_lens: [B] KV length incl. this chunk -> [T, Hq, D].
    # Options are keyword arguments whose default is off (see the module doc).
    args = (q, k_cache, v_cache, cu_seqlens_q, seq_lens, block_tables, scale)
    options = {"sliding_window": sliding_window, "logits_soft_cap": logits_soft_cap}
    match _dispatch.backend(q):
        case Backend.TRITON:
            return paged_attention_prefill_triton(*args, **options)
        case Backend.CPU:
            return paged_attention_prefill_cpu(*args, **options)
        case _:
            return paged_attention_prefill_reference(*args, **options)
