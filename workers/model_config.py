"""The shape of a decoder model we run (Llama, Mistral, Qwen 2/2.5/3, Gemma 2/3, Phi-3/4), read from an HF
config.json (workers/hf_config.py) or from GGUF metadata (workers/loader/gguf_file.py). Torch-free: the control
plane imports it to check a model and the projection shapes adapters are validated against."""

from dataclasses import dataclass, field
from typing import Any

# HF model_type of every family we run. SmolLM is "llama"; Qwen 2.5 is "qwen2"; Phi-4-mini is "phi3".
SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "phi3")
GEMMA_ARCHITECTURES = ("gemma2", "gemma3_text")  # (1 + w) norms, scaled embeddings, pre/post norms
FUSED_ARCHITECTURES = ("phi3",)  # qkv_proj and gate_up_proj are single checkpoint tensors (and LoRA targets)
# HF's rope types, and "freq_factors": llama.cpp's form of Llama 3's scaling (one divisor per frequency, from GGUF)
ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "longrope", "llama3", "freq_factors")
HIDDEN_ACTS = ("silu", "gelu_pytorch_tanh")
FULL_ATTENTION, SLIDING_ATTENTION = "full_attention", "sliding_attention"


class UnsupportedModelError(ValueError):
    """The checkpoint describes a model our code can't run exactly (unknown architecture, rope scaling...)."""


@dataclass(slots=True)
class ModelConfig:
    architecture: str  # one of SUPPORTED_ARCHITECTURES
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float
    rms_norm_eps: float
    max_position_embeddings: int  # the context the engine serves (after RoPE scaling extends it)
    tie_word_embeddings: bool
    attention_bias: bool = False  # bias on q/k/v (Qwen2 always; Llama when config.attention_bias)
    o_proj_bias: bool = False  # Llama's attention_bias also puts a bias on o_proj; Qwen2's does not
    mlp_bias: bool = False
    bos_token_id: int | None = None
    eos_token_ids: list[int] = field(default_factory=list)
    rotary_dim: int | None = None  # partial rotary (Phi): the first rotary_dim dims of a head rotate; None = all
    # HF rope parameters besides theta, e.g. {"rope_type": "llama3", "factor": 8.0, ...}; None = plain RoPE.
    # Always carries original_max_position_embeddings when set (workers/models/rope.py reads it).
    rope_scaling: dict[str, Any] | None = None
    sliding_window: int | None = None  # keys a sliding layer's query attends to, itself included
    layer_types: list[str] = field(default_factory=list)  # per layer FULL/SLIDING_ATTENTION; [] = all full
    local_rope_theta: float | None = None  # Gemma 3: sliding layers have their own RoPE base (None: the global one)
    local_rope_scaling: dict[str, Any] | None = None
    qk_norm: bool = False  # RMSNorm over each q and k head before RoPE (Qwen 3, Gemma 3)
    hidden_act: str = "silu"  # the MLP gate's activation
    attn_logit_softcap: float | None = None  # Gemma 2: scores = cap * tanh(scores / cap)
    final_logit_softcap: float | None = None  # Gemma 2: the same on the lm_head's logits
    query_pre_attn_scalar: float | None = None  # Gemma: attention scale is this ** -0.5 instead of head_dim ** -0.5

    def __post_init__(self) -> None:
        if self.architecture not in SUPPORTED_ARCHITECTURES:
            raise UnsupportedModelError(f"architecture {self.architecture!r} is not one of {SUPPORTED_ARCHITECTURES}")
        if self.num_heads % self.num_kv_heads != 0:
            raise UnsupportedModelError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads")
        if self.head_dim % 2 != 0:
            raise UnsupportedModelError(f"head_dim {self.head_dim} must be even for rotary embeddings")
        rot = self.rotary_dim
        if rot is not None and (rot % 2 or not 0 < rot <= self.head_dim):
            raise UnsupportedModelError(f"rotary_dim {rot} must be even and within head_dim {self.head_dim}")
        for scaling in (self.rope_scaling, self.local_rope_scaling):
            kind = (scaling or {}).get("rope_type", "default")
            if kind not in ROPE_TYPES:
                raise UnsupportedModelError(f"rope scaling {kind!r} is not supported (supported: {ROPE_TYPES})")
        if self.hidden_act not in HIDDEN_ACTS:
            raise UnsupportedModelError(f"activation {self.hidden_act!r} is not one of {HIDDEN_ACTS}")
        if self.layer_types:
            if len(self.layer_types) != self.num_layers:
                raise UnsupportedModelError(f"{len(self.layer_types)} layer_types for {self.num_layers} layers")
            unknown = set(self.layer_types) - {FULL_ATTENTION, SLIDING_ATTENTION}
            if unknown:
                raise UnsupportedModelError(f"layer types {sorted(unknown)} are not supported")
            if SLIDING_ATTENTION in self.layer_types and not self.sliding_window:
                raise UnsupportedModelError("sliding-attention layers need a sliding_window")

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def is_gemma(self) -> bool:
        return self.architecture in GEMMA_ARCHITECTURES

    @property
    def attn_scale(self) -> float:
        return (self.query_pre_attn_scalar or self.head_dim) ** -0.5

    def layer_window(self, layer: int) -> int | None:
        """The sliding window of this layer, or None for full attention."""
        if self.layer_types and self.layer_types[layer] == SLIDING_ATTENTION:
            return self.sliding_window
        return None

    def projection_dims(self) -> dict[str, tuple[int, int]]:
        """HF projection name -> (in_features, out_features): the modules a LoRA adapter may target."""
        return adapter_projections(
            self.architecture, hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
            num_heads=self.num_heads, num_kv_heads=self.num_kv_heads, head_dim=self.head_dim,
        )

    @classmethod
    def from_hf(cls, cfg: dict[str, Any]) -> "ModelConfig":
        """From a transformers config.json dict (old `rope_scaling` and 5.x `rope_parameters` layouts)."""
        from workers.hf_config import config_from_hf

        return config_from_hf(cfg)

    def to_hf(self) -> dict[str, Any]:
        """The transformers config.json dict of a Llama-family model (tests build the HF reference from it)."""
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


def adapter_projections(
    architecture: str, *, hidden_size: int, intermediate_size: int, num_heads: int, num_kv_heads: int, head_dim: int
) -> dict[str, tuple[int, int]]:
    """HF projection name -> (in_features, out_features) of one layer, as peft names them for this family.
    The control plane validates adapters against this; workers/lora runs them with the same names."""
    h, i, q, kv = hidden_size, intermediate_size, num_heads * head_dim, num_kv_heads * head_dim
    if architecture in FUSED_ARCHITECTURES:
        return {"qkv_proj": (h, q + 2 * kv), "o_proj": (q, h), "gate_up_proj": (h, 2 * i), "down_proj": (i, h)}
    return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}  # fmt: skip


def as_id_list(value: int | list[int] | None) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]
