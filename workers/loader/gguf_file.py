"""GGUF files (llama.cpp's format): metadata, config and dequantized HF-named tensors.

`gguf` is imported inside the functions: the GPU image does not ship it, and only GGUF loading needs it.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workers.model_config import ModelConfig, UnsupportedModelError

# GGUF tensor name (after "blk.N.") -> HF name (after "model.layers.N.")
_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
# llama.cpp permutes Q/K rows for its interleaved RoPE only for these architectures; qwen2 files keep HF order.
_PERMUTED_ARCHS = ("llama",)


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


def gguf_config(reader: Any) -> ModelConfig:
    arch = field(reader, "general.architecture")
    if arch not in ("llama", "qwen2"):
        raise UnsupportedModelError(f"GGUF architecture {arch!r} is not supported (llama, qwen2)")

    def get(key: str, default: Any = None) -> Any:
        value = field(reader, f"{arch}.{key}", default)
        if value is None:
            raise GGUFError(f"GGUF metadata lacks {arch}.{key}")
        return value

    hidden = int(get("embedding_length"))
    num_heads = int(get("attention.head_count"))
    head_dim = int(get("attention.key_length", hidden // num_heads))
    rope_dim = int(get("rope.dimension_count", head_dim))
    if rope_dim != head_dim:
        raise UnsupportedModelError(f"partial rotary ({rope_dim} of {head_dim} dims) is not supported")
    names = {t.name for t in reader.tensors}
    eos = field(reader, "tokenizer.ggml.eos_token_id")
    return ModelConfig(
        architecture=arch,
        vocab_size=int(get("vocab_size", len(reader.fields["tokenizer.ggml.tokens"].data))),
        hidden_size=hidden,
        intermediate_size=int(get("feed_forward_length")),
        num_layers=int(get("block_count")),
        num_heads=num_heads,
        num_kv_heads=int(get("attention.head_count_kv", num_heads)),
        head_dim=head_dim,
        rope_theta=float(get("rope.freq_base", 10000.0)),
        rms_norm_eps=float(get("attention.layer_norm_rms_epsilon")),
        max_position_embeddings=int(get("context_length")),
        tie_word_embeddings="output.weight" not in names,
        attention_bias="blk.0.attn_q.bias" in names,
        o_proj_bias="blk.0.attn_output.bias" in names,
        mlp_bias="blk.0.ffn_up.bias" in names,
        bos_token_id=field(reader, "tokenizer.ggml.bos_token_id"),
        eos_token_ids=[] if eos is None else [int(eos)],
    )


def gguf_weights(reader: Any, config: ModelConfig) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (HF name, fp32 tensor) for every tensor, dequantized and with Q/K rows back in HF's rotate-half order.

    SmolLM2-135M (Q4_1/Q8_0): 134.5M values dequantize in ~1.9 s on this 2-core machine (numpy, gguf.quants).
    """
    from gguf.quants import dequantize

    permute = field(reader, "general.architecture") in _PERMUTED_ARCHS
    for t in reader.tensors:
        hf_name = _hf_name(t.name)
        array = dequantize(t.data, t.tensor_type)
        # GGUF lists dims fastest-first; numpy rows are the reverse: [out, in] for a weight, as in HF
        array = np.ascontiguousarray(array.reshape([int(d) for d in reversed(t.shape)]), dtype=np.float32)
        if permute and hf_name.endswith(("q_proj.weight", "k_proj.weight", "q_proj.bias", "k_proj.bias")):
            heads = config.num_heads if ".q_proj." in hf_name else config.num_kv_heads
            array = _unpermute(array, heads)
        if not array.flags.writeable:  # F32 tensors come straight from the read-only memory map
            array = array.copy()
        yield hf_name, torch.from_numpy(array)


def gguf_tensor_shapes(reader: Any) -> dict[str, tuple[int, ...]]:
    """HF name -> shape of every tensor (GGUF lists dims fastest-first: reversed, as gguf_weights reshapes)."""
    return {_hf_name(t.name): tuple(int(d) for d in reversed(t.shape)) for t in reader.tensors}


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    # llama.cpp's convert script interleaved the two rotary halves of each head; put them back side by side
    rows = w.shape[0]
    cols = w.shape[1] if w.ndim == 2 else 1
    out = w.reshape(n_head, rows // n_head // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)
    return np.ascontiguousarray(out.reshape(w.shape))


def _hf_name(name: str) -> str:
    base, _, kind = name.rpartition(".")
    if base in _TOP_NAMES:
        return f"{_TOP_NAMES[base]}.{kind}"
    parts = base.split(".")
    if len(parts) == 3 and parts[0] == "blk" and parts[2] in _LAYER_NAMES:
        return f"model.layers.{parts[1]}.{_LAYER_NAMES[parts[2]]}.{kind}"
    raise GGUFError(f"unexpected GGUF tensor {name!r}")
