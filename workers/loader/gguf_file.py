"""GGUF files (llama.cpp's format): metadata, config and dequantized HF-named tensors, for the architectures
llama.cpp and we both define: llama (also Mistral's files), qwen2, qwen3, gemma2, gemma3 (text), phi3.

llama.cpp's converter changes some tensors; we undo it so the model sees HF's values: Q/K rows of llama are
un-permuted, Gemma's norms lose the +1 the converter folded in (the Gemma model adds it back at load), and RoPE
factor tensors (rope_freqs for Llama 3.x, rope_factors_long/short for Phi) become the config's RoPE scaling.

`gguf` is imported inside the functions: the GPU image does not ship it, and only GGUF loading needs it.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workers.model_config import FULL_ATTENTION, SLIDING_ATTENTION, ModelConfig, UnsupportedModelError

# general.architecture -> HF model_type
_ARCHS = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma2": "gemma2", "gemma3": "gemma3_text",
          "phi3": "phi3"}
# GGUF tensor name (after "blk.N.") -> HF name (after "model.layers.N."), then per-architecture differences
_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GEMMA_NAMES = {"ffn_norm": "pre_feedforward_layernorm", "post_attention_norm": "post_attention_layernorm",
                "post_ffw_norm": "post_feedforward_layernorm"}
_ARCH_NAMES = {"gemma2": _GEMMA_NAMES, "gemma3": _GEMMA_NAMES,
               "phi3": {"attn_qkv": "self_attn.qkv_proj", "ffn_up": "mlp.gate_up_proj"}}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_ROPE_TENSORS = ("rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight")  # -> config
# llama.cpp permutes Q/K rows for its interleaved RoPE only for these architectures; the others keep HF order.
_PERMUTED_ARCHS = ("llama",)
_ROTARY_PROJECTIONS = ("q_proj.weight", "k_proj.weight", "q_proj.bias", "k_proj.bias")
_GEMMA_27B_LAYERS = {"gemma2": 46, "gemma3": 62}  # llama.cpp scales their queries by hidden / heads, not head_dim


class GGUFError(ValueError):
    """The file is not a GGUF we can load."""


def open_gguf(path: str | Path) -> Any:
    try:
        import gguf
    except ImportError as e:  # the GPU image has no gguf: use an HF folder or build_random_model there
        raise GGUFError("loading a .gguf file needs the `gguf` package") from e
    try:
        return gguf.GGUFReader(str(path))
    except (ValueError, OSError) as e:
        raise GGUFError(f"{path}: not a readable GGUF file: {e}") from e


def field(reader: Any, key: str, default: Any = None) -> Any:
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def _tensor_values(reader: Any, name: str) -> list[float] | None:
    from gguf.quants import dequantize

    for t in reader.tensors:
        if t.name == name:
            return [float(v) for v in np.asarray(dequantize(t.data, t.tensor_type)).reshape(-1)]
    return None


def gguf_config(reader: Any) -> ModelConfig:
    arch = field(reader, "general.architecture")
    if arch not in _ARCHS:
        raise UnsupportedModelError(f"GGUF architecture {arch!r} is not supported ({', '.join(_ARCHS)})")

    def get(key: str, default: Any = None) -> Any:
        value = field(reader, f"{arch}.{key}", default)
        if value is None:
            raise GGUFError(f"GGUF metadata lacks {arch}.{key}")
        return value

    def opt(key: str) -> Any:
        return field(reader, f"{arch}.{key}")

    hidden = int(get("embedding_length"))
    num_heads = int(get("attention.head_count"))
    num_layers = int(get("block_count"))
    head_dim = int(get("attention.key_length", hidden // num_heads))
    rope_dim = int(get("rope.dimension_count", head_dim))
    context = int(get("context_length"))
    names = {t.name for t in reader.tensors}
    eos = field(reader, "tokenizer.ggml.eos_token_id")
    window = opt("attention.sliding_window")
    layer_types = _layer_types(arch, num_layers, window, opt("attention.sliding_window_pattern"))
    query_scalar = None
    if arch in _GEMMA_27B_LAYERS:
        query_scalar = float(hidden // num_heads if num_layers == _GEMMA_27B_LAYERS[arch] else head_dim)
    return ModelConfig(
        architecture=_ARCHS[arch],
        vocab_size=_vocab_size(reader, arch),
        hidden_size=hidden,
        intermediate_size=int(get("feed_forward_length")),
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=int(get("attention.head_count_kv", num_heads)),
        head_dim=head_dim,
        rope_theta=float(get("rope.freq_base", 10000.0)),
        rms_norm_eps=float(get("attention.layer_norm_rms_epsilon")),
        max_position_embeddings=context,
        tie_word_embeddings="output.weight" not in names,
        attention_bias="blk.0.attn_q.bias" in names or "blk.0.attn_qkv.bias" in names,
        o_proj_bias="blk.0.attn_output.bias" in names,
        mlp_bias="blk.0.ffn_up.bias" in names,
        bos_token_id=field(reader, "tokenizer.ggml.bos_token_id"),
        eos_token_ids=[] if eos is None else [int(eos)],
        rotary_dim=rope_dim if rope_dim != head_dim else None,
        rope_scaling=_rope_scaling(reader, arch, context),
        sliding_window=int(window) if window and SLIDING_ATTENTION in layer_types else None,
        layer_types=layer_types,
        local_rope_theta=float(opt("rope.freq_base_swa") or 10000.0) if arch == "gemma3" else None,
        qk_norm="blk.0.attn_q_norm.weight" in names,
        hidden_act="gelu_pytorch_tanh" if arch in ("gemma2", "gemma3") else "silu",
        attn_logit_softcap=_float_or_none(opt("attn_logit_softcapping")),
        final_logit_softcap=_float_or_none(opt("final_logit_softcapping")),
        query_pre_attn_scalar=query_scalar,
    )


def _vocab_size(reader: Any, arch: str) -> int:
    size = field(reader, f"{arch}.vocab_size")
    if size is not None:
        return int(size)
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    if tokens is None:
        raise GGUFError(f"GGUF metadata has neither {arch}.vocab_size nor tokenizer.ggml.tokens")
    return len(tokens.data)


def _layer_types(arch: str, num_layers: int, window: Any, pattern: Any) -> list[str]:
    if not window or arch not in ("gemma2", "gemma3", "phi3"):
        return []
    if isinstance(pattern, list):  # one flag per layer: true = sliding
        return [SLIDING_ATTENTION if p else FULL_ATTENTION for p in pattern]
    # llama.cpp's swa pattern n: layer i slides unless (i + 1) % n == 0; Gemma 2 alternates, Gemma 3 is 5:1
    n = int(pattern) if pattern else {"gemma2": 2, "gemma3": 6}.get(arch, 0)
    if n == 0:  # phi3: one window on every layer
        return [SLIDING_ATTENTION] * num_layers
    return [SLIDING_ATTENTION if (i + 1) % n else FULL_ATTENTION for i in range(num_layers)]


def _rope_scaling(reader: Any, arch: str, context: int) -> dict[str, Any] | None:
    kind = field(reader, f"{arch}.rope.scaling.type")
    original = int(field(reader, f"{arch}.rope.scaling.original_context_length") or context)
    freqs = _tensor_values(reader, "rope_freqs.weight")
    if freqs is not None:  # Llama 3.x: llama.cpp stores the llama3 scaling as one divisor per frequency
        return {"rope_type": "freq_factors", "factors": freqs, "original_max_position_embeddings": original}
    long = _tensor_values(reader, "rope_factors_long.weight")
    short = _tensor_values(reader, "rope_factors_short.weight")
    if long is not None and short is not None:
        out: dict[str, Any] = {"rope_type": "longrope", "long_factor": long, "short_factor": short,
                               "original_max_position_embeddings": original, "max_position_embeddings": context}
        attn_factor = field(reader, f"{arch}.rope.scaling.attn_factor")
        if attn_factor is not None:
            out["attention_factor"] = float(attn_factor)
        return out
    if kind in (None, "none"):
        return None
    factor = float(field(reader, f"{arch}.rope.scaling.factor") or 1.0)
    if kind == "linear":
        return {"rope_type": "linear", "factor": factor, "original_max_position_embeddings": original}
    if kind == "yarn":
        return {"rope_type": "yarn", "factor": factor, "original_max_position_embeddings": original}
    raise UnsupportedModelError(f"GGUF rope scaling {kind!r} is not supported")


def gguf_tensor_shapes(reader: Any) -> dict[str, tuple[int, ...]]:
    """HF name -> shape of every weight tensor (GGUF lists dims fastest-first: reversed, as gguf_weights does)."""
    arch = field(reader, "general.architecture")
    return {_hf_name(t.name, arch): tuple(int(d) for d in reversed(t.shape))
            for t in reader.tensors if t.name not in _ROPE_TENSORS}  # fmt: skip


def gguf_weights(reader: Any, config: ModelConfig) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (HF name, fp32 tensor) for every weight, dequantized and in HF's convention (see the module doc).

    SmolLM2-135M (Q4_1/Q8_0): 134.5M values dequantize in ~1.9 s on this 2-core machine (numpy, gguf.quants).
    """
    from gguf.quants import dequantize

    arch = field(reader, "general.architecture")
    for t in reader.tensors:
        if t.name in _ROPE_TENSORS:
            continue
        hf_name = _hf_name(t.name, arch)
        array = dequantize(t.data, t.tensor_type)
        # GGUF lists dims fastest-first; numpy rows are the reverse: [out, in] for a weight, as in HF
        array = np.ascontiguousarray(array.reshape([int(d) for d in reversed(t.shape)]), dtype=np.float32)
        if arch in _PERMUTED_ARCHS and hf_name.endswith(_ROTARY_PROJECTIONS):
            heads = config.num_heads if ".q_proj." in hf_name else config.num_kv_heads
            array = _unpermute(array, heads)
        if config.is_gemma and hf_name.endswith("norm.weight"):
            array = array - 1.0  # a new array: the converter's +1 comes off
        if not array.flags.writeable:  # F32 tensors come straight from the read-only memory map
            array = array.copy()
        yield hf_name, torch.from_numpy(array)


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    # llama.cpp's convert script interleaved the two rotary halves of each head; put them back side by side
    rows = w.shape[0]
    cols = w.shape[1] if w.ndim == 2 else 1
    out = w.reshape(n_head, rows // n_head // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)
    return np.ascontiguousarray(out.reshape(w.shape))


def _hf_name(name: str, arch: str) -> str:
    base, _, kind = name.rpartition(".")
    if base in _TOP_NAMES:
        return f"{_TOP_NAMES[base]}.{kind}"
    parts = base.split(".")
    layer_names = _LAYER_NAMES | _ARCH_NAMES.get(arch, {})
    if len(parts) == 3 and parts[0] == "blk" and parts[2] in layer_names:
        return f"model.layers.{parts[1]}.{layer_names[parts[2]]}.{kind}"
    raise GGUFError(f"unexpected GGUF tensor {name!r}")


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)
