"""Our Llama-family model against HF transformers (a test-only dependency) on the same weights, in fp32.

SmolLM2: the real dequantized GGUF weights, loaded into transformers' LlamaForCausalLM from our own state dict.
Tiny Llama / Mistral / Qwen2: random HF models saved with save_pretrained and read back by our HF-folder loader.
"""

from pathlib import Path

import pytest
import torch
import transformers
from transformers.initialization import no_init_weights

from workers.loader import load_model
from workers.models.llama import LlamaForCausalLM
from workers.models.reference_run import SingleSequence, greedy, run_single
from workers.tokenizer import Tokenizer

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("torch_one_thread")]

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Tell me about the sea."}],
]
RAW = [
    "def fibonacci(n):\n",
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined "
    "movable metal type, oil-based inks and a wooden press adapted from wine making. Within fifty years",
]


def _hf_from_ours(ours: LlamaForCausalLM) -> transformers.PreTrainedModel:
    cfg = ours.config.to_hf()
    cls = {"llama": transformers.LlamaConfig, "mistral": transformers.MistralConfig, "qwen2": transformers.Qwen2Config}
    hf_config = cls[cfg.pop("model_type")](**cfg)
    hf_config._attn_implementation = "eager"
    with no_init_weights():  # every weight is overwritten below; HF's random init of 135M params costs ~9 s here
        hf = transformers.AutoModelForCausalLM.from_config(hf_config, dtype=torch.float32).eval()
    state = ours.hf_state_dict()
    if ours.config.tie_word_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    hf.load_state_dict(state, strict=True)
    return hf


@torch.inference_mode()
def _hf_logits(hf: transformers.PreTrainedModel, ids: list[int]) -> torch.Tensor:
    return hf(input_ids=torch.tensor([ids])).logits[0].float()


@torch.inference_mode()
def _hf_greedy(hf: transformers.PreTrainedModel, ids: list[int], n: int) -> list[int]:
    # A plain KV-cached loop (generate() would stop at EOS; we want exactly n tokens).
    out = hf(input_ids=torch.tensor([ids]), use_cache=True)
    tokens: list[int] = []
    while True:
        tokens.append(int(out.logits[0, -1].argmax()))
        if len(tokens) == n:
            return tokens
        out = hf(input_ids=torch.tensor([[tokens[-1]]]), cache=out.cache, use_cache=True)


@pytest.fixture(scope="module")
def hf_smollm2(smollm2_fp32: LlamaForCausalLM) -> transformers.PreTrainedModel:
    hf = _hf_from_ours(smollm2_fp32)
    assert torch.equal(hf.lm_head.weight, smollm2_fp32.model.embed_tokens.weight)  # tied, as in the GGUF
    return hf


@pytest.fixture(scope="module")
def prompts(smollm2_tokenizer: Tokenizer) -> list[list[int]]:
    chats = [smollm2_tokenizer.encode(smollm2_tokenizer.apply_chat_template(c), add_special_tokens=False) for c in CHATS]
    return chats + [smollm2_tokenizer.encode(t) for t in RAW]


def test_smollm2_logits_match_hf(smollm2_fp32: LlamaForCausalLM, hf_smollm2, prompts: list[list[int]]) -> None:
    for ids in prompts:
        ours = run_single(smollm2_fp32, ids, num_blocks=16, block_size=16)
        ref = _hf_logits(hf_smollm2, ids)
        assert ours.shape == ref.shape == (len(ids), 49152)
        assert (ours - ref).abs().max().item() <= 1e-3


def test_smollm2_greedy_64_tokens_match_hf(
    smollm2_fp32: LlamaForCausalLM, hf_smollm2, prompts: list[list[int]], smollm2_tokenizer: Tokenizer
) -> None:
    # ours: one prefill, then 63 single-token decode steps through the paged cache; HF: its own KV-cached loop
    ours = greedy(smollm2_fp32, prompts[0], 64, block_size=16)
    assert ours == _hf_greedy(hf_smollm2, prompts[0], 64)
    text = smollm2_tokenizer.decode(ours)
    assert "Paris" in text and len(set(ours)) > 8, text  # a real answer, not a stuck token


def test_bf16_is_close_to_fp32(smollm2_bf16: LlamaForCausalLM, smollm2_fp32: LlamaForCausalLM, prompts) -> None:
    assert smollm2_bf16.model.layers[0].self_attn.qkv_proj.weight.dtype == torch.bfloat16
    ids = prompts[3]
    lo = run_single(smollm2_bf16, ids, num_blocks=16, block_size=16)
    hi = run_single(smollm2_fp32, ids, num_blocks=16, block_size=16)
    assert lo.dtype == torch.float32 and torch.isfinite(lo).all()
    # bf16 keeps 8 mantissa bits over 30 layers: loose bounds. Measured on this prompt: max abs 0.75, mean abs
    # 0.13, cosine >= 0.998, argmax agreeing at 100% of positions.
    cos = torch.nn.functional.cosine_similarity(lo, hi, dim=-1)
    assert cos.min().item() > 0.98
    assert (lo - hi).abs().mean().item() < 1.0
    assert (lo.argmax(-1) == hi.argmax(-1)).float().mean().item() >= 0.8


def _tiny_hf(kind: str, tmp_path: Path, **overrides) -> tuple[Path, transformers.PreTrainedModel]:
    common = dict(
        vocab_size=320, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
    )
    cls = {"llama": transformers.LlamaConfig, "mistral": transformers.MistralConfig, "qwen2": transformers.Qwen2Config}
    config = cls[kind](**(common | overrides))
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    with torch.no_grad():  # HF zero-inits biases and one-inits norms: randomise all so every weight matters
        for name, p in model.named_parameters():
            p.copy_(1.0 + 0.2 * torch.randn_like(p) if "norm" in name else 0.15 * torch.randn_like(p))
    folder = tmp_path / kind
    model.save_pretrained(folder, safe_serialization=True)
    return folder, model


@pytest.mark.parametrize(
    ("kind", "overrides"),
    [
        ("llama", {"attention_bias": True, "mlp_bias": True}),
        ("llama", {"tie_word_embeddings": True, "head_dim": 32}),  # head_dim != hidden / heads
        ("mistral", {"sliding_window": None}),
        ("qwen2", {"tie_word_embeddings": True}),
    ],
)
def test_tiny_hf_folder_matches_hf(kind: str, overrides: dict, tmp_path: Path) -> None:
    folder, hf = _tiny_hf(kind, tmp_path, **overrides)
    ours = load_model(folder, dtype=torch.float32)
    assert ours.config.architecture == kind
    ids = torch.randint(0, 320, (40,), generator=torch.Generator().manual_seed(1)).tolist()
    ref = _hf_logits(hf, ids)
    assert ref.std().item() > 0.5  # logits of real magnitude, so 1e-4 is a meaningful bound
    assert (run_single(ours, ids, num_blocks=8, block_size=8) - ref).abs().max().item() <= 1e-4
    # The decode path: prefill 25 tokens, then one token per step through the paged cache.
    seq = SingleSequence(ours, num_blocks=8, block_size=8)
    steps = [seq.forward(ids[:25])] + [seq.forward([t]) for t in ids[25:]]
    assert (torch.cat(steps) - ref).abs().max().item() <= 1e-4
