"""The one dispatch point per op: the Triton kernel for CUDA tensors, kernels/cpu_ops.py for CPU tensors where it
has a faster version, the torch reference otherwise (and always with HEARTH_KERNELS=reference). Triton modules are
imported inside the CUDA branch, so CPU-only processes never import triton."""

import os

import torch

from kernels import cpu_ops, reference
from kernels._dispatch import use_triton
from kernels.reference import rotary_cos_sin  # a one-off table build at load time: no kernel needed

__all__ = [
    "add_rms_norm",
    "apply_rotary",
    "paged_attention_decode",
    "paged_attention_prefill",
    "rms_norm",
    "rotary_cos_sin",
    "silu_and_mul",
    "store_kvcache",
    "top_k_top_p_min_p_mask",
]


def use_cpu_ops(t: torch.Tensor) -> bool:
    return t.device.type == "cpu" and os.environ.get("HEARTH_KERNELS", "auto") != "reference"


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    if use_triton(x):
        from kernels.triton_ops.rms_norm import rms_norm as triton_rms_norm

        return triton_rms_norm(x, weight, eps)
    return reference.rms_norm(x, weight, eps)


def add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    if use_triton(x):
        from kernels.triton_ops.rms_norm import add_rms_norm as triton_add_rms_norm

        return triton_add_rms_norm(x, residual, weight, eps)
    return reference.add_rms_norm(x, residual, weight, eps)


def apply_rotary(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, cos_sin: torch.Tensor) -> None:
    if use_triton(q):
        from kernels.triton_ops.rotary import apply_rotary as triton_apply_rotary

        return triton_apply_rotary(q, k, positions, cos_sin)
    return reference.apply_rotary(q, k, positions, cos_sin)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    if use_triton(x):
        from kernels.triton_ops.silu_and_mul import silu_and_mul as triton_silu_and_mul

        return triton_silu_and_mul(x)
    return reference.silu_and_mul(x)


def store_kvcache(
    k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, slot_mapping: torch.Tensor
) -> None:
    if use_triton(k_cache):
        from kernels.triton_ops.store_kvcache import store_kvcache as triton_store_kvcache

        return triton_store_kvcache(k, v, k_cache, v_cache, slot_mapping)
    return reference.store_kvcache(k, v, k_cache, v_cache, slot_mapping)


def paged_attention_prefill(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    seq_lens: torch.Tensor,
    block_tables: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    if use_triton(q):
        from kernels.triton_ops.paged_attention_prefill import paged_attention_prefill as triton_prefill

        return triton_prefill(q, k_cache, v_cache, cu_seqlens_q, seq_lens, block_tables, scale)
    if use_cpu_ops(q):
        return cpu_ops.paged_attention_prefill(q, k_cache, v_cache, cu_seqlens_q, seq_lens, block_tables, scale)
    return reference.paged_attention_prefill(q, k_cache, v_cache, cu_seqlens_q, seq_lens, block_tables, scale)


def paged_attention_decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    seq_lens: torch.Tensor,
    block_tables: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    if use_triton(q):
        from kernels.triton_ops.paged_attention_decode import paged_attention_decode as triton_decode

        return triton_decode(q, k_cache, v_cache, seq_lens, block_tables, scale)
    if use_cpu_ops(q):
        return cpu_ops.paged_attention_decode(q, k_cache, v_cache, seq_lens, block_tables, scale)
    return reference.paged_attention_decode(q, k_cache, v_cache, seq_lens, block_tables, scale)


def top_k_top_p_min_p_mask(
    logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor, min_p: torch.Tensor
) -> torch.Tensor:
    if use_triton(logits):
        from kernels.triton_ops.sampling import top_k_top_p_min_p_mask as triton_mask

        return triton_mask(logits, top_k, top_p, min_p)
    return reference.top_k_top_p_min_p_mask(logits, top_k, top_p, min_p)
