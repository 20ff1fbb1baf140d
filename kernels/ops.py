"""Dispatch: for now every op is the torch reference; the kernels issue routes CUDA tensors to Triton here."""

from kernels.reference import (
    add_rms_norm,
    apply_rotary,
    paged_attention_decode,
    paged_attention_prefill,
    rms_norm,
    rotary_cos_sin,
    silu_and_mul,
    store_kvcache,
    top_k_top_p_min_p_mask,
)

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
