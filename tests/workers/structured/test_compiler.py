"""GrammarCompiler and GrammarMasker on SmolLM2's real vocabulary (no model): compile, cache, limits, masks."""

import asyncio
import json
import threading

import pytest
import torch

from workers.structured.compiler import GrammarCompiler, GrammarError, GrammarSpec
from workers.structured.formats import response_format_spec
from workers.structured.matcher import GrammarMasker, GrammarState
from workers.tokenizer import Tokenizer

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}
EOS = 2


@pytest.fixture(scope="module")
def compiler(smollm2_tokenizer: Tokenizer) -> GrammarCompiler:
    c = GrammarCompiler(smollm2_tokenizer, smollm2_tokenizer.vocab_size, [EOS])
    yield c
    c.close()


def _spec(schema: dict) -> GrammarSpec:
    spec = response_format_spec({"type": "json_schema", "json_schema": {"name": "t", "schema": schema, "strict": True}})
    assert spec is not None
    return spec


def test_compile_is_cached_by_schema_hash(compiler: GrammarCompiler) -> None:
    spec = _spec({**SCHEMA, "title": "cache-test"})
    hits, compiled = compiler.stats.num_cache_hits, compiler.stats.num_compiled
    first = compiler.compile(spec)
    assert compiler.stats.num_compiled == compiled + 1
    again = compiler.compile(_spec({**SCHEMA, "title": "cache-test"}))  # an equal schema, a new object
    assert again is first and compiler.stats.num_cache_hits == hits + 1
    other = compiler.compile(_spec({**SCHEMA, "title": "cache-test-2"}))
    assert other is not first


def test_concurrent_requests_for_one_schema_compile_it_once(compiler: GrammarCompiler) -> None:
    spec = _spec({"type": "object", "properties": {"x": {"type": "number"}}, "title": "concurrent"})
    before = compiler.stats.num_compiled
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(compiler.compile(spec))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert compiler.stats.num_compiled == before + 1
    assert all(r is results[0] for r in results)


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json_schema", "json_schema": {"name": "bad", "schema": {"type": "objekt"}}},
        {"type": "json_schema", "json_schema": {"name": "bad", "schema": {"type": "object", "properties": 3}}},
        {"type": "json_schema", "json_schema": {"name": "bad name!", "schema": {"type": "object"}}},
        {"type": "json_schema"},
        {"type": "grammar", "grammar": ""},
        {"type": "xml"},
    ],
)
def test_malformed_response_formats_name_the_param(response_format: dict) -> None:
    with pytest.raises(GrammarError) as err:
        response_format_spec(response_format)
    assert err.value.param == "response_format"


@pytest.mark.parametrize(
    "spec",
    [
        GrammarSpec("ebnf", 'root ::= "a" | undefined_rule'),
        GrammarSpec("ebnf", "root ::= ("),
        GrammarSpec("json_schema", json.dumps({"$ref": "#/$defs/missing"})),
        GrammarSpec("json_schema", json.dumps({"type": "string", "pattern": "(unclosed"})),
    ],
)
def test_uncompilable_grammars_are_grammar_errors(compiler: GrammarCompiler, spec: GrammarSpec) -> None:
    with pytest.raises(GrammarError) as err:
        compiler.compile(spec)
    assert err.value.param == "response_format" and err.value.code == "invalid_grammar"
    assert "cc:" not in err.value.message  # xgrammar's source locations are trimmed off


