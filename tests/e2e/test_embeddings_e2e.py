"""Embeddings end to end (issue 16), every part real: the openai SDK calls a gateway process, which routes to
`python -m workers.embeddings` on the packaged all-MiniLM-L6-v2; usage goes through the Redis stream into the ledger
by the billing consumer. Embeddings match sentence-transformers' encode (cosine >= 0.9999) for single inputs, a
mixed-length batch and inputs sent concurrently by two accounts; base64 decodes to the same floats as float; the
ledger holds exactly the input tokens the worker counted (checked against the tokenizer), at the catalog price; the
usage API groups them under the model; bad input is a 400 naming the input, and a chat model is not an embedding
model (nor the reverse)."""

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import openai
import pytest
import redis
import torch

from billing.pricing import Prices, cost_usd, format_usd
from tests.e2e.conftest import wait_for_worker
from tests.gateway.gateway_testlib import sdk

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
MODEL = "accounts/hearth/models/all-minilm-l6-v2"
TEXTS = [
    "hi",
    "Retrieval-augmented generation retrieves passages by embedding similarity.",
    "Crème brûlée, naïve café — déjà vu. 東京は日本の首都です。",
    "Hearth meters every token from the worker's own count and bills it at the catalog price. " * 8,
]


@pytest.fixture(scope="module")
def st_model(minilm_path: Path):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path), device="cpu")


@pytest.fixture(scope="module")
def num_tokens(minilm_path: Path):
    from workers.embeddings.tokenizer import EncoderTokenizer

    tok = EncoderTokenizer(minilm_path / "tokenizer.json")
    return lambda texts: sum(len(ids) for ids in tok.encode_batch(list(texts)))


@pytest.fixture
def emb_gateway(gateway_factory, minilm_worker):
    gw = gateway_factory(region=minilm_worker.region)
    wait_for_worker(gw.url, minilm_worker)
    return gw


def _tenant(name: str):
    from accounts.services import account_signup
    from keys.services import api_key_create

    user, account = account_signup(email=f"{name}-{uuid.uuid4().hex[:6]}@example.com", password="pw-" + "x" * 12,
                                   account_name=name)
    _key, secret = api_key_create(account=account, name="e2e")
    return user, account, secret


def _vectors(response) -> torch.Tensor:
    return torch.tensor([d.embedding for d in response.data], dtype=torch.float32)


def _ingest_until(request_ids: set[str], timeout: float = 60.0):
    from billing.ingest import UsageConsumer
    from billing.models import UsageRecord

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    consumer = UsageConsumer(client, consumer=f"e2e-emb-{uuid.uuid4().hex[:6]}", block_ms=50)
    deadline = time.monotonic() + timeout
    try:
        while True:
            consumer.step()
            rows = {r.request_id: r for r in UsageRecord.dangerously_unscoped.filter(request_id__in=request_ids)}
            if set(rows) == request_ids:
                return rows
            assert time.monotonic() < deadline, f"ledger is missing {request_ids - set(rows)}"
    finally:
        client.close()


