"""The embedding worker's HTTP API with the openai SDK as the client, on the real model: every input form, both
encodings, concurrent callers batched together, OpenAI-shaped 400s naming the input, secret, metrics, registry."""

import asyncio
import base64
import json
import os

import httpx
import numpy as np
import openai
import pytest
import redis
import torch

from contracts import WORKER_SECRET_HEADER, worker_key
from contracts.model_kinds import MODEL_KIND_EMBEDDING
from tests.workers.embeddings._embed_testlib import TEXTS, cosine
from tests.workers.server._serve import metric, serve_in_thread, wait_until
from workers.embeddings.server import EmbeddingServerSettings, create_app

MODEL = "all-minilm-l6-v2"


@pytest.fixture(scope="module")
def worker_url(minilm, torch_one_thread):
    settings = EmbeddingServerSettings(worker_id="emb-test", redis_url=os.environ["REDIS_URL"], region="emb-test",
                                       max_request_tokens=4000, heartbeat_interval_s=0.2)
    with serve_in_thread(create_app(minilm, settings)) as base:
        settings.url = base
        yield base


@pytest.fixture
def client(worker_url) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{worker_url}/v1", api_key="x", max_retries=0, timeout=120)


def _post(worker_url: str, body: dict, **kw) -> httpx.Response:
    return httpx.post(f"{worker_url}/v1/embeddings", json=body, timeout=120, **kw)


def test_sdk_default_base64_and_float_are_the_same_float32s_and_match_sentence_transformers(client, st_minilm):
    b64 = client.embeddings.create(model=MODEL, input=TEXTS)  # the SDK asks for base64 and decodes it
    flt = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    assert [d.index for d in b64.data] == list(range(len(TEXTS))) and b64.model == MODEL
    a = torch.tensor([d.embedding for d in b64.data])
    b = torch.tensor([d.embedding for d in flt.data])
    assert a.shape == (len(TEXTS), 384)
    assert torch.equal(a.to(torch.float32), b.to(torch.float32))
    assert (cosine(a, st_minilm.encode(TEXTS, convert_to_tensor=True)) >= 0.9999).all()
    assert b64.usage.prompt_tokens == b64.usage.total_tokens == flt.usage.prompt_tokens > len(TEXTS) * 2


def test_raw_response_shape_and_base64_bytes(worker_url, minilm):
    r = _post(worker_url, {"model": MODEL, "input": "hello world", "encoding_format": "base64", "user": "u-1"})
    assert r.status_code == 200 and r.headers["x-request-id"].startswith("embd-")
    body = r.json()
    assert set(body) == {"object", "data", "model", "usage"} and body["object"] == "list"
    assert body["data"][0].keys() == {"object", "index", "embedding"} and body["data"][0]["object"] == "embedding"
    vec = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    ids = minilm.tokenizer.encode_batch(["hello world"])
    torch.testing.assert_close(torch.from_numpy(vec.copy()), minilm.embed(ids)[0], atol=1e-6, rtol=0)
    assert body["usage"] == {"prompt_tokens": len(ids[0]), "total_tokens": len(ids[0])}


def test_token_id_inputs_embed_like_their_text(client, minilm):
    texts = TEXTS[:3]
    ids = [s[1:-1] for s in minilm.tokenizer.encode_batch(texts)]  # text tokens, without [CLS]/[SEP]
    by_text = torch.tensor([d.embedding for d in client.embeddings.create(model=MODEL, input=texts).data])
    by_ids = client.embeddings.create(model=MODEL, input=ids)
    one = client.embeddings.create(model=MODEL, input=ids[1])  # a single list of ints is one input
    assert len(one.data) == 1
    torch.testing.assert_close(torch.tensor([d.embedding for d in by_ids.data]), by_text, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.tensor(one.data[0].embedding), by_text[1], atol=1e-6, rtol=0)
    assert by_ids.usage.prompt_tokens == sum(len(i) + 2 for i in ids)


