"""Bad input gets a 400 (404 for an unknown model) in OpenAI's error shape, and the worker keeps serving."""

import json

import httpx
import openai
import pytest

from tests.workers.server._serve import MODEL

OK_MESSAGES = [{"role": "user", "content": "Say hi."}]
JSON = {"content-type": "application/json"}


def _post(worker, path: str, body: bytes) -> httpx.Response:
    return httpx.post(f"{worker.base}{path}", content=body, headers=JSON, timeout=60)


def _assert_openai_error(resp: httpx.Response, status: int, param: str | None, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"] and err["type"] == "invalid_request_error"
    assert err["param"] == param
    if code is not None:
        assert err["code"] == code
    return err


def _chat_body(**overrides) -> bytes:
    return json.dumps({"model": MODEL, "messages": OK_MESSAGES, "max_tokens": 2, **overrides}).encode()


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"temperature": "hot"}, "temperature"),
        ({"n": "2"}, "n"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"stop": 5}, "stop"),
        ({"logprobs": "yes"}, "logprobs"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages.[0].content"),
        ({"stream_options": {"include_usage": "sure"}}, "stream_options.include_usage"),
        ({"logit_bias": {"abc": 1}}, "logit_bias"),
    ],
)
def test_wrong_types_name_the_param(worker, overrides, param):
    _assert_openai_error(_post(worker, "/v1/chat/completions", _chat_body(**overrides)), 400, param)


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"n": 0}, "n"),
        ({"n": 17}, "n"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),  # without logprobs
        ({"temperature": 2.5}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.[0].role"),
        ({"messages": [{"role": "user"}]}, "messages.[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
         "messages.[0].content.[0].type"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),  # without stream
        # issue 12's reproductions: each crashed the batch or answered 500 before the bounds
        ({"top_k": 2**63}, "top_k"),
        ({"seed": 2**70}, "seed"),
        ({"repetition_penalty": float("nan")}, "repetition_penalty"),  # json.dumps writes NaN
        ({"seed": -(2**63) - 1}, "seed"),
        ({"top_k": 49153}, "top_k"),  # SmolLM2's vocabulary is 49152
        ({"top_p": float("inf")}, "top_p"),
        ({"repetition_penalty": float("1e400")}, "repetition_penalty"),  # Infinity
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"temperature": float("-inf")}, "temperature"),
        ({"logit_bias": {"5": float("nan")}}, "logit_bias"),
        ({"logit_bias": {str(i): 1 for i in range(301)}}, "logit_bias"),
        ({"stop_token_ids": list(range(65))}, "stop_token_ids"),
        ({"model": MODEL}, None),  # control: this one is fine
        ({"top_k": -1, "seed": 2**63 - 1, "n": 2, "temperature": 1}, None),  # the bounds themselves are fine
        ({"top_k": 49152, "seed": -(2**63), "repetition_penalty": 2}, None),
    ],
)
def test_out_of_range_and_invalid_values(worker, overrides, param):
    resp = _post(worker, "/v1/chat/completions", _chat_body(**overrides))
    if param is None:
        assert resp.status_code == 200, resp.text
    else:
        _assert_openai_error(resp, 400, param)


def test_missing_model_is_a_400_and_unknown_model_a_404(worker):
    body = json.dumps({"messages": OK_MESSAGES}).encode()
    _assert_openai_error(_post(worker, "/v1/chat/completions", body), 400, "model", "missing_required_parameter")
    for name in ("gpt-4o", f"{MODEL}:adapter-not-loaded"):
        _assert_openai_error(_post(worker, "/v1/chat/completions", _chat_body(model=name)), 404, "model",
                             "model_not_found")


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"model": "smollm2-135m-instruct", "messages": [', "invalid_json"),
        (b"not json at all", "invalid_json"),
        (b"", "invalid_json"),
        (b'{"model": "smollm2-135m-instruct", "prompt": "caf\xe9", "messages": [{"role": "user", "content": "\xff"}]}',
         "invalid_encoding"),
        (b"\xff\xfe{\x00}\x00", "invalid_encoding"),
    ],
)
def test_malformed_json_and_non_utf8_bytes(worker, path, body, code):
    _assert_openai_error(_post(worker, path, body), 400, None, code)


def test_completions_bad_input(worker):
    def body(**kw) -> bytes:
        return json.dumps({"model": MODEL, "prompt": "Hello", "max_tokens": 2, **kw}).encode()

    _assert_openai_error(_post(worker, "/v1/completions", body(logprobs=21)), 400, "logprobs")
    _assert_openai_error(_post(worker, "/v1/completions", body(logprobs=True)), 400, "logprobs")  # bool is not int
    _assert_openai_error(_post(worker, "/v1/completions", body(prompt="")), 400, "prompt")
    _assert_openai_error(_post(worker, "/v1/completions", body(prompt=[10, 49152])), 400, "prompt")
    _assert_openai_error(_post(worker, "/v1/completions", body(prompt=["a", "b"])), 400, "prompt")
    _assert_openai_error(_post(worker, "/v1/completions", body(prompt=12)), 400, "prompt")


def test_context_length_exceeded(worker, client):
    max_len = client.models.list().data[0].model_extra["max_model_len"]
    assert max_len and max_len > 100
    long_prompt = [504] * (max_len + 10)
    err = _assert_openai_error(
        _post(worker, "/v1/completions", json.dumps({"model": MODEL, "prompt": long_prompt}).encode()),
        400, "prompt", "context_length_exceeded",
    )
    assert str(max_len) in err["message"]
    long_chat = [{"role": "user", "content": " hello" * (max_len + 10)}]
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=MODEL, messages=long_chat, max_tokens=2)
    assert exc.value.status_code == 400 and exc.value.code == "context_length_exceeded"
    assert exc.value.param == "messages"
    # A prompt that fits, with a max_tokens that can't.
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=MODEL, messages=OK_MESSAGES, max_tokens=max_len)
    assert exc.value.code == "context_length_exceeded" and exc.value.param == "max_tokens"


def test_sdk_sees_openai_errors(client):
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=MODEL, messages=OK_MESSAGES, n=0)
    assert exc.value.param == "n" and exc.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model="nope", messages=OK_MESSAGES)
    assert exc.value.code == "model_not_found"


def test_a_bad_request_between_two_good_ones(worker, client):
    def good() -> str:
        r = client.chat.completions.create(model=MODEL, messages=OK_MESSAGES, max_tokens=8, temperature=0)
        return r.choices[0].message.content

    before = good()
    _assert_openai_error(_post(worker, "/v1/chat/completions", b"\xff{bad"), 400, None)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x" * 40000}] * 2)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=OK_MESSAGES, logit_bias={"99999999": 5})
    assert good() == before
    assert httpx.get(f"{worker.base}/health").json()["num_running"] == 0
