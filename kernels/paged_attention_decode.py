"""Paged decode attention: one query token per sequence, K/V read through the block table, grouped-query heads.

Triton, grid (B, Hk, S): a program serves all Hq/Hk query heads of one KV head (K/V are read once per group) over a
contiguous 1/S of the sequence's keys. With S > 1 (split-KV, for few sequences with long contexts) each split
writes its normalised partial output and log-sum-exp; a second kernel combines them.
CPU: the batch sorted by KV length and cut into groups; per group one gather of K/V through the block tables and
two batched matmuls.

Options (keyword, off by default): `sliding_window` W — the query at position p attends keys p - W + 1 .. p (the
Triton kernel reads, and splits, only those); `logits_soft_cap` c — scores become c * tanh(scores / c).
"""

from dataclasses import dataclass
from functools import cache

import torch

from kernels import _dispatch
from kernels._dispatch import Backend
from kernels._paged import (
    attend,
    check_attention_options,
    check_paged_inputs,
    gather_kv,
    gather_rows,
    gather_slots,
    gather_window_slots,
)
from kernels._step_memo import memo

# Keys per tile, and the fewest keys a split is given; chosen for D=128 bf16 (K and V tiles 16 KiB each).
BLOCK_N = 64
MIN_KEYS_PER_SPLIT = 256


def num_warps_for(dtype: torch.dtype) -> int:
    # sm_90 cubins compiled here (tests/kernels/test_sm90_compile.py), D=128, 64-key tiles: bf16 with 4 warps
    # takes 246 registers and no spills; fp32 (IEEE dots on FMA units) spills 624 B with 4 warps, none with 8.
    return 8 if dtype == torch.float32 else 4


# -- Triton (defined only where triton can run: kernels/_dispatch.py TRITON) ------------------------------------


if _dispatch.TRITON:
    import triton
    import triton.language as tl

    from kernels._triton_attention import LOG2E, _attend_tile, dot_mode

    @triton.jit
    def _paged_attention_decode_kernel(
        q_ptr, kc_ptr, vc_ptr, seq_lens_ptr, bt_ptr, out_ptr, part_out_ptr, part_lse_ptr,
        stride_qb, stride_qh, stride_kb, stride_kt, stride_kh, stride_vb, stride_vt, stride_vh,
        stride_bt, stride_ob, stride_oh,
        scale_log2, block_size, group, head_dim, num_splits, window, soft_cap_log2,
        GROUP_PAD: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, SPLIT: tl.constexpr,
        UPCAST: tl.constexpr, IEEE: tl.constexpr, WINDOW: tl.constexpr, SOFT_CAP: tl.constexpr,
    ):  # fmt: skip
        b = tl.program_id(0).to(tl.int64)
        kvh = tl.program_id(1)
        split = tl.program_id(2)
        seq_len = tl.load(seq_lens_ptr + b)
        first = 0  # the first key the query sees
        if WINDOW:
            first = tl.maximum(seq_len - window, 0)
        chunk = tl.cdiv(tl.cdiv(seq_len - first, num_splits), BLOCK_N) * BLOCK_N
        start = first + split * chunk
        end = tl.minimum(start + chunk, seq_len)

        g = tl.arange(0, GROUP_PAD)
        heads = kvh * group + g
        gmask = g < group
        dims = tl.arange(0, BLOCK_D)
        dmask = dims < head_dim
        q = tl.load(q_ptr + b * stride_qb + heads[:, None] * stride_qh + dims[None, :],
                    mask=gmask[:, None] & dmask[None, :], other=0.0)  # fmt: skip
        if UPCAST:
            q = q.to(tl.float32)  # [G, D]

        m_i = tl.full([GROUP_PAD], -1.0e30, tl.float32)
        l_i = tl.zeros([GROUP_PAD], tl.float32)
        acc = tl.zeros([GROUP_PAD, BLOCK_D], tl.float32)
        for n0 in range(start, end, BLOCK_N):
            n = n0 + tl.arange(0, BLOCK_N)
            key_ok = gmask[:, None] & (n < end)[None, :]
            m_i, l_i, acc = _attend_tile(
                q, m_i, l_i, acc, kc_ptr, vc_ptr, bt_ptr + b * stride_bt, n, key_ok, kvh, scale_log2, soft_cap_log2,
                stride_kb, stride_kt, stride_kh, stride_vb, stride_vt, stride_vh, block_size, dims, dmask, UPCAST, IEEE,
                SOFT_CAP,
            )  # fmt: skip

        # an empty split (or an empty sequence) has l = 0: output 0, log-sum-exp -inf
        out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
        if SPLIT:
            lse = tl.where(l_i > 0, m_i + tl.log2(tl.where(l_i > 0, l_i, 1.0)), float("-inf"))
            row = (b * tl.num_programs(1) * group + heads) * num_splits + split  # [B, Hq, S] layout
            tl.store(part_lse_ptr + row, lse, mask=gmask)
            tl.store(part_out_ptr + row[:, None] * head_dim + dims[None, :], out, mask=gmask[:, None] & dmask[None, :])
        else:
            tl.store(out_ptr + b * stride_ob + heads[:, None] * stride_oh + dims[None, :],
                     out.to(out_ptr.dtype.element_ty), mask=gmask[:, None] & dmask[None, :])  # fmt: skip


    @triton.jit
    def _combine_splits_kernel(
        part_out_ptr, part_lse_ptr, out_ptr, stride_ob, stride_oh, num_heads, num_splits, head_dim,
        SPLIT_PAD: tl.constexpr, BLOCK_D: tl.constexpr,
    ):  # fmt: skip
        b = tl.program_id(0).to(tl.int64)
        h = tl.program_id(1)
        s = tl.arange(0, SPLIT_PAD)
        dims = tl.arange(0, BLOCK_D)
        smask = s < num_splits
        row = (b * num_heads + h) * num_splits + s
        lse = tl.load(part_lse_ptr + row, mask=smask, other=float("-inf"))  # [S], log2 domain
        mx = tl.max(lse, 0)
        w = tl.exp2(lse - tl.where(mx == float("-inf"), 0.0, mx))  # all -inf (empty sequence): weights 0
        part = tl.load(part_out_ptr + row[:, None] * head_dim + dims[None, :],
                       mask=smask[:, None] & (dims < head_dim)[None, :], other=0.0)  # fmt: skip
        total = tl.sum(w, 0)
        out = tl.sum(w[:, None] * part, 0) / tl.where(total > 0, total, 1.0)
        tl.store(out_ptr + b * stride_ob + h * stride_oh + dims, out.to(out_ptr.dtype.element_ty), mask=dims < head_dim)


