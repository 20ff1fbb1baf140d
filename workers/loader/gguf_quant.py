"""A GGUF file loaded straight into the quantized linears (workers/models/quant_linear.py): Q4_0 and Q4_1 blocks
become int4 codes with their own per-32 scales (Q4_1's min folds into the zero point: w = q·d + m =
(q - 8)·d + (m + 8d)), exact and with no dense detour; Q8_0 blocks (per-32 scales) are requantized per output
channel, the int8 kernel's layout. Other tensor types (F32 norms, F16, K-quants) are dequantized, and a linear
among them is quantized like an HF folder's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from workers.loader.gguf_file import (
    _PERMUTED_ARCHS,
    _ROPE_TENSORS,
    _hf_name,
    _unpermute,
    field,
    gguf_config,
    open_gguf,
)
from workers.models.layers import Linear
from workers.models.llama import LlamaForCausalLM, WeightLoadError
from workers.models.quant_linear import (
    INT4_GROUP,
    Codes,
    Int4Codes,
    Int8Codes,
    QuantEmbedding,
    QuantizationError,
    cat_codes,
    quantize,
    quantize_int8,
    replace_linears,
)

# bytes per block of 32 values
_Q4_0, _Q4_1, _Q8_0 = 18, 20, 34


def _fp16(raw: np.ndarray, start: int) -> torch.Tensor:
    # raw [R, blocks, bytes] uint8 -> [R, blocks] fp32 of the little-endian fp16 at byte `start`
    return torch.from_numpy(np.ascontiguousarray(raw[..., start : start + 2]).view(np.float16)[..., 0].astype(np.float32))


def _nibbles(qs: np.ndarray) -> torch.Tensor:
    # [R, blocks, 16] packed bytes -> [R, blocks * 32] codes: block element j is the low nibble of byte j,
    # element j + 16 its high nibble (ggml's layout)
    codes = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)
    return torch.from_numpy(np.ascontiguousarray(codes).reshape(qs.shape[0], -1))


def block_codes(type_name: str, data: np.ndarray, rows: int, cols: int) -> Codes | None:
    """Codes of a Q4_0 / Q4_1 / Q8_0 tensor [rows, cols] from its raw blocks; None for other types."""
    if type_name not in ("Q4_0", "Q4_1", "Q8_0") or cols % INT4_GROUP:
        return None
    size = {"Q4_0": _Q4_0, "Q4_1": _Q4_1, "Q8_0": _Q8_0}[type_name]
    raw = np.asarray(data, dtype=np.uint8).reshape(rows, cols // INT4_GROUP, size)
    d = _fp16(raw, 0)  # [R, blocks]
    if type_name == "Q8_0":
        q = torch.from_numpy(np.ascontiguousarray(raw[..., 2:]).view(np.int8).astype(np.float32))  # [R, blocks, 32]
        return quantize_int8((q * d[..., None]).view(rows, cols))
    if type_name == "Q4_0":  # w = (q - 8) d
        return Int4Codes(_nibbles(raw[..., 2:]), d, torch.zeros_like(d))
    m = _fp16(raw, 2)  # Q4_1: w = q d + m
    return Int4Codes(_nibbles(raw[..., 4:]), d, m + 8 * d)


def _permute_rows(codes: Codes, heads: int) -> Codes:
    # llama.cpp's Q/K row interleave undone on every per-row tensor of the codes
    def rows(t: torch.Tensor) -> torch.Tensor:
        flat = t.reshape(t.shape[0], -1).numpy()
        return torch.from_numpy(_unpermute(flat, heads)).view(t.shape)

    if isinstance(codes, Int8Codes):
        return Int8Codes(rows(codes.codes), rows(codes.scale[:, None])[:, 0])
    return Int4Codes(rows(codes.codes), rows(codes.scale), rows(codes.zero))


def _dense(t: Any) -> torch.Tensor:
    from gguf.quants import dequantize

    array = dequantize(t.data, t.tensor_type).reshape([int(d) for d in reversed(t.shape)])
    return torch.from_numpy(np.array(array, dtype=np.float32))  # a copy: the memory map is read-only


def load_gguf_quantized(path: str | Path, mode: str, dtype: torch.dtype, device: str = "cpu") -> LlamaForCausalLM:
    """The model with every linear and the token table (the tied output layer) quantized; `mode` (int8 | int4)
    applies to tensors stored in another type. The int kernels are CPU ones: device must be cpu."""
    from workers.loader import empty_model

    if torch.device(device).type != "cpu":
        raise QuantizationError("the quantized linears run on CPU only")
    reader = open_gguf(path)
    config = gguf_config(reader)
    if config.is_gemma:  # its norms are stored transformed (gguf_weights undoes it): take the dense route
        from workers.loader import load_model
        from workers.models.quant_linear import quantize_model

        model = load_model(path, dtype, device)
        quantize_model(model, mode)
        return model
    model = empty_model(config, dtype, device)
    expected = model.hf_state_names() | {"model.embed_tokens.weight"}
    linears = {name: m for name, m in model.named_modules() if isinstance(m, Linear)}
    parts: dict[str, dict[str, Codes]] = {}  # linear module name -> slice name -> codes
    tables: dict[str, Codes] = {}
    arch = field(reader, "general.architecture")
    permute = arch in _PERMUTED_ARCHS
    params = dict(model.named_parameters())
    seen: set[str] = set()
    for t in reader.tensors:
        if t.name in _ROPE_TENSORS:  # folded into the config
            continue
        name = _hf_name(t.name, arch)
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        if name not in expected or name in seen:
            raise WeightLoadError(f"unexpected or repeated tensor {name!r}")
        seen.add(name)
        prefix, _, kind = name.rpartition(".")
        module_name, _, proj = prefix.rpartition(".")
        heads = config.num_heads if proj == "q_proj" else config.num_kv_heads
        owner = _owner(linears, module_name, proj)
        if owner is not None and kind == "bias":  # into the merged projection's bias slice
            start, size = linears[owner].slice_of(proj)
            bias = _dense(t)
            if permute and proj in ("q_proj", "k_proj"):
                bias = torch.from_numpy(_unpermute(bias.numpy(), heads))
            linears[owner].bias[start : start + size].copy_(bias)  # type: ignore[index]
            continue
        if owner is None and prefix not in ("model.embed_tokens", "lm_head"):
            if name not in params:
                raise WeightLoadError(f"{name}: no parameter of that name")
            params[name].copy_(model.from_checkpoint(name, _dense(t)))
            continue
        rows, cols = int(t.shape[1]), int(t.shape[0])
        codes = block_codes(t.tensor_type.name, t.data, rows, cols)
        if codes is None or (mode == "int8" and isinstance(codes, Int4Codes)):
            codes = quantize(_dense(t), mode)
        if permute and proj in ("q_proj", "k_proj"):
            codes = _permute_rows(codes, heads)
        if owner is None:
            tables[prefix] = codes
        else:
            parts.setdefault(owner, {})[proj] = codes
    missing = expected - seen - ({"lm_head.weight"} if config.tie_word_embeddings else set())
    if missing:
        raise WeightLoadError(f"checkpoint lacks {len(missing)} tensors, e.g. {sorted(missing)[:3]}")
    replace_linears(model, lambda name, linear: cat_codes([parts[name][p] for p in linear.names]))
    inner = model.model
    inner.embed_tokens = QuantEmbedding(tables["model.embed_tokens"], dtype)
    model.lm_head = inner.embed_tokens if config.tie_word_embeddings else QuantEmbedding(tables["lm_head"], dtype)
    return model.eval()


def _owner(linears: dict[str, Linear], module_name: str, proj: str) -> str | None:
    # the (possibly merged) Linear of `module_name` that holds projection `proj`: q_proj -> ...self_attn.qkv_proj
    for name, linear in linears.items():
        if name.rpartition(".")[0] == module_name and proj in linear.names:
            return name
    return None

