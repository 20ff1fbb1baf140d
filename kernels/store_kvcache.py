"""Write the new tokens' K and V into the paged cache; slot -1 means "don't store" (padding of a captured batch).

Triton: one program per token; cache offsets are int64 (a 70B-sized cache passes 2^31 elements).
CPU: one index_copy_ per cache (the torch reference where a step has -1 slots).
"""

import torch

from kernels import _dispatch
from kernels._dispatch import Backend
from kernels._step_memo import memo

if _dispatch.TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _store_kvcache_kernel(
        k_ptr, v_ptr, kc_ptr, vc_ptr, slot_ptr,
        stride_kt, stride_kh, stride_vt, stride_vh, stride_cslot, stride_ch,
        n_heads, head_dim,
        BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
    ):  # fmt: skip
        token = tl.program_id(0).to(tl.int64)
        slot = tl.load(slot_ptr + token).to(tl.int64)
        if slot >= 0:
            heads = tl.arange(0, BLOCK_H)[:, None]
            dims = tl.arange(0, BLOCK_D)[None, :]
            mask = (heads < n_heads) & (dims < head_dim)
            dst = slot * stride_cslot + heads * stride_ch + dims
            k = tl.load(k_ptr + token * stride_kt + heads * stride_kh + dims, mask=mask)
            v = tl.load(v_ptr + token * stride_vt + heads * stride_vh + dims, mask=mask)
            tl.store(kc_ptr + dst, k.to(kc_ptr.dtype.element_ty), mask=mask)
            tl.store(vc_ptr + dst, v.to(vc_ptr.dtype.element_ty), mask=mask)


def store_kvcache_triton(
    k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, slot_mapping: torch.Tensor
) -> None:
    # k, v: [T, Hk, D]; caches: [num_blocks, block_size, Hk, D] contiguous; slot_mapping: [T] int (-1 = skip)
    if k.dim() != 3 or k.shape != v.shape or k.stride(2) != 1 or v.stride(2) != 1:
        raise ValueError(f"store_kvcache expects k, v [T, Hk, D] with contiguous D, got {tuple(k.shape)}")
    if k_cache.shape != v_cache.shape or k_cache.shape[2:] != k.shape[1:]:
        raise ValueError(f"cache shape {tuple(k_cache.shape)} does not match k {tuple(k.shape)}")
    if not (k_cache.is_contiguous() and v_cache.is_contiguous()):
        raise ValueError("store_kvcache needs contiguous caches")
    if slot_mapping.shape != (k.shape[0],):
        raise ValueError(f"slot_mapping {tuple(slot_mapping.shape)} does not match {k.shape[0]} tokens")
    if k.shape[0] == 0:
        return
    n_heads, head_dim = k.shape[1], k.shape[2]
    _store_kvcache_kernel[(k.shape[0],)](
        k, v, k_cache, v_cache, slot_mapping,
        k.stride(0), k.stride(1), v.stride(0), v.stride(1), k_cache.stride(1), k_cache.stride(2),
        n_heads, head_dim,
        BLOCK_H=triton.next_power_of_2(n_heads), BLOCK_D=triton.next_power_of_2(head_dim), num_warps=4,
    )  # fmt: skip


def store_kvcache_reference(
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


# -- CPU ---------------------------------------------------------------------------------------------------------


def store_kvcache_cpu(
    k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, slot_mapping: torch.Tensor
) -> None:
    # One index_copy_ per cache. Whether the step has "don't store" slots (-1) is decided once per step (a memo on
    # slot_mapping, kernels/_step_memo.py); such steps take the reference.
    slots = memo("store_kvcache", (slot_mapping,), None,
                 lambda: slot_mapping.long() if bool((slot_mapping >= 0).all()) else None)  # fmt: skip
    if slots is None or k.dtype != k_cache.dtype or v.dtype != v_cache.dtype or not k_cache.is_contiguous():
        return store_kvcache_reference(k, v, k_cache, v_cache, slot_mapping)
    k_cache.view(-1, *k_cache.shape[2:]).index_copy_(0, slots, k)
    v_cache.view(-1, *v_cache.shape[2:]).index_copy_(0, slots, v)


# -- dispatch ----------------------------------------------------------------------------------------------------


def store_kvcache(
    k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, slot_mapping: torch.Tensor
) -> None:
    match _dispatch.backend(k_cache):
        case Backend.TRITON:
            return store_kvcache_triton(k, v, k_cache, v_cache, slot_mapping)
        case Backend.CPU:
            return store_kvcache_cpu(k, v, k_cache, v_cache, slot_mapping)
        case _:
            return store_kvcache_reference(k, v, k_cache, v_cache, slot_mapping)