def test_embeddings_match_sentence_transformers_and_bill_the_worker_count(emb_gateway, minilm_catalog, st_model,
                                                                          num_tokens):
    ada_user, ada, ada_secret = _tenant("ada")
    _bob_user, bob, bob_secret = _tenant("bob")
    ada_client, bob_client = sdk(emb_gateway.url, ada_secret), sdk(emb_gateway.url, bob_secret)
    sent: list[tuple[object, list[str], object]] = []  # (account, inputs, raw response)

    def call(client, account, inputs, **kw):
        raw = client.embeddings.with_raw_response.create(model=MODEL, input=inputs, **kw)
        sent.append((account, inputs if isinstance(inputs, list) else [inputs], raw))
        return raw.parse()

    # single inputs (the SDK asks for base64 and decodes it), and the same input as floats
    for text in TEXTS:
        out = call(ada_client, ada, text)
        ref = st_model.encode([text], convert_to_tensor=True)
        assert torch.cosine_similarity(_vectors(out), ref).item() >= 0.9999
    as_float = call(ada_client, ada, TEXTS[1], encoding_format="float")
    as_b64 = call(ada_client, ada, TEXTS[1])
    assert torch.equal(_vectors(as_float), _vectors(as_b64))
    # a mixed-length batch in one request
    batch = call(bob_client, bob, TEXTS)
    assert [d.index for d in batch.data] == [0, 1, 2, 3]
    assert (torch.cosine_similarity(_vectors(batch), st_model.encode(TEXTS, convert_to_tensor=True)) >= 0.9999).all()
    # concurrent inputs from two accounts
    texts = [f"request {i} from {'ada' if i % 2 else 'bob'}: " + "words about embeddings " * (1 + 3 * i)
             for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda i: call(ada_client if i % 2 else bob_client, ada if i % 2 else bob, texts[i]),
                             range(8)))
    got = torch.cat([_vectors(o) for o in outs])
    assert (torch.cosine_similarity(got, st_model.encode(texts, convert_to_tensor=True)) >= 0.9999).all()

    # Every response's usage is the worker's count, which is the tokenizer's; the ledger holds exactly that, rated at
    # the catalog's input price, no output tokens.
    prices = Prices(minilm_catalog.price_input_per_mtok, minilm_catalog.price_cached_input_per_mtok,
                    minilm_catalog.price_output_per_mtok)
    expected: dict[str, tuple[int, int]] = {}
    for account, inputs, raw in sent:
        usage = raw.parse().usage
        assert usage.prompt_tokens == usage.total_tokens == num_tokens(inputs)
        want_cost = cost_usd(prices, prompt_tokens=usage.prompt_tokens, cached_prompt_tokens=0, completion_tokens=0)
        assert raw.headers["x-hearth-cost"] == format_usd(want_cost)
        assert raw.http_response.json()["usage"]["cost"] == format_usd(want_cost)
        expected[raw.headers["x-request-id"]] = (account.id, usage.prompt_tokens)
    rows = _ingest_until(set(expected))
    for request_id, (account_id, prompt_tokens) in expected.items():
        row = rows[request_id]
        assert (row.account_id, row.base_model_id) == (account_id, minilm_catalog.id)
        assert (row.prompt_tokens, row.cached_prompt_tokens, row.completion_tokens) == (prompt_tokens, 0, 0)
        assert row.cost_usd == cost_usd(prices, prompt_tokens=prompt_tokens, cached_prompt_tokens=0,
                                        completion_tokens=0)
        assert row.status == "finished"
    assert minilm_catalog.price_input_per_mtok > Decimal(0)  # else the cost checks prove nothing

    # the usage API, grouped by model, shows the embedding model with ada's input tokens only
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_login(ada_user)
    by_model = api.get("/api/v1/usage", {"group_by": "model"}).json()["data"]
    ada_tokens = sum(t for a, t in expected.values() if a == ada.id)
    assert [(d["model"], d["prompt_tokens"], d["completion_tokens"]) for d in by_model] == [(MODEL, ada_tokens, 0)]


@pytest.mark.parametrize(("kwargs", "param", "fragment"), [
    ({"input": ""}, "input[0]", "empty string"),
    ({"input": []}, "input", "empty list"),
    ({"input": ["fine", "word " * 300]}, "input[1]", "maximum context of 256"),
    ({"input": "x", "dimensions": 128}, "dimensions", "does not support shortening"),
    ({"input": ["a"] * 2049}, "input", "at most 2048"),
    ({"input": "x", "encoding_format": "int8"}, "encoding_format", None),
    ({"input": "x", "model": "accounts/hearth/models/smollm2-135m-instruct"}, "model", "not an embedding model"),
])  # fmt: skip
def test_bad_embedding_input_is_a_400_naming_the_param(emb_gateway, minilm_catalog, e2e_account, kwargs, param,
                                                        fragment):
    client = sdk(emb_gateway.url, e2e_account("eve").secret)
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(**{"model": MODEL, **kwargs})
    err = info.value.response.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param, err
    assert fragment is None or fragment in err["message"], err


def test_a_chat_request_to_the_embedding_model_is_a_400(emb_gateway, minilm_catalog, e2e_account):
    client = sdk(emb_gateway.url, e2e_account("eve").secret)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    err = info.value.response.json()["error"]
    assert err["param"] == "model" and "embedding model" in err["message"] and "/v1/embeddings" in err["message"]
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=MODEL, prompt="hi")


def test_tpm_counts_embedding_input_tokens(emb_gateway, minilm_catalog, e2e_account):
    from accounts.models import Account

    tenant = e2e_account("tpm")
    Account.objects.filter(id=tenant.account.id).update(tpm_limit=400)  # before the gateway first reads the key
    client = sdk(emb_gateway.url, tenant.secret)
    text = "word " * 248  # 250 tokens with [CLS]/[SEP]; the gateway admits it on a chars/4 estimate of 310
    first = client.embeddings.create(model=MODEL, input=text)
    assert first.usage.prompt_tokens == 250
    with pytest.raises(openai.RateLimitError) as info:  # 150 tokens left in the minute's bucket: too few for another
        client.embeddings.create(model=MODEL, input=text)
    assert "token" in info.value.response.json()["error"]["message"].lower()
