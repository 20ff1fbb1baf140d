"""Every model family against HF transformers (and peft), through the real engine, in fp32.

Per family, one tiny random-weight model built with transformers and saved with save_pretrained (no downloads), read
back by our HF-folder loader, and one engine: a batch of three prompts of different lengths (two share a prefix that
the prefix cache serves), prefilled in chunks (a small token budget), then 16 greedy decode steps through the paged
cache. The logits the engine sampled from must equal HF's full-sequence forward within 1e-4; sliding-window families
get prompts longer than their window. A random peft adapter (init_lora_weights=False) on every projection of each
family must match peft's merged model within 1e-3 through the same engine.
"""

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peft
import pytest
import torch
import transformers

from workers.engine.config import EngineConfig
from workers.engine.llm_engine import LLMEngine
from workers.engine.sampling_params import SamplingParams
from workers.loader import load_model
from workers.loader.inspect import check_checkpoint
from workers.lora.adapter import LoraAdapter
from workers.models.llama import LlamaForCausalLM
from workers.models.reference_run import run_single

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("torch_one_thread")]

VOCAB = 320
COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)
WINDOW = 16  # sliding families: every prompt (21..53 tokens) and decode step reaches past it
LONGROPE = {"rope_type": "longrope", "rope_theta": 10000.0, "original_max_position_embeddings": 32,
            "short_factor": [1.0 + 0.1 * i for i in range(6)], "long_factor": [1.0 + 0.5 * i for i in range(6)]}


@dataclass(frozen=True)
class Family:
    cls: type
    overrides: dict[str, Any]
    architecture: str
    sliding: bool = False


