"""The gateway's embeddings body and the model-kind check, without servers (the whole path runs in
tests/e2e/test_embeddings_e2e.py against the real worker)."""

import pytest

from contracts.model_kinds import MODEL_KIND_CHAT, MODEL_KIND_EMBEDDING
from gateway.db import ModelEntry
from gateway.embeddings import MAX_INPUTS, EmbeddingRequest, check_model_kind
from gateway.errors import InvalidRequest
from gateway.registry import WorkerInfo
from gateway.routing import candidates
from gateway.schemas import ChatCompletionRequest


def _body(**kw) -> EmbeddingRequest:
    return EmbeddingRequest.model_validate({"model": "m", "input": "hello", **kw})


def _entry(kind: str) -> ModelEntry:
    return ModelEntry("accounts/hearth/models/x", 1, "x", 256, 0, "hearth", kind=kind)


@pytest.mark.parametrize(("raw", "chars"), [("abcd", 4), (["ab", "cde"], 5), ([1, 2, 3], 12), ([[1], [2, 3]], 12)])
def test_rate_limit_estimate_counts_every_input_and_nothing_generated(raw, chars):
    body = _body(input=raw)
    assert body.prompt_chars() == chars and body.max_new_tokens() == 0 and body.stream is False


def test_upstream_body_keeps_the_openai_fields_and_truncate_and_names_the_worker_model():
    body = _body(input=["a", "b"], encoding_format="base64", dimensions=384, user="u", truncate=True)
    body.check_extras()
    assert body.upstream_body("all-minilm-l6-v2") == {"model": "all-minilm-l6-v2", "input": ["a", "b"],
                                                      "encoding_format": "base64", "dimensions": 384, "user": "u",
                                                      "truncate": True}


def test_unknown_argument_and_too_many_inputs_are_refused_with_their_param():
    with pytest.raises(InvalidRequest) as info:
        _body(temperature=0.5).check_extras()
    assert info.value.param == "temperature"
    with pytest.raises(InvalidRequest) as info:
        _body(input=["x"] * (MAX_INPUTS + 1)).check_extras()
    assert info.value.param == "input" and "2048" in info.value.message
    _body(input=list(range(MAX_INPUTS + 1))).check_extras()  # one input of 2049 token ids: the worker's context check


@pytest.mark.parametrize("bad", [{"input": [1, "a"]}, {"encoding_format": "int8"}, {"dimensions": 0},
                                 {"input": [[-1]]}, {"dimensions": "384"}])
def test_malformed_bodies_fail_validation(bad):
    with pytest.raises(ValueError):
        _body(**bad)


def test_model_kind_must_match_the_endpoint():
    check_model_kind(_entry(MODEL_KIND_EMBEDDING), _body(), "/v1/embeddings")
    with pytest.raises(InvalidRequest, match="is not an embedding model") as info:
        check_model_kind(_entry(MODEL_KIND_CHAT), _body(), "/v1/embeddings")
    assert info.value.param == "model"
    chat = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    with pytest.raises(InvalidRequest, match="/v1/embeddings"):
        check_model_kind(_entry(MODEL_KIND_EMBEDDING), chat, "/v1/chat/completions")


def test_routing_takes_only_workers_of_the_models_kind():
    chat = WorkerInfo("w-chat", "http://a", "x", "local")  # a pre-#16 heartbeat without kind reads as chat
    emb = WorkerInfo("w-emb", "http://b", "x", "local", kind=MODEL_KIND_EMBEDDING)
    picked = candidates([chat, emb], base_model="x", adapter_uid=None, region="local", load_factor=2.0,
                        kind=MODEL_KIND_EMBEDDING)
    assert [w.worker_id for w in picked] == ["w-emb"]
    assert WorkerInfo.from_heartbeat('{"worker_id": "a", "url": "u", "base_model": "x"}').kind == MODEL_KIND_CHAT
