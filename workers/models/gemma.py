"""Gemma 2 and Gemma 3 (text): the Llama decoder with Gemma's differences.

- RMSNorm scales by (1 + w): checkpoints store w, we keep 1 + w (computed in fp32 at load, as llama.cpp's GGUF
  files store it) so the shared rms_norm kernels run unchanged.
- Embeddings are multiplied by sqrt(hidden_size), rounded to the weights' dtype as transformers does.
- Four norms per layer: input -> attention -> post_attention -> (+ residual) -> pre_feedforward -> MLP ->
  post_feedforward -> (+ residual).
- GeLU-tanh MLP, attention scale query_pre_attn_scalar ** -0.5, alternating sliding/global layers (Gemma 3's sliding
  layers with their own RoPE base), Gemma 2's attention and final logit soft-capping, Gemma 3's q/k norms: all
  config flags read by the shared layers.
"""

import torch
from torch import nn

from workers.model_config import ModelConfig
from workers.models.attention_metadata import AttentionMetadata
from workers.models.layers import LoraHook, RMSNorm
from workers.models.llama import KVCache, LlamaAttention, LlamaForCausalLM, LlamaMLP


class GemmaDecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = LlamaAttention(config, layer_idx)
        self.mlp = LlamaMLP(config, layer_idx)
        h, eps = config.hidden_size, config.rms_norm_eps
        self.input_layernorm = RMSNorm(h, eps)
        self.post_attention_layernorm = RMSNorm(h, eps)
        self.pre_feedforward_layernorm = RMSNorm(h, eps)
        self.post_feedforward_layernorm = RMSNorm(h, eps)

    def forward(
        self, positions: torch.Tensor, x: torch.Tensor, residual: torch.Tensor | None, attn: AttentionMetadata,
        kv_cache: KVCache, cos_sin: torch.Tensor, lora: LoraHook | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # residual carries the stream; x is the previous layer's MLP output, not yet added (None residual: x is it)
        x, residual = self.input_layernorm(x, residual)
        x = self.self_attn(positions, x, attn, kv_cache, cos_sin, lora)
        x, _ = self.post_attention_layernorm(x)
        x, residual = self.pre_feedforward_layernorm(x, residual)
        x, _ = self.post_feedforward_layernorm(self.mlp(x, lora))
        return x, residual


class GemmaForCausalLM(LlamaForCausalLM):
    layer_cls = GemmaDecoderLayer

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.embed_scale = config.hidden_size**0.5

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.model.embed_tokens(input_ids)  # [T, H]
        return x * torch.tensor(self.embed_scale, dtype=x.dtype)

    def to_checkpoint(self, name: str, param: torch.Tensor) -> torch.Tensor:
        return (param.float() - 1.0).to(param.dtype) if _is_norm(name) else param

    def from_checkpoint(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.float() + 1.0 if _is_norm(name) else tensor


def _is_norm(name: str) -> bool:
    return name.endswith("norm.weight")
