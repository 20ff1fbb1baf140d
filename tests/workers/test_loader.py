"""Loaders: GGUF metadata and dequantization (checked against transformers' independent GGUF code), HF folders,
random models, and clear errors for checkpoints we can't run."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from workers.loader import CheckpointError, GGUFError, build_random_model, load_config, load_model
from workers.loader.gguf_file import open_gguf
from workers.model_config import ModelConfig, UnsupportedModelError
from workers.models.llama import LlamaForCausalLM, WeightLoadError
from workers.models.reference_run import run_single

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TINY = ModelConfig(
    architecture="llama", vocab_size=128, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4,
    num_kv_heads=2, head_dim=8, rope_theta=10000.0, rms_norm_eps=1e-5, max_position_embeddings=64,
    tie_word_embeddings=False,
)


@pytest.mark.slow
def test_smollm2_config_facts(smollm2_fp32: LlamaForCausalLM) -> None:
    cfg = smollm2_fp32.config
    assert (cfg.architecture, cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads) == (
        "llama", 30, 576, 9, 3)
    assert (cfg.vocab_size, cfg.head_dim, cfg.intermediate_size, cfg.rope_theta) == (49152, 64, 1536, 1e5)
    assert cfg.tie_word_embeddings and smollm2_fp32.lm_head is smollm2_fp32.model.embed_tokens
    assert (cfg.bos_token_id, cfg.eos_token_ids) == (1, [2])
    n_params = sum(p.numel() for p in smollm2_fp32.parameters())
    assert n_params == 134_515_008  # every value in the file, counted once (tied head)


@pytest.mark.slow
def test_gguf_dequant_and_unpermute_match_transformers(smollm2_gguf_path: Path, smollm2_fp32: LlamaForCausalLM) -> None:
    # transformers carries its own torch dequantizer and llama.cpp reverse permutation: an independent reference.
    from transformers.integrations.gguf.dequant import dequantize as hf_dequantize
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    reader = open_gguf(smollm2_gguf_path)
    wanted = {"token_embd.weight": "model.embed_tokens.weight",
              "blk.0.attn_q.weight": "model.layers.0.self_attn.q_proj.weight",
              "blk.7.attn_k.weight": "model.layers.7.self_attn.k_proj.weight",
              "blk.7.ffn_down.weight": "model.layers.7.mlp.down_proj.weight"}  # Q8_0 and Q4_1; F32 is a copy
    processor = LlamaTensorProcessor({"num_attention_heads": 9, "num_key_value_heads": 3})
    ours = smollm2_fp32.hf_state_dict()  # what load_model put in the model, merged projections split back
    for t in reader.tensors:
        if t.name not in wanted:
            continue
        shape = [int(d) for d in reversed(t.shape)]
        flat = hf_dequantize(torch.from_numpy(np.array(t.data).reshape(-1).view(np.uint8)), int(t.tensor_type))
        ref = processor.process(flat.reshape(shape).numpy(), t.name).weights
        assert torch.equal(ours[wanted[t.name]], torch.as_tensor(ref)), t.name


def test_build_random_model_is_seeded_and_runs() -> None:
    a = build_random_model(TINY, dtype=torch.float32, seed=3)
    b = build_random_model(TINY, dtype=torch.float32, seed=3)
    c = build_random_model(TINY, dtype=torch.float32, seed=4)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb) and not torch.equal(pa, pc), name
    logits = run_single(a, list(range(20)), num_blocks=4, block_size=8)
    assert logits.shape == (20, 128) and torch.isfinite(logits).all()
    half = build_random_model(TINY, dtype=torch.bfloat16, seed=3)
    assert all(p.dtype == torch.bfloat16 for p in half.parameters()) and half.cos_sin.dtype == torch.float32


def _write_folder(folder: Path, config: dict, tensors: dict[str, torch.Tensor]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "model.safetensors"))
    return folder


def _tiny_hf_config(**overrides: object) -> dict:
    return {"model_type": "llama", "vocab_size": 128, "hidden_size": 32, "intermediate_size": 48,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
            "max_position_embeddings": 64} | overrides


def test_hf_folder_roundtrip_and_generation_config_eos(tmp_path: Path) -> None:
    src = build_random_model(TINY, dtype=torch.float32, seed=1)
    folder = _write_folder(tmp_path / "m", _tiny_hf_config(eos_token_id=2), src.hf_state_dict())
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 7]}))
    loaded = load_model(folder, dtype=torch.float32)
    assert loaded.config.eos_token_ids == [2, 7]
    for (name, p), q in zip(src.named_parameters(), loaded.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_hf_folder_errors(tmp_path: Path) -> None:
    state = build_random_model(TINY, dtype=torch.float32).hf_state_dict()
    missing = {k: v for k, v in state.items() if not k.endswith("k_proj.weight")}
    with pytest.raises(WeightLoadError, match="lacks"):
        load_model(_write_folder(tmp_path / "missing", _tiny_hf_config(), missing))
    wrong = dict(state, **{"model.norm.weight": torch.ones(31)})
    with pytest.raises(WeightLoadError, match="shape"):
        load_model(_write_folder(tmp_path / "shape", _tiny_hf_config(), wrong))
    extra = dict(state, **{"model.layers.0.mlp.experts.weight": torch.ones(3)})
    with pytest.raises(WeightLoadError, match="unexpected"):
        load_model(_write_folder(tmp_path / "extra", _tiny_hf_config(), extra))
    with pytest.raises(UnsupportedModelError, match="gpt_neox"):
        load_config(_write_folder(tmp_path / "arch", _tiny_hf_config(model_type="gpt_neox"), {}))
    scaled = _tiny_hf_config(rope_scaling={"rope_type": "xpos", "factor": 8.0})  # a scaling nobody here implements
    with pytest.raises(UnsupportedModelError, match="xpos"):
        load_config(_write_folder(tmp_path / "rope", scaled, {}))
    with pytest.raises(CheckpointError, match="safetensors"):
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "config.json").write_text(json.dumps(_tiny_hf_config()))
        load_model(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="neither"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "badjson").mkdir()
    (tmp_path / "badjson" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        load_model(tmp_path / "badjson")


def test_corrupt_gguf_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "junk.gguf"
    bad.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    with pytest.raises(GGUFError):
        load_model(bad)


def test_llama3_rope_scaling_loads_and_keeps_its_context(tmp_path: Path) -> None:
    # Llama 3.1's config.json layout (transformers < 5): rope_theta beside rope_scaling with "rope_type": "llama3"
    llama31 = _tiny_hf_config(max_position_embeddings=131072, rope_theta=500000.0, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192})
    cfg = load_config(_write_folder(tmp_path / "llama31", llama31, {}))
    assert (cfg.rope_theta, cfg.max_position_embeddings) == (500000.0, 131072)
    assert cfg.rope_scaling is not None and cfg.rope_scaling["rope_type"] == "llama3"
    # Qwen 2.5's 128k recipe: yarn over its 32k context; "type" is the older spelling of "rope_type"
    qwen = ModelConfig.from_hf(_tiny_hf_config(model_type="qwen2", max_position_embeddings=32768, rope_scaling={
        "type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}))
    assert qwen.max_position_embeddings == 131072 and qwen.rope_scaling["rope_type"] == "yarn"  # type: ignore[index]


def test_mistral_sliding_window_is_a_window_not_a_context_cap() -> None:
    cfg = ModelConfig.from_hf(_tiny_hf_config(model_type="mistral", max_position_embeddings=32768,
                                              sliding_window=4096))
    assert cfg.max_position_embeddings == 32768
    assert cfg.sliding_window == 4096 and [cfg.layer_window(i) for i in range(2)] == [4096, 4096]
    qwen = ModelConfig.from_hf(_tiny_hf_config(model_type="qwen2", sliding_window=16, use_sliding_window=False))
    assert qwen.max_position_embeddings == 64 and qwen.attention_bias and not qwen.o_proj_bias
    assert qwen.sliding_window is None and qwen.layer_window(0) is None
    gemma2 = ModelConfig.from_hf(_tiny_hf_config(model_type="gemma2", sliding_window=8, num_hidden_layers=4))
    assert [gemma2.layer_window(i) for i in range(4)] == [8, None, 8, None]
    assert gemma2.tie_word_embeddings and gemma2.hidden_act == "gelu_pytorch_tanh"


def test_gemma3_multimodal_config_is_served_as_its_text_model() -> None:
    # gemma-3-4b-it's config.json: text_config is a diff against Gemma3TextConfig's defaults
    cfg = ModelConfig.from_hf({"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
                               "eos_token_id": [1, 106], "text_config": {
                                   "hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
                                   "num_hidden_layers": 34, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                                   "sliding_window": 1024}, "vision_config": {"model_type": "siglip_vision_model"}})
    assert (cfg.architecture, cfg.num_layers, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) == (
        "gemma3_text", 34, 8, 4, 256)
    assert (cfg.vocab_size, cfg.max_position_embeddings, cfg.sliding_window, cfg.eos_token_ids) == (
        262208, 131072, 1024, [1, 106])  # its 128k context is already the scaled one
    assert cfg.rope_scaling == {"rope_type": "linear", "factor": 8.0, "original_max_position_embeddings": 131072,
                                "max_position_embeddings": 131072}
    assert (cfg.rope_theta, cfg.local_rope_theta, cfg.local_rope_scaling) == (1e6, 10000.0, None)
    assert [cfg.layer_window(i) for i in range(6)] == [1024] * 5 + [None] and cfg.tie_word_embeddings
