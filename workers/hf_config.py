"""A transformers config.json dict -> ModelConfig, per family. Reads both layouts: the older `rope_theta` +
`rope_scaling` (+ Gemma 3's `rope_local_base_freq`) that most hub checkpoints carry, and transformers 5.x's
`rope_parameters` (one dict, or one per layer type for Gemma 3)."""

from typing import Any

from workers.model_config import (
    FULL_ATTENTION,
    GEMMA_ARCHITECTURES,
    SLIDING_ATTENTION,
    SUPPORTED_ARCHITECTURES,
    ModelConfig,
    UnsupportedModelError,
    as_id_list,
)

# Defaults of each transformers config class, for keys a hand-written config.json may leave out.
_DEFAULT_THETA = {"gemma3_text": 1_000_000.0}
_DEFAULT_TIE = {"gemma2": True, "gemma3_text": True}
_DEFAULT_ACT = {"gemma2": "gelu_pytorch_tanh", "gemma3_text": "gelu_pytorch_tanh"}


# Gemma3TextConfig's defaults: a multimodal Gemma 3 config.json stores its text_config as a diff against them
_GEMMA3_TEXT_DEFAULTS: dict[str, Any] = {
    "vocab_size": 262208, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
    "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "query_pre_attn_scalar": 256,
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-6, "sliding_window": 4096, "rope_theta": 1_000_000.0,
    "rope_local_base_freq": 10000.0, "hidden_activation": "gelu_pytorch_tanh",
}