@cache
def _num_sms(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def choose_num_splits(batch: int, num_kv_heads: int, max_kv_len: int, device: torch.device) -> int:
    # Enough programs for ~4 per SM, but never fewer than MIN_KEYS_PER_SPLIT keys per split. Static in the shapes
    # (no device sync), so a captured decode graph keeps its launch.
    sms = _num_sms(device.index or 0) if device.type == "cuda" else 4
    want = -(-4 * sms // max(1, batch * num_kv_heads))
    return max(1, min(want, -(-max_kv_len // MIN_KEYS_PER_SPLIT), 64))


def paged_attention_decode_triton(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    seq_lens: torch.Tensor,
    block_tables: torch.Tensor,
    scale: float,
    *,
    sliding_window: int | None = None,
    logits_soft_cap: float | None = None,
    num_splits: int | None = None,
    block_n: int = BLOCK_N,
    num_warps: int | None = None,
) -> torch.Tensor:
    # q: [B, Hq, D], one query per sequence at position seq_lens[b] - 1; caches [N, block_size, Hk, D] -> [B, Hq, D]
    check_paged_inputs(q, k_cache, v_cache, block_tables)
    check_attention_options(sliding_window, logits_soft_cap)
    batch, num_heads, head_dim = q.shape
    num_kv_heads, block_size = k_cache.shape[2], k_cache.shape[1]
    if seq_lens.shape != (batch,) or block_tables.shape[0] != batch:
        raise ValueError(
            f"seq_lens {tuple(seq_lens.shape)} / block_tables {tuple(block_tables.shape)} != batch {batch}"
        )
    out = torch.empty_like(q)
    if batch == 0:
        return out
    if num_splits is None:
        max_keys = block_tables.shape[1] * block_size
        num_splits = choose_num_splits(batch, num_kv_heads, min(max_keys, sliding_window or max_keys), q.device)
    group = num_heads // num_kv_heads
    upcast, ieee = dot_mode(q.dtype)
    block_d = triton.next_power_of_2(head_dim)
    split = num_splits > 1
    part_out = (
        torch.empty(batch, num_heads, num_splits, head_dim, dtype=torch.float32, device=q.device) if split else out
    )
    part_lse = torch.empty(batch, num_heads, num_splits, dtype=torch.float32, device=q.device) if split else out
    _paged_attention_decode_kernel[(batch, num_kv_heads, num_splits)](
        q, k_cache, v_cache, seq_lens, block_tables, out, part_out, part_lse,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2), block_tables.stride(0), out.stride(0), out.stride(1),
        scale * LOG2E, block_size, group, head_dim, num_splits, sliding_window or 0, (logits_soft_cap or 0.0) * LOG2E,
        GROUP_PAD=max(16, triton.next_power_of_2(group)), BLOCK_N=block_n, BLOCK_D=block_d, SPLIT=split,
        UPCAST=upcast, IEEE=ieee, WINDOW=sliding_window is not None, SOFT_CAP=logits_soft_cap is not None,
        num_warps=num_warps or num_warps_for(q.dtype), num_stages=2,
    )  # fmt: skip
    if split:
        _combine_splits_kernel[(batch, num_heads)](
            part_out, part_lse, out, out.stride(0), out.stride(1), num_heads, num_splits, head_dim,
            SPLIT_PAD=triton.next_power_of_2(num_splits), BLOCK_D=block_d, num_warps=4,
        )  # fmt: skip
    return out


# -- CPU ---------------------------------------------------------------------------------------------------------

# Decode batches are sorted by KV length and cut into groups of at least this many sequences, so the padded
# [B, Hk, L, D] gather holds little padding (a 64-sequence batch with lengths 40-700 gathers ~2x less) while the
# fixed cost per group stays small.
_DECODE_GROUP = 16


@dataclass(slots=True)
class _DecodeGroup:
    """What one group's attention reads, the same for every layer of a step (kernels/_step_memo.py)."""

    rows: torch.Tensor | None  # [b] int64: the group's rows of the batch (None: the whole batch, in order)
    slots: torch.Tensor  # [b, L] int64 cache rows to gather
    bias: torch.Tensor | None  # [b, 1, 1, L] fp32: 0 where a key is valid, -inf past its sequence (None: all valid)
    empty: torch.Tensor | None  # [b, 1, 1, 1] bool: sequences with no keys (None: there are none)


def _plan_group(
    rows: list[int] | None, lens: torch.Tensor, max_len: int, block_tables: torch.Tensor, block_size: int,
    sliding_window: int | None,
) -> _DecodeGroup:  # fmt: skip
    if rows is not None:
        idx = torch.tensor(rows, device=lens.device)
        lens, block_tables = lens[idx], block_tables[idx]
    if sliding_window is not None and max_len > sliding_window:  # read only each sequence's window of keys
        slots, valid = gather_window_slots(block_tables, lens, sliding_window, block_size)
    else:
        slots, valid = gather_slots(block_tables, lens, max_len, block_size)
    bias = None
    if not bool(valid.all()):
        bias = torch.zeros(valid.shape, dtype=torch.float32, device=valid.device).masked_fill_(~valid, float("-inf"))
        bias = bias[:, None, None, :]
    empty = (lens == 0)[:, None, None, None] if bool((lens == 0).any()) else None
    return _DecodeGroup(idx if rows is not None else None, slots, bias, empty)


def _decode_plan(
    seq_lens: torch.Tensor, block_tables: torch.Tensor, block_size: int, sliding_window: int | None
) -> list[_DecodeGroup]:
    lens = seq_lens.long()
    host = lens.tolist()
    b = len(host)
    if b < 2 * _DECODE_GROUP:
        return [_plan_group(None, lens, max(host), block_tables, block_size, sliding_window)]
    order = sorted(range(b), key=host.__getitem__)
    num_groups = b // _DECODE_GROUP
    groups = []
    for g in range(num_groups):
        rows = order[g * b // num_groups : (g + 1) * b // num_groups]
        groups.append(_plan_group(rows, lens, host[rows[-1]], block_tables, block_size, sliding_window))
    return groups


def _decode_group(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, group: _DecodeGroup, scale: float,
    logits_soft_cap: float | None,
) -> torch.Tensor:  # fmt: skip
    # q: [b, Hq, D] -> [b, Hq, D]; the G query heads of one KV head are its G "query positions" (GQA, no repeat)
    b, hq, d = q.shape
    hk = k_cache.shape[2]
    k = gather_rows(k_cache, group.slots)  # [b, Hk, L, D]
    v = gather_rows(v_cache, group.slots)
    qg = q.view(b, hk, hq // hk, d).to(k.dtype)  # [b, Hk, G, D]
    # Two batched matmuls in the cache dtype, softmax in fp32: for one query row per head this is ~2x faster on
    # CPU than SDPA's flash kernel (which tiles for long queries). P·V from 16-bit probabilities, as on a GPU.
    scores = torch.matmul(qg, k.transpose(-1, -2)).float().mul_(scale)  # [b, Hk, G, L]
    if logits_soft_cap is not None:
        scores = torch.tanh(scores.div_(logits_soft_cap)).mul_(logits_soft_cap)
    if group.bias is not None:
        scores.add_(group.bias)
    o = torch.matmul(scores.softmax(-1).to(v.dtype), v)  # [b, Hk, G, D]
    if group.empty is not None:  # a sequence with no keys attends to nothing: zeros, like the reference
        o.masked_fill_(group.empty, 0)
    return o.reshape(b, hq, d).to(q.dtype)


def paged_attention_decode_cpu(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    seq_lens: torch.Tensor,
    block_tables: torch.Tensor,
    scale: float,
    *,
    sliding_window: int | None = None,
    logits_soft_cap: float | None = None,
) -> torch.Tensor:
    # q: [B, Hq, D], one query per sequence at position seq_lens[b] - 1 -> [B, Hq, D]. The gather plan (slots,
    # masks, groups) depends only on the step's metadata: built once per step, reused by every layer.
    block_size = k_cache.shape[1]
    plan = memo("paged_attention_decode", (seq_lens, block_tables), (block_size, sliding_window),
                lambda: _decode_plan(seq_lens, block_tables, block_size, sliding_window))  # fmt: skip
    if len(plan) == 1 and plan[0].rows is None:
        return _decode_group(q, k_cache, v_cache, plan[0], scale, logits_soft_cap)
    out = torch.empty_like(q)
    for group in plan:
        assert group.rows is not None
        out.index_copy_(0, group.rows, _decode_group(q[group.rows], k_cache, v_cache, group, scale, logits_soft_cap))
    return out


# -- torch reference ---------------------------------------------------------------------------------------------


def paged_attention_decode_reference(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    seq_lens: torch.Tensor,
    block_tables: torch.Tensor,
    scale: float,
    *,
    sliding_window: int | None = None,
    logits_soft_cap: float | None = None,
) -> torch.Tensor:
    # q: [B, Hq, D], one query per sequence at position seq_lens[b] - 1 -> [B, Hq, D]; no keys: zeros
    out = torch.empty_like(q)
    for b, seq_len in enumerate(seq_lens.tolist()):
        if seq_len == 0:
            out[b] = 0
            continue
        k = gather_kv(k_cache, block_tables[b], seq_len)
        v = gather_kv(v_cache, block_tables[b], seq_len)
        out[b : b + 1] = attend(q[b : b + 1], k, v, seq_len - 1, scale, sliding_window, logits_soft_cap)
    return out


# -- dispatch ----------------------------------------------------------------------------------------------------


def paged_attention_decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    seq_lens: torch.Tensor,
    block_tables: torch.Tensor,
    scale: float,
    *,
    sliding_window: int | None = None,
    logits_soft_cap: float | None = None,
) -> torch.Tensor:
    # q: [B, Hq, D], one query per sequence at position seq_lens[b] - 1; caches [N, block_size, Hk, D] -> [B, Hq, D].
    # Options are keyword arguments whose default is off (see the module doc).
    args = (q, k_cache, v_cache, seq_lens, block_tables, scale)
    options = {"sliding_window": sliding_window, "logits_soft_cap": logits_soft_cap}
    match _dispatch.backend(q):
        case Backend.TRITON:
            return paged_attention_decode_triton(*args, **options)
        case Backend.CPU:
            return paged_attention_decode_cpu(*args, **options)
        case _:
            return paged_attention_decode_reference(*args, **options)
