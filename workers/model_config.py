"""The shape of a Llama-family model, read from an HF config.json or from GGUF metadata."""

from dataclasses import dataclass, field
from typing import Any

SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2")


class UnsupportedModelError(ValueError):
    """The checkpoint describes a model our code can't run exactly (unknown architecture, rope scaling...)."""


@dataclass(slots=True)
class ModelConfig:
    architecture: str  # "llama" | "mistral" | "qwen2" (SmolLM is "llama")
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float
    rms_norm_eps: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    attention_bias: bool = False  # bias on q/k/v (Qwen2 always; Llama when config.attention_bias)
    o_proj_bias: bool = False  # Llama's attention_bias also puts a bias on o_proj; Qwen2's does not
    mlp_bias: bool = False
    bos_token_id: int | None = None
    eos_token_ids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.architecture not in SUPPORTED_ARCHITECTURES:
            raise UnsupportedModelError(f"architecture {self.architecture!r} is not one of {SUPPORTED_ARCHITECTURES}")
        if self.num_heads % self.num_kv_heads != 0:
            raise UnsupportedModelError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads")
        if self.head_dim % 2 != 0:
            raise UnsupportedModelError(f"head_dim {self.head_dim} must be even for rotary embeddings")

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    @classmethod
    def from_hf(cls, cfg: dict[str, Any]) -> "ModelConfig":
        """From a transformers config.json dict (LlamaConfig, MistralConfig, Qwen2Config)."""
        model_type = cfg.get("model_type", "")
        if model_type not in SUPPORTED_ARCHITECTURES:
            raise UnsupportedModelError(f"model_type {model_type!r} is not one of {SUPPORTED_ARCHITECTURES}")
        rope_scaling = cfg.get("rope_scaling") or cfg.get("rope_parameters")
        rope_theta = cfg.get("rope_theta")
        if isinstance(rope_scaling, dict):
            kind = rope_scaling.get("rope_type", rope_scaling.get("type", "default"))
            if kind != "default":
                raise UnsupportedModelError(f"rope scaling {kind!r} is not supported")
            rope_theta = rope_scaling.get("rope_theta", rope_theta)
        num_heads = int(cfg["num_attention_heads"])
        hidden = int(cfg["hidden_size"])
        max_pos = int(cfg.get("max_position_embeddings", 2048))
        # A sliding window we don't implement is exact as long as no sequence outgrows it: cap the context there.
        window = cfg.get("sliding_window")
        if window and (model_type == "mistral" or cfg.get("use_sliding_window")):
            max_pos = min(max_pos, int(window))
        eos = cfg.get("eos_token_id")
        bias = bool(cfg.get("attention_bias", False))
        return cls(
            architecture=model_type,
            vocab_size=int(cfg["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(cfg["intermediate_size"]),
            num_layers=int(cfg["num_hidden_layers"]),
            num_heads=num_heads,
            num_kv_heads=int(cfg.get("num_key_value_heads") or num_heads),
            head_dim=int(cfg.get("head_dim") or hidden // num_heads),
            rope_theta=float(rope_theta if rope_theta is not None else 10000.0),
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            max_position_embeddings=max_pos,
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            attention_bias=True if model_type == "qwen2" else bias,
            o_proj_bias=bias if model_type == "llama" else False,
            mlp_bias=bool(cfg.get("mlp_bias", False)),
            bos_token_id=cfg.get("bos_token_id"),
            eos_token_ids=_as_list(eos),
        )

    def to_hf(self) -> dict[str, Any]:
        """The transformers config.json dict of the same model (tests build the HF reference from it)."""
        return {
            "model_type": self.architecture,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_norm_eps,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "mlp_bias": self.mlp_bias,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_ids[0] if len(self.eos_token_ids) == 1 else self.eos_token_ids,
        }


def _as_list(value: int | list[int] | None) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]