FAMILIES = {
    "llama3": Family(transformers.LlamaConfig, {"rope_parameters": {
        "rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32}}, "llama"),
    "qwen2.5-yarn": Family(transformers.Qwen2Config, {"rope_parameters": {
        "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64}}, "qwen2"),
    "qwen3": Family(transformers.Qwen3Config, {"head_dim": 24}, "qwen3"),
    "mistral": Family(transformers.MistralConfig, {"sliding_window": WINDOW}, "mistral", sliding=True),
    "gemma2": Family(transformers.Gemma2Config, {"head_dim": 16, "query_pre_attn_scalar": 24,
                                                 "sliding_window": WINDOW, "attn_logit_softcapping": 2.0,
                                                 "final_logit_softcapping": 3.0}, "gemma2", sliding=True),
    "gemma3": Family(transformers.Gemma3TextConfig, {
        "head_dim": 16, "query_pre_attn_scalar": 24, "sliding_window": WINDOW,
        "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
        "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
                            "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}},
    }, "gemma3_text", sliding=True),
    # Phi3Config reads the original context from its top-level field: 32, so every prompt runs the long factors
    "phi3": Family(transformers.Phi3Config, {"pad_token_id": 0, "original_max_position_embeddings": 32,
                                             "rope_parameters": dict(LONGROPE, partial_rotary_factor=0.75)}, "phi3"),
    "phi3-window": Family(transformers.Phi3Config, {"pad_token_id": 0, "sliding_window": WINDOW}, "phi3",
                          sliding=True),
}


def _random_ids(n: int, seed: int) -> list[int]:
    return torch.randint(3, VOCAB, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


SHARED = _random_ids(32, 0)  # four full 8-token blocks: the prefix cache serves them to the second prompt
PROMPTS = [SHARED + _random_ids(21, 1), SHARED + _random_ids(5, 2), _random_ids(21, 3)]  # 53, 37, 21 tokens
NUM_DECODE = 16
GREEDY = SamplingParams(temperature=0, max_tokens=NUM_DECODE + 1, ignore_eos=True)


def _tiny_hf(family: Family, folder: Path) -> transformers.PreTrainedModel:
    config = family.cls(**(COMMON | family.overrides))
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    with torch.no_grad():  # HF zero-inits biases and one-inits norms: randomise all so every weight matters
        for name, p in model.named_parameters():
            p.copy_(1.0 + 0.2 * torch.randn_like(p) if "norm" in name else 0.15 * torch.randn_like(p))
    model.save_pretrained(folder, safe_serialization=True)
    return model


class StandInTokenizer:
    """Random weights have no vocabulary: ids decode to numbers, and no EOS."""

    eos_token_ids: list[int] = []

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(f" {i}" for i in ids)


class LogitsRecorder:
    """Wraps the engine's sampler: keeps each request's logits rows in the order they were sampled."""

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler
        self.rows: dict[str, list[torch.Tensor]] = {}

    def __call__(self, logits: torch.Tensor, seqs: list) -> Any:
        for row, seq in zip(logits, seqs, strict=True):
            self.rows.setdefault(seq.request_id, []).append(row.detach().clone())
        return self.sampler(logits, seqs)


def _engine(model: LlamaForCausalLM, folder: Path, store: Path | None = None) -> tuple[LLMEngine, LogitsRecorder]:
    # 24 tokens a step: each prompt is prefilled over 2-3 chunks, riding along the others' chunks and decodes.
    # No speculation: every decode step is one sampled token, so the recorder sees the logits of each.
    cfg = EngineConfig(model=str(folder), dtype="float32", block_size=8, num_kv_blocks=64, max_num_batched_tokens=24,
                       adapter_store=str(store) if store else None, num_speculative_tokens=0)
    engine = LLMEngine(cfg, model=model, tokenizer=StandInTokenizer())  # type: ignore[arg-type]
    recorder = LogitsRecorder(engine.model_runner.sampler)
    engine.model_runner.sampler = recorder  # type: ignore[assignment]
    return engine, recorder


def _run(engine: LLMEngine, recorder: LogitsRecorder, prompts: list[list[int]], adapter: str | None = None,
         tag: str = "") -> list[tuple[list[int], list[int], torch.Tensor]]:
    """-> per prompt (prompt, generated tokens, the logits [17, V] they were sampled from)."""
    ids = [f"{tag}{i}" for i in range(len(prompts))]
    for rid, prompt in zip(ids, prompts, strict=True):
        engine.add_request(rid, prompt, GREEDY, adapter)
    outs: dict[str, list[int]] = {rid: [] for rid in ids}
    while engine.has_unfinished_requests():
        for delta in engine.step():
            outs[delta.request_id] += delta.new_token_ids
    return [(p, outs[r], torch.stack(recorder.rows.pop(r))) for p, r in zip(prompts, ids, strict=True)]


@torch.inference_mode()
def _check_against(hf: Any, runs: list[tuple[list[int], list[int], torch.Tensor]], tol: float) -> None:
    for prompt, generated, logits in runs:
        assert len(generated) == NUM_DECODE + 1 and logits.shape == (NUM_DECODE + 1, VOCAB)
        full = prompt + generated[:NUM_DECODE]  # the last sampled token is never fed back
        ref = hf(input_ids=torch.tensor([full])).logits[0].float()[len(prompt) - 1 :]
        assert ref.std().item() > 0.3  # logits of real magnitude, so the bound means something
        err = (logits - ref).abs().max().item()
        assert err <= tol, f"prompt of {len(prompt)}: max |ours - HF| = {err:.2e}"
        assert generated == ref.argmax(-1).tolist()


@pytest.fixture(scope="module", params=list(FAMILIES))
def family_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    family = FAMILIES[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    hf = _tiny_hf(family, folder)
    ours = load_model(folder, dtype=torch.float32)
    return request.param, family, folder, hf, ours


def test_family_matches_hf_through_the_engine(family_model) -> None:
    name, family, folder, hf, ours = family_model
    cfg = ours.config
    assert cfg.architecture == family.architecture
    if cfg.rope_scaling is not None and cfg.rope_scaling["rope_type"] == "longrope":
        # every checked sequence outgrows the original context, so HF runs the long factors on all its positions
        assert cfg.rope_scaling["original_max_position_embeddings"] < min(map(len, PROMPTS)) + NUM_DECODE
    if family.sliding:
        assert cfg.sliding_window == WINDOW and min(map(len, PROMPTS)) > WINDOW
        assert cfg.max_position_embeddings >= 256  # a window, not a cap on the context
    with torch.inference_mode():  # every prefill position, one sequence through the paged cache
        ref = hf(input_ids=torch.tensor([PROMPTS[0]])).logits[0].float()
    assert (run_single(ours, PROMPTS[0], num_blocks=16, block_size=8) - ref).abs().max().item() <= 1e-4
    engine, recorder = _engine(ours, folder)
    _check_against(hf, _run(engine, recorder, PROMPTS[:1], tag="warm"), 1e-4)
    before = engine.stats()["prefix_cache_hits"]
    runs = _run(engine, recorder, PROMPTS, tag="batch")
    assert engine.stats()["prefix_cache_hits"] - before >= 2 * len(SHARED)  # tokens prompts 0 and 1 did not recompute
    _check_against(hf, runs, 1e-4)


def _peft_adapter(hf: Any, family: Family, store: Path) -> tuple[Any, str]:
    targets = sorted({n.rsplit(".", 1)[-1] for n, m in hf.named_modules()
                      if isinstance(m, torch.nn.Linear) and "layers" in n})  # fmt: skip
    config = peft.LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules=targets)
    torch.manual_seed(1)
    model = peft.get_peft_model(hf, config)
    with torch.no_grad():  # kaiming-uniform B would swamp the base model
        for pname, p in model.named_parameters():
            if "lora_B" in pname:
                p.mul_(0.2)
    uid = "0" * 31 + "1"
    saved = store.parent / "peft-saved"
    model.save_pretrained(saved)
    (store / uid).mkdir(parents=True)
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(saved / f, store / uid / f)
    return model, uid


def test_family_lora_matches_peft_merged(family_model, tmp_path: Path) -> None:
    name, family, folder, hf, ours = family_model
    model, uid = _peft_adapter(copy.deepcopy(hf), family, tmp_path / "store")
    adapter = LoraAdapter.from_folder(uid, tmp_path / "store" / uid, ours.config, torch.float32)
    assert adapter.targets == set(ours.config.projection_dims())  # every projection, fused ones by their own name
    engine, recorder = _engine(ours, folder, tmp_path / "store")
    runs = _run(engine, recorder, PROMPTS[1:], adapter=uid, tag="lora")
    with torch.inference_mode():  # the adapter matters: the base model's logits are far from these
        base = hf(input_ids=torch.tensor([runs[0][0]])).logits[0, -1].float()
    assert (runs[0][2][0] - base).abs().max().item() > 0.1
    merged = model.merge_and_unload().eval()
    _check_against(merged, runs, 1e-3)


def test_dynamic_ntk_equals_hf_at_the_full_served_context(tmp_path: Path) -> None:
    # Dynamic NTK rescales with the sequence length in transformers; a paged cache can't re-rotate stored keys, so we
    # fix it at the served context (configured 32 x factor 2 = 64 tokens), where both must agree exactly.
    family = Family(transformers.LlamaConfig, {"max_position_embeddings": 32, "rope_parameters": {
        "rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}}, "llama")
    hf = _tiny_hf(family, tmp_path / "dynamic")
    ours = load_model(tmp_path / "dynamic", dtype=torch.float32)
    assert ours.config.max_position_embeddings == 64
    ids = _random_ids(64, 9)
    with torch.inference_mode():
        ref = hf(input_ids=torch.tensor([ids])).logits[0].float()
    assert (run_single(ours, ids, num_blocks=8, block_size=8) - ref).abs().max().item() <= 1e-4


def test_gemma3_multimodal_checkpoint_serves_its_language_model(tmp_path: Path) -> None:
    # Gemma 3 4B/12B/27B ship as Gemma3ForConditionalGeneration: text logits must equal that model's on text input
    text = dict(COMMON, head_dim=16, query_pre_attn_scalar=24, sliding_window=WINDOW,
                layer_types=["sliding_attention", "full_attention", "sliding_attention"])
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                  patch_size=14)  # fmt: skip
    config = transformers.Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    hf = transformers.Gemma3ForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            p.copy_(1.0 + 0.2 * torch.randn_like(p) if "norm" in name else 0.15 * torch.randn_like(p))
    hf.save_pretrained(tmp_path / "gemma3mm", safe_serialization=True)
    assert check_checkpoint(tmp_path / "gemma3mm").architecture == "gemma3_text"  # what catalog_add asks
    ours = load_model(tmp_path / "gemma3mm", dtype=torch.float32)
    assert ours.config.sliding_window == WINDOW
    with torch.inference_mode():
        ref = hf(input_ids=torch.tensor([PROMPTS[0]])).logits[0].float()
    assert ref.std().item() > 0.3
    assert (run_single(ours, PROMPTS[0], num_blocks=16, block_size=8) - ref).abs().max().item() <= 1e-4
    # A peft adapter on the language model's projections (peft names them under model.language_model)
    targets = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
    lora = peft.get_peft_model(copy.deepcopy(hf), peft.LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                                                   target_modules=targets))
    with torch.no_grad():
        for pname, p in lora.named_parameters():
            if "lora_B" in pname:
                p.mul_(0.2)
    lora.save_pretrained(tmp_path / "peft")
    store = tmp_path / "store"
    uid = "0" * 31 + "2"
    (store / uid).mkdir(parents=True)
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(tmp_path / "peft" / f, store / uid / f)
    adapter = LoraAdapter.from_folder(uid, store / uid, ours.config, torch.float32)
    assert adapter.targets == set(ours.config.projection_dims())
    engine, recorder = _engine(ours, tmp_path / "gemma3mm", store)
    _check_against(lora.merge_and_unload().eval(), _run(engine, recorder, PROMPTS[1:], adapter=uid, tag="mm"), 1e-3)
