"""GGUF files of every family llama.cpp defines, against HF transformers on the same weights (fp32).

No GGUF of these families travels with the repo, so each test writes one from a tiny random transformers model the
way llama.cpp's convert_hf_to_gguf.py does: tensor names from the gguf package's own HF -> GGUF map, Q/K rows
permuted for llama, +1 folded into Gemma's norms, Llama 3's scaling as a rope_freqs tensor, Phi's LongRoPE factors
as rope_factors_long/short tensors, windows, soft-caps and RoPE bases as metadata. Our loader must undo all of it.
"""

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers

from workers.loader import load_model
from workers.loader.inspect import check_checkpoint
from workers.models.reference_run import SingleSequence

gguf = pytest.importorskip("gguf")
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("torch_one_thread")]

VOCAB = 320
COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)
LLAMA3 = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 32}
LONGROPE = {"rope_type": "longrope", "rope_theta": 10000.0, "original_max_position_embeddings": 32,
            "partial_rotary_factor": 0.75, "short_factor": [1.0 + 0.1 * i for i in range(6)],
            "long_factor": [1.0 + 0.5 * i for i in range(6)]}
FAMILIES: dict[str, tuple[Any, str, dict[str, Any]]] = {  # name -> (config class, GGUF arch, overrides)
    "llama3": (transformers.LlamaConfig, "llama", {"rope_parameters": LLAMA3}),
    "qwen3": (transformers.Qwen3Config, "qwen3", {"head_dim": 24}),
    "gemma2": (transformers.Gemma2Config, "gemma2", {"head_dim": 16, "query_pre_attn_scalar": 16,
                                                     "sliding_window": 16, "attn_logit_softcapping": 2.0,
                                                     "final_logit_softcapping": 3.0}),
    "gemma3": (transformers.Gemma3TextConfig, "gemma3", {
        "head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 16,
        "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
        "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
                            "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}}}),
    # Phi3Config takes the original context from its own top-level field: 32, so a 45-token prompt runs long factors
    "phi3": (transformers.Phi3Config, "phi3", {"pad_token_id": 0, "rope_parameters": LONGROPE,
                                               "original_max_position_embeddings": 32}),
}
PROMPT = torch.randint(3, VOCAB, (45,), generator=torch.Generator().manual_seed(5)).tolist()


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    # convert_hf_to_gguf.py's LlamaModel.permute: interleave each head's two rotary halves
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _llama3_factors(p: dict[str, Any], dim: int) -> np.ndarray:
    # convert_hf_to_gguf.py's rope_freqs for rope_type llama3: one divisor per frequency
    low_wavelen = p["original_max_position_embeddings"] / p["low_freq_factor"]
    high_wavelen = p["original_max_position_embeddings"] / p["high_freq_factor"]
    out = []
    for freq in 1.0 / (p["rope_theta"] ** (np.arange(0, dim, 2) / dim)):
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(p["factor"])
        else:
            smooth = (p["original_max_position_embeddings"] / wavelen - p["low_freq_factor"]) / (
                p["high_freq_factor"] - p["low_freq_factor"])
            out.append(1 / ((1 - smooth) / p["factor"] + smooth))
    return np.array(out, dtype=np.float32)


def _write_gguf(hf: Any, arch: str, path: Path) -> None:
    cfg = hf.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    rope = cfg.rope_parameters.get("full_attention", cfg.rope_parameters)
    rot = int(head_dim * rope.get("partial_rotary_factor", 1.0))
    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(rot)
    w.add_rope_freq_base(rope["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_bos_token_id(cfg.bos_token_id)
    w.add_eos_token_id(cfg.eos_token_id)
    if getattr(cfg, "sliding_window", None):
        w.add_sliding_window(cfg.sliding_window)
    if arch == "gemma3":
        w.add_sliding_window_pattern([t == "sliding_attention" for t in cfg.layer_types])
        w.add_rope_freq_base_swa(cfg.rope_parameters["sliding_attention"]["rope_theta"])
    if rope.get("rope_type") == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rope["factor"])
    if arch == "gemma2":
        w.add_attn_logit_softcapping(cfg.attn_logit_softcapping)
        w.add_final_logit_softcapping(cfg.final_logit_softcapping)
    if rope.get("rope_type") == "llama3":
        w.add_tensor("rope_freqs.weight", _llama3_factors(rope, head_dim))
    if rope.get("rope_type") == "longrope":
        original = rope["original_max_position_embeddings"]
        scale = cfg.max_position_embeddings / original
        w.add_rope_scaling_orig_ctx_len(original)
        w.add_rope_scaling_attn_factors(1.0 if scale <= 1 else math.sqrt(1 + math.log(scale) / math.log(original)))
        w.add_tensor("rope_factors_long.weight", np.array(rope["long_factor"], dtype=np.float32))
        w.add_tensor("rope_factors_short.weight", np.array(rope["short_factor"], dtype=np.float32))
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], cfg.num_hidden_layers)
    for hf_name, tensor in hf.state_dict().items():
        if hf_name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        base, suffix = hf_name.rsplit(".", 1)
        array = tensor.float().numpy().copy()
        if arch == "llama" and base.endswith("q_proj"):
            array = _permute(array, cfg.num_attention_heads)
        if arch == "llama" and base.endswith("k_proj"):
            array = _permute(array, cfg.num_key_value_heads)
        if arch.startswith("gemma") and hf_name.endswith("norm.weight"):
            array = array + 1.0
        w.add_tensor(f"{names.get_name(base)}.{suffix}", array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_gguf_family_matches_hf(name: str, tmp_path: Path) -> None:
    cls, arch, overrides = FAMILIES[name]
    config = cls(**(COMMON | overrides))
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    with torch.no_grad():  # every weight random and of a real size, norms around 1
        for pname, p in hf.named_parameters():
            p.copy_(1.0 + 0.2 * torch.randn_like(p) if "norm" in pname else 0.15 * torch.randn_like(p))
    path = tmp_path / f"{name}.gguf"
    _write_gguf(hf, arch, path)
    assert check_checkpoint(path).architecture == hf.config.model_type  # catalog_add's check reads it too
    ours = load_model(path, dtype=torch.float32)
    with torch.inference_mode():
        ref = hf(input_ids=torch.tensor([PROMPT])).logits[0].float()
    seq = SingleSequence(ours, num_blocks=16, block_size=8)
    logits = torch.cat([seq.forward(PROMPT[:30])] + [seq.forward([t]) for t in PROMPT[30:]])  # prefill, then decode
    assert ref.std().item() > 0.3
    assert (logits - ref).abs().max().item() <= 1e-4