def config_from_hf(cfg: dict[str, Any]) -> ModelConfig:
    model_type = cfg.get("model_type", "")
    if model_type == "gemma3_text":
        cfg = _GEMMA3_TEXT_DEFAULTS | cfg
    if model_type == "gemma3" and isinstance(cfg.get("text_config"), dict):
        # Gemma 3 4B/12B/27B are multimodal checkpoints: we serve their language model (workers/loader/hf_folder.py
        # reads its tensors), whose config is text_config; tying and stop ids may sit at the top level
        text = dict(cfg["text_config"], model_type="gemma3_text")
        for key in ("tie_word_embeddings", "eos_token_id", "bos_token_id"):
            if key in cfg and key not in text:
                text[key] = cfg[key]
        return config_from_hf(text)
    if model_type not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedModelError(f"model_type {model_type!r} is not one of {SUPPORTED_ARCHITECTURES}")
    num_heads = int(cfg["num_attention_heads"])
    hidden = int(cfg["hidden_size"])
    head_dim = int(cfg.get("head_dim") or hidden // num_heads)
    num_layers = int(cfg["num_hidden_layers"])
    max_pos = int(cfg.get("max_position_embeddings", 2048))
    global_rope, local_rope = _rope_parameters(cfg, model_type)
    theta = float(global_rope.pop("rope_theta", None) or _DEFAULT_THETA.get(model_type, 10000.0))
    partial = float(global_rope.pop("partial_rotary_factor", None) or cfg.get("partial_rotary_factor") or 1.0)
    scaling = _scaling(global_rope, max_pos, cfg)
    local_theta = local_scaling = None
    if local_rope is not None:
        local_theta = float(local_rope.pop("rope_theta", None) or 10000.0)
        local_rope.pop("partial_rotary_factor", None)
        local_scaling = _scaling(local_rope, max_pos, cfg)
    window = cfg.get("sliding_window")
    layer_types = _layer_types(cfg, model_type, num_layers, window)
    bias = bool(cfg.get("attention_bias", False))
    rotary_dim = int(head_dim * partial) if partial < 1.0 else None
    act = cfg.get("hidden_activation") or cfg.get("hidden_act") or _DEFAULT_ACT.get(model_type, "silu")
    if model_type in GEMMA_ARCHITECTURES and act == "gelu":  # Gemma's configs said "gelu" and meant the tanh form
        act = "gelu_pytorch_tanh"
    return ModelConfig(
        architecture=model_type,
        vocab_size=int(cfg["vocab_size"]),
        hidden_size=hidden,
        intermediate_size=int(cfg["intermediate_size"]),
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=int(cfg.get("num_key_value_heads") or num_heads),
        head_dim=head_dim,
        rope_theta=theta,
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        # Gemma 3 states its scaled context already (128k = 32k x linear 8), as vLLM notes too
        max_position_embeddings=max_pos if model_type == "gemma3_text" else _context_length(max_pos, scaling),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", _DEFAULT_TIE.get(model_type, False))),
        attention_bias=True if model_type == "qwen2" else bias,
        o_proj_bias=bias if model_type in ("llama", "qwen3", "gemma2", "gemma3_text") else False,
        mlp_bias=bool(cfg.get("mlp_bias", False)),
        bos_token_id=cfg.get("bos_token_id"),
        eos_token_ids=as_id_list(cfg.get("eos_token_id")),
        rotary_dim=rotary_dim,
        rope_scaling=scaling,
        sliding_window=int(window) if window and SLIDING_ATTENTION in layer_types else None,
        layer_types=layer_types,
        local_rope_theta=local_theta,
        local_rope_scaling=local_scaling,
        qk_norm=model_type in ("qwen3", "gemma3_text"),
        hidden_act=str(act),
        attn_logit_softcap=_float_or_none(cfg.get("attn_logit_softcapping")),
        final_logit_softcap=_float_or_none(cfg.get("final_logit_softcapping")),
        query_pre_attn_scalar=_float_or_none(cfg.get("query_pre_attn_scalar")),
    )


def _rope_parameters(cfg: dict[str, Any], model_type: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """-> (global rope params incl. rope_theta, sliding layers' own params or None). Copies: callers pop keys."""
    params = cfg.get("rope_parameters")
    if isinstance(params, dict) and FULL_ATTENTION in params:  # 5.x, per layer type (Gemma 3)
        local = params.get(SLIDING_ATTENTION)
        return dict(params[FULL_ATTENTION]), dict(local) if isinstance(local, dict) else None
    if isinstance(params, dict):
        out = dict(params)
    else:
        out = dict(cfg.get("rope_scaling") or {})
        if "type" in out and "rope_type" not in out:
            out["rope_type"] = out.pop("type")
        out.setdefault("rope_theta", cfg.get("rope_theta"))
    out.setdefault("rope_theta", cfg.get("rope_theta"))
    local = None
    if model_type == "gemma3_text":  # older layout: global scaling, local layers plain RoPE at their own base
        local = {"rope_type": "default", "rope_theta": cfg.get("rope_local_base_freq", 10000.0)}
    return out, local


def _scaling(params: dict[str, Any], max_pos: int, cfg: dict[str, Any]) -> dict[str, Any] | None:
    kind = params.get("rope_type") or "default"
    if kind == "su":  # Phi-3's early name for longrope
        kind = "longrope"
    if kind == "default":
        return None
    out = dict(params, rope_type=kind)
    out.setdefault("original_max_position_embeddings", cfg.get("original_max_position_embeddings") or max_pos)
    out.setdefault("max_position_embeddings", max_pos)
    return out  # ModelConfig refuses a type we don't know, naming it


def _context_length(max_pos: int, scaling: dict[str, Any] | None) -> int:
    """vLLM's rule: linear/dynamic stretch the configured context by `factor`; yarn stretches the original one;
    llama3 and longrope configs already state the extended context in max_position_embeddings."""
    if scaling is None:
        return max_pos
    kind, factor = scaling["rope_type"], float(scaling.get("factor") or 1.0)
    if kind in ("linear", "dynamic"):
        return int(max_pos * factor)
    if kind == "yarn":
        return max(max_pos, int(scaling["original_max_position_embeddings"] * factor))
    return max_pos


def _layer_types(cfg: dict[str, Any], model_type: str, num_layers: int, window: Any) -> list[str]:
    given = cfg.get("layer_types")
    if isinstance(given, list) and given:
        types = [str(t) for t in given]
        return types if window else [FULL_ATTENTION] * num_layers
    if not window:
        return []
    if model_type in ("mistral", "phi3"):  # one window on every layer
        return [SLIDING_ATTENTION] * num_layers
    if model_type == "gemma2":  # even layers slide, odd layers are global
        return [SLIDING_ATTENTION if (i + 1) % 2 else FULL_ATTENTION for i in range(num_layers)]
    if model_type == "gemma3_text":
        pattern = int(cfg.get("sliding_window_pattern") or cfg.get("_sliding_window_pattern") or 6)
        return [SLIDING_ATTENTION if (i + 1) % pattern else FULL_ATTENTION for i in range(num_layers)]
    if model_type in ("qwen2", "qwen3") and cfg.get("use_sliding_window"):
        first = int(cfg.get("max_window_layers", num_layers))
        return [SLIDING_ATTENTION if i >= first else FULL_ATTENTION for i in range(num_layers)]
    return []


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)