def test_concurrent_callers_are_batched_and_each_gets_its_own_rows(worker_url, st_minilm):
    texts = [f"caller {i}: " + f"several words about topic number {i} " * (1 + i % 9) for i in range(24)]
    steps_before = metric(worker_url, "hearth_embeddings_step_sequences_count") or 0

    async def fire():
        async with httpx.AsyncClient(timeout=120) as http:
            rs = await asyncio.gather(*(http.post(f"{worker_url}/v1/embeddings", json={
                "model": MODEL, "input": t, "encoding_format": "float"}) for t in texts))
        return [r.json()["data"][0]["embedding"] for r in rs]

    ours = torch.tensor(asyncio.run(fire()))
    assert (cosine(ours, st_minilm.encode(texts, convert_to_tensor=True)) >= 0.9999).all()
    steps = (metric(worker_url, "hearth_embeddings_step_sequences_count") or 0) - steps_before
    assert 0 < steps < len(texts)  # several callers shared a step


def test_truncate_keeps_the_context_and_matches_sentence_transformers(client, st_minilm):
    long = "token " * 400
    out = client.embeddings.create(model=MODEL, input=["short", long], extra_body={"truncate": True})
    assert out.usage.prompt_tokens == 3 + 256
    ref = st_minilm.encode(["short", long], convert_to_tensor=True)
    assert (cosine(torch.tensor([d.embedding for d in out.data]), ref) >= 0.9999).all()


@pytest.mark.parametrize(("body", "status", "param", "fragment"), [
    ({"input": ""}, 400, "input[0]", "empty string"),
    ({"input": []}, 400, "input", "empty list"),
    ({"input": ["ok", ""]}, 400, "input[1]", "empty string"),
    ({"input": [[1996], []]}, 400, "input[1]", "empty token list"),
    ({"input": ["ok", "word " * 300]}, 400, "input[1]", "maximum context of 256"),
    ({"input": [[5] * 300]}, 400, "input[0]", "302 tokens"),
    ({"input": [[1996, 30522]]}, 400, "input[0]", "outside this model's vocabulary"),
    ({"input": [[-1]]}, 400, "input[0]", "outside"),
    ({"input": ["a"] * 2049}, 400, "input", "at most 2048"),
    ({"input": ["word " * 200] * 20}, 400, "input", "at most 4000 tokens"),
    ({"input": "x", "dimensions": 128}, 400, "dimensions", "does not support shortening"),
    ({"input": "x", "encoding_format": "int8"}, 400, "encoding_format", "Invalid value"),
    ({"input": [1, "a"]}, 400, "input", "Invalid value"),
    ({"input": "x", "dimensions": "384"}, 400, "dimensions", "Invalid value"),
    ({"input": "x", "truncate": "yes"}, 400, "truncate", "Invalid value"),
    ({}, 400, "input", "Missing required parameter"),
    ({"input": "x", "model": "nope"}, 404, "model", "does not exist"),
])  # fmt: skip
def test_bad_input_is_an_openai_error_naming_the_param(worker_url, body, status, param, fragment):
    r = _post(worker_url, {"model": MODEL, **body})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    assert err["param"] == param and fragment in err["message"], err


def test_dimensions_equal_to_the_model_is_accepted(client):
    out = client.embeddings.create(model=MODEL, input="x", dimensions=384)
    assert len(out.data[0].embedding) == 384


def test_health_metrics_models_and_registry_entry(worker_url):
    health = httpx.get(f"{worker_url}/health").json()
    assert health["status"] == "ok" and health["kind"] == MODEL_KIND_EMBEDDING
    assert (metric(worker_url, "hearth_embeddings_requests_total", {"model_name": MODEL}) or 0) > 0
    card = httpx.get(f"{worker_url}/v1/models").json()["data"][0]
    assert card["id"] == MODEL and card["dimensions"] == 384 and card["max_model_len"] == 256
    r = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        entry = wait_until(lambda: json.loads(r.get(worker_key("emb-test")) or "null"))
        assert entry["kind"] == MODEL_KIND_EMBEDDING and entry["base_model"] == MODEL
        assert entry["url"] == worker_url and entry["region"] == "emb-test"
    finally:
        r.close()


def test_worker_secret_is_required_when_set(minilm):
    app = create_app(minilm, EmbeddingServerSettings(worker_secret="s" * 20))
    with serve_in_thread(app) as base:
        assert _post(base, {"model": MODEL, "input": "x"}).status_code == 401
        ok = _post(base, {"model": MODEL, "input": "x"}, headers={WORKER_SECRET_HEADER: "s" * 20})
        assert ok.status_code == 200
