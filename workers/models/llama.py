"""Llama-family decoder (Llama 3.x, Mistral, Qwen 2/2.5/3, Phi-3/4, SmolLM) over a flattened batch and a paged KV
cache. Gemma subclasses it (workers/models/gemma.py). Family differences are config flags: q/k norm (Qwen 3),
fused qkv/gate_up tensors (Phi), partial rotary, sliding windows per layer, attention soft-capping.

Every hot op goes through `kernels` so CUDA tensors dispatch to Triton. T = tokens in the step, H = hidden size.
"""

from collections.abc import Iterable

import torch
from torch import nn

import kernels
from workers.model_config import FUSED_ARCHITECTURES, ModelConfig
from workers.models.attention_metadata import AttentionMetadata
from workers.models.layers import Embedding, Linear, LoraHook, RMSNorm, gated_mlp_act
from workers.models.rope import rope_cos_sin

KVCache = tuple[torch.Tensor, torch.Tensor]  # each [num_blocks, block_size, num_kv_heads, head_dim]

# HF projection name -> the merged module that holds it as a slice
_MERGED = {"q_proj": "qkv_proj", "k_proj": "qkv_proj", "v_proj": "qkv_proj", "gate_proj": "gate_up_proj",
           "up_proj": "gate_up_proj"}


class WeightLoadError(ValueError):
    """A checkpoint's tensors don't fit the model (missing, unexpected or wrongly shaped)."""