def test_size_and_time_limits(smollm2_tokenizer: Tokenizer) -> None:
    small = GrammarCompiler(smollm2_tokenizer, smollm2_tokenizer.vocab_size, [EOS], max_source_bytes=100,
                            timeout_s=0.001)
    try:
        with pytest.raises(GrammarError) as err:
            small.compile(GrammarSpec("json_schema", json.dumps({"enum": ["x" * 200]})))
        assert err.value.code == "grammar_too_large"
        # A fresh compiler first builds its vocabulary tables (~0.25 s): far past a 1 ms limit.
        with pytest.raises(GrammarError) as err:
            asyncio.run(small.compile_async(GrammarSpec("json_object", "")))
        assert err.value.code == "grammar_too_complex" and err.value.param == "response_format"
        # the compile went on in the background: the next request for the schema gets it from the cache
        assert small.compile(GrammarSpec("json_object", "")) is small.compile(GrammarSpec("json_object", ""))
        assert small.stats.num_compiled == 1
    finally:
        small.close()


def test_masks_allow_exactly_the_grammar(compiler: GrammarCompiler, smollm2_tokenizer: Tokenizer) -> None:
    tok = smollm2_tokenizer
    text = '{"name": "Ann", "age": 31}'
    ids = tok.encode(text, add_special_tokens=False) + [EOS]
    constrained = GrammarState(compiler.compile(_spec(SCHEMA)))
    masker = GrammarMasker(tok.vocab_size)
    vocab_padded = tok.vocab_size + 64  # a model whose embedding is padded past the tokenizer's vocabulary
    for step, token in enumerate(ids):
        logits = torch.zeros(3, vocab_padded)  # row 1 constrained; rows 0 and 2 free
        masker.apply(logits, [None, constrained, None])
        assert torch.isfinite(logits[[0, 2]]).all(), "free rows are never masked"
        allowed = torch.isfinite(logits[1])
        assert allowed[token], f"step {step}: the schema's own text was masked"
        assert not allowed[tok.vocab_size :].any(), "padded ids are never allowed"
        if step == 0:
            assert allowed.sum() < 50, "only an object may start"
        if token == EOS:
            assert allowed.sum() == 1, "a complete grammar allows only its stop token"
        assert constrained.accept(token)
    assert constrained.is_terminated
    assert masker.num_steps == len(ids) and masker.seconds > 0


def test_state_rolls_back_to_the_sequence(compiler: GrammarCompiler, smollm2_tokenizer: Tokenizer) -> None:
    ids = smollm2_tokenizer.encode('{"name": "Bo", "age": 4}', add_special_tokens=False)
    state = GrammarState(compiler.compile(_spec(SCHEMA)))
    for t in ids[:5]:
        assert state.accept(t)
    state.sync(2)  # the sequence kept only 2 output tokens
    assert state.num_accepted == 2
    for t in ids[2:]:
        assert state.accept(t)
    assert not state.accept(ids[0]), "a wrong token is refused"
    assert state.failed


def test_all_of_object_branches_merge_into_one_object() -> None:
    from workers.structured.formats import merge_all_of

    a = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    b = {"type": "object", "properties": {"b": {"type": "integer"}}, "required": ["b"]}
    assert merge_all_of({"allOf": [a, b]}) == {"type": "object", "properties": {"a": {"type": "string"},
                                                                                  "b": {"type": "integer"}},
                                               "required": ["a", "b"]}
    clash = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert merge_all_of({"allOf": [a, clash]}) == {"allOf": [a, clash]}, "conflicting branches are left alone"
    closed = {**b, "additionalProperties": False}
    assert merge_all_of({"allOf": [a, closed]}) == {"allOf": [a, closed]}
    assert merge_all_of({"properties": {"x": {"allOf": [a, b]}}})["properties"]["x"]["required"] == ["a", "b"]


def test_strict_false_allows_properties_beyond_the_schema(compiler: GrammarCompiler, smollm2_tokenizer) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    extra = smollm2_tokenizer.encode('{"a": 1, "b": 2}', add_special_tokens=False) + [EOS]

    def accepts(strict: bool) -> bool:
        spec = response_format_spec({"type": "json_schema", "json_schema": {"name": "s", "schema": schema,
                                                                            "strict": strict}})
        state = GrammarState(compiler.compile(spec))
        return all(state.accept(t) for t in extra)

    assert accepts(strict=False) and not accepts(strict=True)
