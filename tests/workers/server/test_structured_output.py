"""response_format against a real worker on SmolLM2 through the openai SDK: the schema corpus (greedy and sampled,
every output parses and validates), json_object, GBNF grammars, honest length cuts, and bad input as 400s.

The corpus runs as one concurrent batch against one worker (~45 schemas x 2), so it costs about a minute."""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import openai
import pydantic
import pytest
import xgrammar as xgr

from tests.workers.server._serve import MODEL
from workers.structured.compiler import GrammarCompiler, GrammarSpec

CORPUS = sorted((Path(__file__).parents[1] / "structured" / "schemas").glob("*.json"))
SYSTEM = "You answer with JSON only."


def _corpus_request(path: Path, sampled: bool) -> dict:
    case = json.loads(path.read_text())
    return {
        "model": MODEL,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": case["prompt"]}],
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": path.stem, "schema": case["schema"], "strict": True}},
        "max_tokens": 160,
        **({"temperature": 0.9, "seed": 7} if sampled else {"temperature": 0}),
    }


def test_corpus_has_enough_schemas_of_every_kind():
    text = " ".join(p.read_text() for p in CORPUS)
    assert len(CORPUS) >= 40
    for keyword in ('"anyOf"', '"$ref"', '"$defs"', '"enum"', '"pattern"', '"format"', '"minimum"', '"maxItems"',
                    '"additionalProperties"', '"prefixItems"'):
        assert keyword in text, keyword


def test_every_corpus_output_parses_and_validates(worker):
    # 90 requests through one worker: on a loaded 2-core box a request can wait minutes behind the others
    client = openai.OpenAI(base_url=f"{worker.base}/v1", api_key="x", max_retries=0, timeout=900)
    jobs = [(p, sampled) for p in CORPUS for sampled in (False, True)]
    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda job: client.chat.completions.create(**_corpus_request(*job)), jobs))
    failures = []
    checker = jsonschema.FormatChecker()
    for (path, sampled), reply in zip(jobs, replies, strict=True):
        choice = reply.choices[0]
        schema = json.loads(path.read_text())["schema"]
        label = f"{path.stem} ({'sampled' if sampled else 'greedy'})"
        if choice.finish_reason != "stop":
            failures.append(f"{label}: finish_reason {choice.finish_reason}: {choice.message.content!r}")
            continue
        try:
            jsonschema.validate(json.loads(choice.message.content), schema, format_checker=checker)
        except (ValueError, jsonschema.ValidationError) as exc:
            failures.append(f"{label}: {choice.message.content!r}: {str(exc).splitlines()[0]}")
    assert not failures, "\n".join(failures)


def test_json_object_is_always_one_object(client: openai.OpenAI, smollm2_tokenizer):
    """Every finished output is exactly one object. SmolLM2 sampled can loop inside a free-form object until
    max_tokens: such a cut says `length`, and its text is still a prefix of one object (the matcher accepts it)."""
    prompts = ["What is 2+2?", "Give a name and an age as JSON.", "Give a city and its country as JSON.",
               "Is the sky blue? Answer in JSON."]
    compiler = GrammarCompiler(smollm2_tokenizer, smollm2_tokenizer.vocab_size, smollm2_tokenizer.eos_token_ids)
    obj = compiler.compile(GrammarSpec("json_object", ""))
    jobs = [(p, kw) for p in prompts for kw in ({"temperature": 0}, {"temperature": 0.7, "seed": 3})]

    def ask(job):
        return client.chat.completions.create(
            model=MODEL, messages=[{"role": "system", "content": "You answer with one short JSON object."},
                                   {"role": "user", "content": job[0]}],
            max_tokens=160, response_format={"type": "json_object"}, **job[1],
        )

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(ask, jobs))
    finished = 0
    for reply in replies:
        choice = reply.choices[0]
        assert reply.system_fingerprint
        if choice.finish_reason == "stop":
            assert isinstance(json.loads(choice.message.content), dict), choice.message.content
            finished += 1
        else:
            assert choice.finish_reason == "length" and reply.usage.completion_tokens == 160
            matcher = xgr.GrammarMatcher(obj)
            assert matcher.accept_string(choice.message.content) and not matcher.is_completed()
    assert finished >= len(jobs) // 2
    compiler.close()


class Event(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=24)
    day: str = pydantic.Field(max_length=12)
    participants: list[str] = pydantic.Field(max_length=3)


def test_sdk_parse_with_a_pydantic_model(client: openai.OpenAI):
    completion = client.beta.chat.completions.parse(
        model=MODEL, temperature=0, max_tokens=120, response_format=Event,
        messages=[{"role": "system", "content": "Extract the event information."},
                  {"role": "user", "content": "Alice and Bob are going to a science fair on Friday."}],
    )
    event = completion.choices[0].message.parsed
    assert isinstance(event, Event) and len(event.participants) <= 3


def test_gbnf_grammar_and_honest_length_cut(client: openai.OpenAI):
    grammar = 'root ::= "Answer: " ("yes" | "no") "."'
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Is water wet?"}], temperature=0, max_tokens=20,
        extra_body={"response_format": {"type": "grammar", "grammar": grammar}},
    )
    assert reply.choices[0].message.content in ("Answer: yes.", "Answer: no.")
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens <= len("Answer: yes.") + 1  # the text and one stop token, nothing after
    cut = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Give a person."}], temperature=0, max_tokens=3,
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": {
            "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}},
    )
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 3
    with pytest.raises(ValueError):
        json.loads(cut.choices[0].message.content)  # a cut object is not passed off as whole


def test_constrained_stream_equals_the_whole_response(client: openai.OpenAI):
    kw = _corpus_request(CORPUS[0], sampled=False)
    whole = client.chat.completions.create(**kw)
    chunks = list(client.chat.completions.create(**kw, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


@pytest.mark.parametrize(
    ("response_format", "code"),
    [
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objekt"}}}, "invalid_schema"),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#/$defs/nope"}}}, "invalid_grammar"),
        ({"type": "grammar", "grammar": "root ::= undefined_rule"}, "invalid_grammar"),
        ({"type": "xml"}, "invalid_value"),
    ],
)
def test_bad_response_formats_are_400s_naming_the_param(client: openai.OpenAI, response_format, code):
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4,
                                       extra_body={"response_format": response_format})
    assert exc.value.status_code == 400
    assert exc.value.body["param"] == "response_format" and exc.value.body["code"] == code


def test_accepted_openai_fields(client: openai.OpenAI):
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4, temperature=0,
        prompt_cache_key="k1", reasoning_effort="low", service_tier="auto", metadata={"a": "b"}, store=False,
        prediction={"type": "content", "content": "Hello there"},
    )
    assert reply.choices[0].message.content is not None and reply.system_fingerprint
