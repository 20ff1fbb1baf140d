"""Hearth's hot ops, one file per op: `kernels/<op>.py` holds the Triton kernel (`_<op>_kernel`, built on first use
so CPU processes never import triton), its host wrapper `<op>_triton`, the torch reference `<op>_reference` it must
match, the CPU fast path `<op>_cpu` where one pays, and the public dispatch `<op>` (kernels/_dispatch.py picks).

The package re-exports each op's dispatch, so `kernels.rms_norm` is the function, not the module: reach an op's
other pieces with `from kernels.rms_norm import rms_norm_reference` (or importlib.import_module), never with
`import kernels.rms_norm as m`, which would hand back the function.

A model's forward runs inside `kernels.forward_scope()`: there the CPU paths derive gather slots, masks and cos/sin
rows from the step's metadata once for all layers (kernels/_step_memo.py).
"""

from kernels._step_memo import forward_scope
from kernels.gelu_tanh_and_mul import gelu_tanh_and_mul
from kernels.layer_norm import add_layer_norm, layer_norm
from kernels.lora import lora_expand, lora_shrink
from kernels.paged_attention_decode import paged_attention_decode
from kernels.paged_attention_prefill import paged_attention_prefill
from kernels.rms_norm import add_rms_norm, rms_norm
from kernels.rotary import apply_rotary, rotary_cos_sin
from kernels.silu_and_mul import silu_and_mul
from kernels.store_kvcache import store_kvcache
from kernels.top_k_top_p_min_p_mask import top_k_top_p_min_p_mask

__all__ = [
    "add_layer_norm",
    "add_rms_norm",
    "apply_rotary",
    "forward_scope",
    "gelu_tanh_and_mul",
    "layer_norm",
    "lora_expand",
    "lora_shrink",
    "paged_attention_decode",
    "paged_attention_prefill",
    "rms_norm",
    "rotary_cos_sin",
    "silu_and_mul",
    "store_kvcache",
    "top_k_top_p_min_p_mask",
]
