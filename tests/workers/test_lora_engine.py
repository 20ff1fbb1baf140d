"""Multi-LoRA through the real engine on SmolLM2 (fp32) against peft's merged model (transformers + peft).

Three random peft adapters (init_lora_weights=False, so B is not zero) with different ranks, alphas, rslora and
target modules, saved with save_pretrained into an adapter store and loaded by the engine from there."""

import shutil
from pathlib import Path

import peft
import pytest
import torch
import transformers

from workers.engine.config import EngineConfig
from workers.engine.llm_engine import LLMEngine
from workers.engine.sampling_params import InvalidRequestError, SamplingParams
from workers.loader import load_model
from workers.lora.manager import LoraManager
from workers.models.llama import LlamaForCausalLM
from workers.models.quant_linear import QuantLinear
from workers.tokenizer import Tokenizer

# One torch thread: with two OpenMP threads on the shared 2-core box this file took 4.3 min (load ~9), the logits
# test alone 147 s.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("torch_one_thread")]

ADAPTERS = {
    "a1": peft.LoraConfig(r=8, lora_alpha=16, init_lora_weights=False,
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    "a2": peft.LoraConfig(r=4, lora_alpha=32, use_rslora=True, init_lora_weights=False,
                          target_modules=["q_proj", "v_proj"]),
    "a3": peft.LoraConfig(r=16, lora_alpha=8, init_lora_weights=False, target_modules=["o_proj", "gate_proj",
                                                                                       "down_proj"]),
}  # fmt: skip
UIDS = {name: f"{i:032x}" for i, name in enumerate(ADAPTERS, start=1)}
TEXTS = [
    ("The capital of France is", None),
    ("def fibonacci(n):\n", "a1"),
    ("Once upon a time, in a small village by the sea, there lived", "a2"),
    ("The three primary colours are", "a3"),
    ("Water boils at", "a1"),
]


@pytest.fixture(scope="module")
def peft_model(smollm2_fp32: LlamaForCausalLM, tmp_path_factory: pytest.TempPathFactory):
    cfg = smollm2_fp32.config.to_hf()
    cfg.pop("model_type")
    hf_config = transformers.LlamaConfig(**cfg)
    hf_config._attn_implementation = "eager"
    hf = transformers.LlamaForCausalLM(hf_config).eval()
    missing, unexpected = hf.load_state_dict(smollm2_fp32.hf_state_dict(), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    hf.tie_weights()
    model = None
    torch.manual_seed(0)
    for name, config in ADAPTERS.items():
        model = peft.get_peft_model(hf, config, adapter_name=name) if model is None else model
        if name not in model.peft_config:
            model.add_adapter(name, config)
    with torch.no_grad():  # kaiming-uniform B would swamp the base model; keep the adapters random but sane
        for pname, p in model.named_parameters():
            if "lora_B" in pname:
                p.mul_(0.05)
    store = tmp_path_factory.mktemp("adapter-store")
    saved = tmp_path_factory.mktemp("peft-saved")
    model.save_pretrained(saved)
    for name, uid in UIDS.items():
        src = saved / name  # peft saves a non-"default" adapter in a folder named after it
        (store / uid).mkdir()
        for f in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy(src / f, store / uid / f)
    return model.eval(), store


@torch.inference_mode()
def _peft_logits(model, ids: list[int], adapter: str | None) -> torch.Tensor:
    if adapter is None:
        with model.disable_adapter():
            return model(input_ids=torch.tensor([ids])).logits[0].float()
    model.set_adapter(adapter)
    model.merge_adapter([adapter])  # peft's merged model: W + scale·B·A
    try:
        return model(input_ids=torch.tensor([ids])).logits[0].float()
    finally:
        model.unmerge_adapter()


def _engine(model: LlamaForCausalLM, tok: Tokenizer, store: Path, max_loras: int) -> LLMEngine:
    config = EngineConfig(model="smollm2", dtype="float32", max_loras=max_loras, max_cpu_loras=2, max_lora_rank=16,
                          adapter_store=str(store), num_kv_blocks=128, max_num_batched_tokens=512)
    return LLMEngine(config, model=model, tokenizer=tok)


def _prompts(tok: Tokenizer) -> list[list[int]]:
    return [tok.encode(text) for text, _ in TEXTS]


def test_mixed_batch_logits_match_peft_merged(smollm2_fp32, smollm2_tokenizer, peft_model) -> None:
    model, store = peft_model
    engine = _engine(smollm2_fp32, smollm2_tokenizer, store, max_loras=4)
    prompts = _prompts(smollm2_tokenizer)
    captured: list[torch.Tensor] = []
    handle = smollm2_fp32.register_forward_hook(lambda _m, _i, out: captured.append(out.clone()))
    try:
        for i, (ids, (_, adapter)) in enumerate(zip(prompts, TEXTS, strict=True)):
            engine.add_request(f"r{i}", ids, SamplingParams(max_tokens=1, temperature=0), UIDS.get(adapter))
        engine.step()  # one prefill step holds every prompt, in admission order
    finally:
        handle.remove()
    hidden = captured[0]
    assert hidden.shape[0] == sum(map(len, prompts))
    logits = smollm2_fp32.compute_logits(hidden)
    start = 0
    for ids, (_, adapter) in zip(prompts, TEXTS, strict=True):
        ours = logits[start : start + len(ids)]
        start += len(ids)
        ref = _peft_logits(model, ids, adapter)
        torch.testing.assert_close(ours, ref, atol=1e-3, rtol=0, msg=lambda m, a=adapter: f"adapter {a}: {m}")
    # The adapters really change the model: each one's logits differ from the base's by far more than 1e-3.
    base = _peft_logits(model, prompts[1], None)
    assert (base - _peft_logits(model, prompts[1], "a1")).abs().max() > 0.1


def _greedy(engine: LLMEngine, prompts: list[list[int]], adapters: list[str | None]) -> list[list[int]]:
    params = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)
    out = engine.generate(prompts, params, [UIDS.get(a) if a else None for a in adapters])
    return [choices[0] for choices in out]


def test_greedy_mixed_equals_alone_and_survives_slot_swaps(smollm2_fp32, smollm2_tokenizer, peft_model) -> None:
    _, store = peft_model
    prompts = _prompts(smollm2_tokenizer)
    adapters = [a for _, a in TEXTS]
    engine = _engine(smollm2_fp32, smollm2_tokenizer, store, max_loras=4)
    alone = [_greedy(engine, [p], [a])[0] for p, a in zip(prompts, adapters, strict=True)]
    assert len({tuple(t) for t in alone}) == len(alone)
    assert _greedy(engine, prompts, adapters) == alone
    # One slot for three adapters (and two host-cache entries): requests wait their turn, adapters swap in and out.
    small = _engine(smollm2_fp32, smollm2_tokenizer, store, max_loras=1)
    assert _greedy(small, prompts, adapters) == alone
    assert small.lora_manager.num_slot_loads >= 3
    assert small.lora_manager.num_disk_loads >= 3


def test_unknown_adapter_is_refused(smollm2_fp32, smollm2_tokenizer, peft_model) -> None:
    _, store = peft_model
    engine = _engine(smollm2_fp32, smollm2_tokenizer, store, max_loras=2)
    for uid in ("f" * 32, "../" + UIDS["a1"], ""):
        with pytest.raises(InvalidRequestError, match="does not exist") as err:
            engine.add_request("x", [1, 2, 3], SamplingParams(max_tokens=1), uid)
        assert err.value.code == "model_not_found"


@pytest.mark.parametrize("lens", [[3, 2, 4, 1, 2], [3, 9, 9, 9, 2]])  # decode-like runs (grouped) | long runs
def test_int4_linears_add_each_tokens_delta(smollm2_gguf_path, peft_model, lens: list[int]) -> None:
    # QuantLinear calls the same hook as Linear: on the real int4 SmolLM2, each of a layer's four quantized
    # projections gets exactly x·Aᵀ·Bᵀ·scale of each token's adapter on top of its own output. (Whole-model logits
    # can't show this at 1e-3: the int4 kernel rounds activations to bf16 in every layer, which turns an fp32
    # summation-order difference of one ulp into 0.3 in a logit.)
    _, store = peft_model
    int4 = load_model(smollm2_gguf_path, torch.float32, quantize="int4")
    lora = LoraManager(int4.config, max_loras=4, max_cpu_loras=4, max_lora_rank=16, store=store)
    seqs = [None, UIDS["a1"], UIDS["a2"], UIDS["a3"], UIDS["a1"]]  # a1 twice, apart
    hook = lora.prepare(seqs, lens)
    assert hook is not None
    layer_idx = 5
    layer = int4.model.layers[layer_idx]
    g = torch.Generator().manual_seed(0)
    for module in (layer.self_attn.qkv_proj, layer.self_attn.o_proj, layer.mlp.gate_up_proj, layer.mlp.down_proj):
        assert isinstance(module, QuantLinear)
        x = torch.randn(sum(lens), module.packed.in_features, generator=g)
        want = module(x).double()
        t = 0
        for uid, n in zip(seqs, lens, strict=True):
            adapter = lora.get(uid) if uid is not None else None
            for name in module.names if adapter is not None else ():
                if name in adapter.targets:
                    a, b = adapter.weights[(layer_idx, name)]
                    start, size = module.slice_of(name)
                    delta = x[t : t + n].double() @ a.double().t() @ b.double().t() * adapter.scale
                    want[t : t + n, start : start + size] += delta
            t += n
        got = module(x, hook)
        torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=1e-4)
        assert (got.double() - module(x).double()).abs().max() > 1e-2  # the adapters do change these outputs
