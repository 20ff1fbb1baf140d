"""Check a PEFT LoRA adapter against its base model's shape, without the base weights.

The safetensors header is parsed by hand first (names, dtypes, shapes, offsets) so a wrong adapter is refused
with a precise reason before any tensor is materialised; then the values are checked for NaN/Inf.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field

import torch
from safetensors.torch import load as load_safetensors

from adapters.archive import CONFIG_NAME, WEIGHTS_NAME, AdapterFileError, AdapterFiles
from adapters.conf import ALLOWED_TARGET_MODULES

# peft's key for a LoRA factor of a projection (Llama-family names, and Phi's fused qkv_proj / gate_up_proj); a
# multimodal Gemma 3's language model sits under model.language_model
_KEY_RE = re.compile(
    r"^base_model\.model\.model\.(?:language_model\.)?layers\.(\d+)\.(self_attn|mlp)\."
    r"(q_proj|k_proj|v_proj|qkv_proj|o_proj|gate_proj|up_proj|gate_up_proj|down_proj)\.lora_(A|B)\.weight$"
)
_PARENT = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "qkv_proj": "self_attn",
           "o_proj": "self_attn", "gate_proj": "mlp", "up_proj": "mlp", "gate_up_proj": "mlp", "down_proj": "mlp"}
_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
_ITEMSIZE = {"F32": 4, "F16": 2, "BF16": 2}
_REFUSED_TARGETS = {"embed_tokens": "embedding", "lm_head": "lm_head"}


@dataclass(slots=True)
class AdapterSummary:
    rank: int
    lora_alpha: float
    use_rslora: bool
    target_modules: list[str]
    num_tensors: int
    modules: set[tuple[int, str]] = field(default_factory=set)
    # target_modules was a peft regex (e.g. ".*language_model.*\.q_proj"): the tensors say which projections it hit
    targets_from_tensors: bool = False


def _fail(message: str) -> AdapterFileError:
    return AdapterFileError(message)


def parse_config(raw: bytes, *, max_rank: int) -> AdapterSummary:
    try:
        cfg = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(f"{CONFIG_NAME} is not valid JSON: {exc}.") from None
    if not isinstance(cfg, dict):
        raise _fail(f"{CONFIG_NAME} must hold a JSON object.")
    peft_type = str(cfg.get("peft_type", "")).upper()
    if peft_type != "LORA":
        raise _fail(f"Only LoRA adapters are supported (peft_type LORA); this one is {cfg.get('peft_type')!r}.")
    if cfg.get("use_dora"):
        raise _fail("DoRA adapters (use_dora) are not supported; train a plain LoRA adapter.")
    if cfg.get("modules_to_save"):
        raise _fail(
            f"The adapter also trains whole modules (modules_to_save={cfg['modules_to_save']}); Hearth serves many "
            "adapters on one shared base model, so only LoRA factors are supported."
        )
    if cfg.get("bias", "none") != "none" or cfg.get("lora_bias"):
        raise _fail("The adapter trains bias terms (bias / lora_bias); only LoRA factors are supported.")
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        raise _fail("Per-module ranks or alphas (rank_pattern / alpha_pattern) are not supported; use one r and alpha.")
    rank = cfg.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or not 1 <= rank <= max_rank:
        raise _fail(f"The adapter's rank r={rank!r} is outside the supported range 1–{max_rank}.")
    alpha = cfg.get("lora_alpha", rank)
    if not isinstance(alpha, int | float) or isinstance(alpha, bool) or not math.isfinite(alpha) or alpha <= 0:
        raise _fail(f"lora_alpha must be a positive number, got {alpha!r}.")
    use_rslora = cfg.get("use_rslora", False)
    if not isinstance(use_rslora, bool):
        raise _fail(f"use_rslora must be true or false, got {use_rslora!r}.")
    targets = cfg.get("target_modules")
    if isinstance(targets, str) and not re.fullmatch(r"[\w.]+", targets):
        try:
            re.compile(targets)
        except re.error as exc:
            raise _fail(f"target_modules {targets!r} is neither a module name nor a valid regex: {exc}.") from None
        return AdapterSummary(rank, float(alpha), use_rslora, [], 0, targets_from_tensors=True)
    return AdapterSummary(rank, float(alpha), use_rslora, _target_modules(targets), 0)


def _target_modules(targets: object) -> list[str]:
    names = [targets] if isinstance(targets, str) else targets
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise _fail(f"target_modules must list the projections the adapter changes, got {targets!r}.")
    for name in names:
        short = name.rsplit(".", 1)[-1]
        if short in _REFUSED_TARGETS:
            raise _fail(f"Adapters on the {_REFUSED_TARGETS[short]} ('{name}') are not supported; target projections.")
        if short not in ALLOWED_TARGET_MODULES:
            raise _fail(f"target module '{name}' is not supported; use some of {', '.join(ALLOWED_TARGET_MODULES)}.")
    return sorted({n.rsplit(".", 1)[-1] for n in names}, key=ALLOWED_TARGET_MODULES.index)


def _header(weights: bytes) -> dict[str, dict]:
    if len(weights) < 8:
        raise _fail(f"{WEIGHTS_NAME} is empty or truncated.")
    (size,) = struct.unpack("<Q", weights[:8])
    if size > len(weights) - 8 or size > 100 << 20:
        raise _fail(f"{WEIGHTS_NAME} is not a safetensors file (its header length is wrong).")
    try:
        header = json.loads(weights[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _fail(f"{WEIGHTS_NAME} is not a safetensors file (its header is not JSON).") from None
    if not isinstance(header, dict):
        raise _fail(f"{WEIGHTS_NAME} is not a safetensors file.")
    header.pop("__metadata__", None)
    data_len = len(weights) - 8 - size
    for name, info in header.items():
        if not isinstance(info, dict) or {"dtype", "shape", "data_offsets"} - info.keys():
            raise _fail(f"{WEIGHTS_NAME}: tensor '{name}' has a malformed header entry.")
        start, end = info["data_offsets"]
        itemsize = _ITEMSIZE.get(info["dtype"], 0)
        if itemsize and not (0 <= start <= end <= data_len and end - start == math.prod(info["shape"]) * itemsize):
            raise _fail(f"{WEIGHTS_NAME}: tensor '{name}' points outside the file (truncated or corrupt).")
    return header


def check_tensors(summary: AdapterSummary, weights: bytes, dims: dict[str, tuple[int, int]], num_layers: int) -> None:
    """Every tensor is a LoRA factor of a targeted projection with the base model's shape; values are finite."""
    header = _header(weights)
    if not header:
        raise _fail(f"{WEIGHTS_NAME} holds no tensors.")
    r = summary.rank
    pairs: dict[tuple[int, str], set[str]] = {}
    for name, info in header.items():
        match = _KEY_RE.match(name)
        if match is None:
            if "lora_magnitude_vector" in name:
                raise _fail("DoRA adapters are not supported; train a plain LoRA adapter.")
            if "embed_tokens" in name or "lm_head" in name:
                raise _fail(f"Tensor '{name}' changes the embedding or lm_head; only projection adapters are supported.")
            raise _fail(f"Unexpected tensor '{name}': not a LoRA factor of a Llama-family projection.")
        layer, parent, proj, factor = int(match[1]), match[2], match[3], match[4]
        if parent != _PARENT[proj] or layer >= num_layers:
            raise _fail(f"Tensor '{name}' names a module the base model doesn't have ({num_layers} layers).")
        if not summary.targets_from_tensors and proj not in summary.target_modules:
            raise _fail(f"Tensor '{name}' is for {proj}, which is not in target_modules {summary.target_modules}.")
        if info["dtype"] not in _DTYPES:
            raise _fail(f"Tensor '{name}' has dtype {info['dtype']}; supported are float32, float16 and bfloat16.")
        if proj not in dims:  # reachable with a regex target_modules: a projection of another family
            raise _fail(f"Tensor '{name}' is for {proj}, which this base model does not have ({', '.join(dims)}).")
        in_features, out_features = dims[proj]
        expected = [r, in_features] if factor == "A" else [out_features, r]
        if list(info["shape"]) != expected:
            raise _fail(
                f"Tensor '{name}' has shape {list(info['shape'])} but the base model needs {expected} for rank {r}. "
                "Was the adapter trained for another base model, or with another r?"
            )
        pairs.setdefault((layer, proj), set()).add(factor)
    for (layer, proj), factors in sorted(pairs.items()):
        if factors != {"A", "B"}:
            raise _fail(f"Layer {layer} {proj} has lora_{''.join(factors)} but not both lora_A and lora_B.")
    try:
        tensors = load_safetensors(weights)
    except Exception as exc:  # the library's own error type varies by version; any failure is a corrupt file
        raise _fail(f"{WEIGHTS_NAME} can't be read: {exc}.") from None
    for name, tensor in tensors.items():
        if not torch.isfinite(tensor).all():
            raise _fail(f"Tensor '{name}' holds NaN or infinite values; the adapter is broken.")
    summary.num_tensors = len(tensors)
    summary.modules = set(pairs)
    if summary.targets_from_tensors:
        summary.target_modules = sorted({p for _, p in pairs}, key=ALLOWED_TARGET_MODULES.index)


def validate(files: AdapterFiles, *, dims: dict[str, tuple[int, int]], num_layers: int, max_rank: int) -> AdapterSummary:
    summary = parse_config(files.config, max_rank=max_rank)
    foreign = [t for t in summary.target_modules if t not in dims]
    if foreign:  # e.g. q_proj on a Phi base (its attention is one fused qkv_proj), or qkv_proj on a Llama base
        raise _fail(f"target module(s) {', '.join(foreign)} are not projections of this base model; "
                    f"it has {', '.join(dims)}.")
    check_tensors(summary, files.weights, dims, num_layers)
    return summary
