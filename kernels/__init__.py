"""Hearth's hot ops. Each public function is the one dispatch point for its op: the Triton kernel when the tensor
is on CUDA (and HEARTH_KERNELS != "reference"), the torch reference in kernels.reference otherwise."""

from kernels.ops import (
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
