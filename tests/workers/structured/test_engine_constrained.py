"""Constrained decoding in the real engine on SmolLM2 (fp32, one thread): masks applied in the same batched step as
free rows, so a mixed batch (constrained, free, an adapter) gives each request the tokens it gets alone; output ends
when the grammar completes; n > 1, logprobs, stop, prefix caching and preemption keep the grammar."""

import json
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
import torch

from workers.engine.config import EngineConfig
from workers.engine.llm_engine import LLMEngine
from workers.engine.sampling_params import SamplingParams
from workers.lora.synthetic import write_random_adapter
from workers.models.llama import LlamaForCausalLM
from workers.structured.compiler import GrammarCompiler
from workers.structured.formats import response_format_spec
from workers.tokenizer import Tokenizer

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("torch_one_thread")]

SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120},
                                           "pets": {"type": "array", "items": {"enum": ["cat", "dog"]},
                                                    "maxItems": 2}},
          "required": ["name", "age", "pets"], "additionalProperties": False}
ADAPTER = "0" * 31 + "a"
MakeEngine = Callable[..., LLMEngine]


@pytest.fixture(scope="module")
def grammar(smollm2_tokenizer: Tokenizer, smollm2_fp32: LlamaForCausalLM):
    compiler = GrammarCompiler(smollm2_tokenizer, smollm2_fp32.config.vocab_size, smollm2_tokenizer.eos_token_ids)
    spec = response_format_spec({"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}})
    yield compiler.compile(spec)
    compiler.close()


@pytest.fixture(scope="module")
def make_engine(smollm2_gguf_path: Path, smollm2_fp32: LlamaForCausalLM, smollm2_tokenizer: Tokenizer,
                tmp_path_factory: pytest.TempPathFactory) -> MakeEngine:
    store = tmp_path_factory.mktemp("adapters")
    write_random_adapter(store / ADAPTER, smollm2_fp32.config, rank=8, seed=3, b_std=0.05)

    def make(**kw: object) -> LLMEngine:
        kw.setdefault("num_kv_blocks", 96)
        cfg = EngineConfig(model=str(smollm2_gguf_path), dtype="float32", adapter_store=str(store), **kw)  # type: ignore[arg-type]
        return LLMEngine(cfg, model=smollm2_fp32, tokenizer=smollm2_tokenizer)

    return make


@pytest.fixture(scope="module")
def prompts(smollm2_tokenizer: Tokenizer) -> list[list[int]]:
    tok = smollm2_tokenizer
    questions = ["Describe a person as JSON.", "Tell me about your cat.", "Who are you? Answer in JSON."]
    return [tok.encode(tok.apply_chat_template([{"role": "user", "content": q}]), add_special_tokens=False)
            for q in questions]  # fmt: skip


def _text(tok: Tokenizer, ids: list[int]) -> str:
    return tok.decode(ids, skip_special_tokens=True)


def test_mixed_batch_matches_each_request_alone(make_engine: MakeEngine, prompts, grammar, smollm2_tokenizer) -> None:
    constrained = SamplingParams(temperature=0, max_tokens=60, grammar=grammar)
    free = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)
    jobs = [(prompts[0], constrained, None), (prompts[1], free, None), (prompts[2], constrained, ADAPTER),
            (prompts[2], free, ADAPTER), (prompts[1], constrained, None)]
    alone = [make_engine().generate([p], params, [adapter])[0][0] for p, params, adapter in jobs]
    together = make_engine().generate([j[0] for j in jobs], [j[1] for j in jobs], [j[2] for j in jobs])
    assert [t[0] for t in together] == alone
    eos = set(smollm2_tokenizer.eos_token_ids)
    for (_, params, _), ids in zip(jobs, alone, strict=True):
        if params.grammar is not None:
            assert ids[-1] in eos and not eos & set(ids[:-1]), "the output ends at the grammar's stop token"
            jsonschema.validate(json.loads(_text(smollm2_tokenizer, ids)), SCHEMA)
    assert alone[0] != alone[4] and alone[2] != make_engine().generate([prompts[2]], constrained)[0][0], (
        "the adapter and the prompt change the constrained output: the test compares something")


def test_grammar_ends_output_even_with_ignore_eos(make_engine: MakeEngine, prompts, grammar, smollm2_tokenizer):
    engine = make_engine()
    engine.add_request("g", prompts[0], SamplingParams(temperature=0, max_tokens=80, ignore_eos=True, grammar=grammar))
    deltas = []
    while engine.has_unfinished_requests():
        deltas += engine.step()
    assert deltas[-1].finish_reason == "stop" and len(deltas) < 80
    text = "".join(d.text for d in deltas)
    jsonschema.validate(json.loads(text), SCHEMA)  # no stop token text and nothing trailing


def test_n_choices_sampled_each_follow_the_grammar(make_engine: MakeEngine, prompts, grammar, smollm2_tokenizer):
    params = SamplingParams(n=3, temperature=1.2, seed=11, max_tokens=80, grammar=grammar, logprobs=True,
                            top_logprobs=5)
    engine = make_engine()
    engine.add_request("n", prompts[0], params)
    outs: dict[int, list] = {0: [], 1: [], 2: []}
    while engine.has_unfinished_requests():
        for d in engine.step():
            outs[d.index].append(d)
    texts = set()
    for deltas in outs.values():
        assert deltas[-1].finish_reason == "stop"
        text = "".join(d.text for d in deltas)
        jsonschema.validate(json.loads(text), SCHEMA)
        texts.add(text)
        for lp in (lp for d in deltas for lp in d.logprobs or []):
            assert lp.logprob > float("-inf") and all(v > float("-inf") for _, v in lp.top)
            assert len(lp.top) <= 5
    assert len(texts) > 1, "three seeded choices differ"


def test_preemption_and_prefix_cache_keep_the_grammar(make_engine: MakeEngine, prompts, grammar) -> None:
    params = SamplingParams(temperature=0, max_tokens=60, grammar=grammar)
    alone = [make_engine(enable_prefix_caching=False).generate([p], params)[0][0] for p in prompts]
    # 4-token blocks, a pool that holds the longest sequence but not all three: sequences are preempted and
    # recomputed mid-output, their matchers kept in step with the tokens they keep.
    tight = SamplingParams(temperature=0, max_tokens=max(len(o) for o in alone), grammar=grammar)
    blocks = -(-(max(len(p) for p in prompts) + tight.max_tokens) // 4)  # every request fits alone, not all three
    assert 3 * blocks > blocks + 8
    engine = make_engine(block_size=4, num_kv_blocks=blocks, enable_prefix_caching=True)
    assert [o[0] for o in engine.generate(prompts, tight)] == alone
    assert engine.stats()["num_preemptions"] > 0
    again = engine.generate(prompts[:1], tight)[0][0]  # the prompt's blocks now come from the prefix cache
    assert again == alone[0] and engine.stats()["prefix_cache_hits"] > 0


def test_stop_string_inside_constrained_output(make_engine: MakeEngine, prompts, grammar) -> None:
    engine = make_engine()
    engine.add_request("s", prompts[0], SamplingParams(temperature=0, max_tokens=60, grammar=grammar, stop=['"age"']))
    deltas = []
    while engine.has_unfinished_requests():
        deltas += engine.step()
    text = "".join(d.text for d in deltas)
    assert deltas[-1].finish_reason == "stop" and text.startswith('{"name": ') and '"age"' not in text
    assert torch.get_num_threads() == 1