class LlamaAttention(nn.Module):
    def __init__(self, config: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.num_kv_heads = config.num_kv_heads
        self.head_dim = config.head_dim
        self.rotary_dim = config.rotary_dim or config.head_dim
        self.scale = config.attn_scale
        self.sliding_window = config.layer_window(layer_idx)
        self.logits_soft_cap = config.attn_logit_softcap
        # Gemma 3's sliding layers rotate with their own base: the model keeps a second table for them
        self.local_rope = self.sliding_window is not None and config.local_rope_theta is not None
        sizes = [config.q_size, config.kv_size, config.kv_size]
        if config.architecture in FUSED_ARCHITECTURES:  # one checkpoint tensor, one LoRA target
            self.qkv_proj = Linear(config.hidden_size, [sum(sizes)], ("qkv_proj",), config.attention_bias, layer_idx)
        else:
            self.qkv_proj = Linear(
                config.hidden_size, sizes, ("q_proj", "k_proj", "v_proj"), config.attention_bias, layer_idx
            )
        self.o_proj = Linear(config.q_size, [config.hidden_size], ("o_proj",), config.o_proj_bias, layer_idx)
        self.q_norm = RMSNorm(config.head_dim, config.rms_norm_eps) if config.qk_norm else None
        self.k_norm = RMSNorm(config.head_dim, config.rms_norm_eps) if config.qk_norm else None

    def forward(
        self, positions: torch.Tensor, x: torch.Tensor, attn: AttentionMetadata, kv_cache: KVCache,
        cos_sin: torch.Tensor, lora: LoraHook | None,
    ) -> torch.Tensor:
        num_tokens = x.shape[0]
        qkv = self.qkv_proj(x, lora)  # [T, (Hq + 2 Hk) D]
        q_size, kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        q = qkv[:, :q_size].view(num_tokens, self.num_heads, self.head_dim)
        k = qkv[:, q_size : q_size + kv_size].view(num_tokens, self.num_kv_heads, self.head_dim)
        v = qkv[:, q_size + kv_size :].view(num_tokens, self.num_kv_heads, self.head_dim)
        if self.q_norm is not None and self.k_norm is not None:  # per head, over D: [T * heads, D]
            q = self.q_norm(q.reshape(-1, self.head_dim))[0].view(num_tokens, self.num_heads, self.head_dim)
            k = self.k_norm(k.reshape(-1, self.head_dim))[0].view(num_tokens, self.num_kv_heads, self.head_dim)
        rot = self.rotary_dim
        kernels.apply_rotary(q[..., :rot], k[..., :rot], positions, cos_sin)  # in place; partial: the first rot dims
        k_cache, v_cache = kv_cache
        kernels.store_kvcache(k, v, k_cache, v_cache, attn.slot_mapping)
        window, cap = self.sliding_window, self.logits_soft_cap
        if attn.is_prefill:
            o = kernels.paged_attention_prefill(
                q, k_cache, v_cache, attn.cu_seqlens_q, attn.seq_lens, attn.block_tables, self.scale,
                sliding_window=window, logits_soft_cap=cap,
            )
        else:
            o = kernels.paged_attention_decode(
                q, k_cache, v_cache, attn.seq_lens, attn.block_tables, self.scale,
                sliding_window=window, logits_soft_cap=cap,
            )
        return self.o_proj(o.reshape(num_tokens, q_size), lora)  # [T, H]


class LlamaMLP(nn.Module):
    def __init__(self, config: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        inter = config.intermediate_size
        self.act = config.hidden_act
        if config.architecture in FUSED_ARCHITECTURES:
            self.gate_up_proj = Linear(config.hidden_size, [2 * inter], ("gate_up_proj",), config.mlp_bias, layer_idx)
        else:
            self.gate_up_proj = Linear(
                config.hidden_size, [inter, inter], ("gate_proj", "up_proj"), config.mlp_bias, layer_idx
            )
        self.down_proj = Linear(inter, [config.hidden_size], ("down_proj",), config.mlp_bias, layer_idx)

    def forward(self, x: torch.Tensor, lora: LoraHook | None) -> torch.Tensor:
        # [T, H] -> [T, 2I] (gate | up) -> [T, I] -> [T, H]
        return self.down_proj(gated_mlp_act(self.gate_up_proj(x, lora), self.act), lora)


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = LlamaAttention(config, layer_idx)
        self.mlp = LlamaMLP(config, layer_idx)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(
        self, positions: torch.Tensor, x: torch.Tensor, residual: torch.Tensor | None, attn: AttentionMetadata,
        kv_cache: KVCache, cos_sin: torch.Tensor, lora: LoraHook | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, residual = self.input_layernorm(x, residual)
        x = self.self_attn(positions, x, attn, kv_cache, cos_sin, lora)
        x, residual = self.post_attention_layernorm(x, residual)
        return self.mlp(x, lora), residual


class LlamaModel(nn.Module):
    def __init__(self, config: ModelConfig, layer_cls: type[nn.Module] = LlamaDecoderLayer) -> None:
        super().__init__()
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(layer_cls(config, i) for i in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class LlamaForCausalLM(nn.Module):
    layer_cls: type[nn.Module] = LlamaDecoderLayer

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.model = LlamaModel(config, self.layer_cls)
        if config.tie_word_embeddings:
            self.lm_head = self.model.embed_tokens
        else:
            self.lm_head = Embedding(config.vocab_size, config.hidden_size)
        # [max_positions, rotary_dim] fp32, first half cos, second half sin; follows the model across .to(device)
        device = self.model.norm.weight.device
        rot, positions = config.rotary_dim or config.head_dim, config.max_position_embeddings
        cos_sin = rope_cos_sin(positions, rot, config.rope_theta, config.rope_scaling)
        self.register_buffer("cos_sin", cos_sin.to(device), persistent=False)
        local = None
        if config.local_rope_theta is not None:
            local = rope_cos_sin(positions, rot, config.local_rope_theta, config.local_rope_scaling).to(device)
        self.register_buffer("cos_sin_local", local, persistent=False)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.embed_tokens(input_ids)  # [T] -> [T, H]

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, attn: AttentionMetadata, kv_caches: list[KVCache],
        lora: LoraHook | None = None,
    ) -> torch.Tensor:
        # input_ids, positions: [T] int64 -> hidden [T, H]
        if len(kv_caches) != len(self.model.layers):
            raise ValueError(f"expected {len(self.model.layers)} KV caches, got {len(kv_caches)}")
        x = self.embed(input_ids)
        residual: torch.Tensor | None = None
        with kernels.forward_scope():  # the metadata is fixed for this forward: CPU paths derive from it once
            for layer, kv_cache in zip(self.model.layers, kv_caches, strict=True):
                table = self.cos_sin_local if layer.self_attn.local_rope else self.cos_sin
                x, residual = layer(positions, x, residual, attn, kv_cache, table, lora)
        x, _ = self.model.norm(x, residual)
        return x

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        # [N, H] -> [N, V] float32; Gemma 2 soft-caps them (cap * tanh(logits / cap))
        logits = self.lm_head.project(hidden).float()  # dense or quantized (workers/models/quant_linear.py)
        cap = self.config.final_logit_softcap
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def to_checkpoint(self, name: str, param: torch.Tensor) -> torch.Tensor:
        """Our stored value of a parameter -> the checkpoint's (Gemma stores its norms as w, runs them as 1 + w)."""
        return param

    def from_checkpoint(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    @torch.no_grad()
    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy HF-named tensors (`model.layers.0.self_attn.q_proj.weight`...) into our (partly merged) params.

        Raises WeightLoadError unless every parameter, and every slice of a merged one, is filled exactly once.
        """
        params = dict(self.named_parameters())  # the tied lm_head appears once, as model.embed_tokens.weight
        expected_names = self.hf_state_names()
        seen: set[str] = set()
        for name, tensor in weights:
            if name.endswith("rotary_emb.inv_freq") or (name == "lm_head.weight" and self.config.tie_word_embeddings):
                continue
            if name not in expected_names:
                raise WeightLoadError(f"unexpected tensor {name!r}")
            if name in seen:
                raise WeightLoadError(f"tensor {name!r} given twice")
            prefix, proj, kind = _split_name(name)
            if proj in _MERGED and name not in params:
                linear = self.get_submodule(f"{prefix}.{_MERGED[proj]}")
                assert isinstance(linear, Linear)
                start, size = linear.slice_of(proj)
                target = getattr(linear, kind)[start : start + size]
            else:
                target = params[name]
            if tuple(tensor.shape) != tuple(target.shape):
                raise WeightLoadError(f"{name}: checkpoint shape {tuple(tensor.shape)} != model {tuple(target.shape)}")
            target.copy_(self.from_checkpoint(name, tensor))
            seen.add(name)
        missing = expected_names - seen
        if missing:
            raise WeightLoadError(f"checkpoint lacks {len(missing)} tensors, e.g. {sorted(missing)[:3]}")

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """Our weights under HF names, merged projections split back (views, no copies, except where a family
        stores a transformed value; tied lm_head excluded)."""
        out: dict[str, torch.Tensor] = {}
        for name, param in self.named_parameters():
            owner = self.get_submodule(name.rsplit(".", 1)[0])
            if isinstance(owner, Linear) and len(owner.names) > 1:
                prefix, kind = name.rsplit(".", 2)[0], name.rsplit(".", 1)[1]
                for proj in owner.names:
                    start, size = owner.slice_of(proj)
                    out[f"{prefix}.{proj}.{kind}"] = param[start : start + size]
            else:
                out[name] = self.to_checkpoint(name, param)
        return out

    def hf_state_names(self) -> set[str]:
        """The HF tensor names this model expects (tied lm_head excluded)."""
        return set(self.hf_state_dict())


def _split_name(name: str) -> tuple[str, str, str]:
    # "model.layers.3.self_attn.q_proj.weight" -> ("model.layers.3.self_attn", "q_proj", "weight")
    rest, kind = name.rsplit(".", 1)
    prefix, _, proj = rest.rpartition(".")
    return prefix, proj, kind
