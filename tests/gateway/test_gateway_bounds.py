"""Issue 12, items 1 and 5 on the gateway: every numeric sampling parameter is bounded where it enters (400
invalid_request_error naming the parameter; a request inside the bounds gets as far as routing, here 503 since no
worker serves the stub model), request JSON with NaN/Infinity is refused, and a body over the limit is refused with 413
before it is read or the caller authenticated."""

import json
import socket
import time
from urllib.parse import urlparse

import httpx
import pytest
from conftest import STUB_MODEL

pytestmark = pytest.mark.django_db(transaction=True)
MESSAGES = [{"role": "user", "content": "hi"}]


def _post(gateway, secret: str, path: str, raw: bytes) -> httpx.Response:
    return httpx.post(f"{gateway.url}{path}", content=raw, timeout=30,
                      headers={"authorization": f"Bearer {secret}", "content-type": "application/json"})


def _chat(**params: object) -> tuple[str, bytes]:
    return "/v1/chat/completions", json.dumps({"model": STUB_MODEL, "messages": MESSAGES, **params}).encode()


def _completion(**params: object) -> tuple[str, bytes]:
    return "/v1/completions", json.dumps({"model": STUB_MODEL, "prompt": "hi", **params}).encode()


def _raw_chat(fragment: str) -> tuple[str, bytes]:
    # Python's json.dumps writes NaN/Infinity too, but spelling the bytes out shows exactly what the client sent.
    return "/v1/chat/completions", (f'{{"model": "{STUB_MODEL}", "messages": [{{"role": "user", "content": "hi"}}],'
                                    f' {fragment}}}').encode()


REFUSED = [  # (request, param the error must name; None for a body that isn't valid JSON)
    (_chat(top_k=2**63), "top_k"),  # the reproduction: overflowed the worker's batched sampler
    (_chat(top_k=-2), "top_k"),
    (_chat(top_k=1 << 20), "top_k"),
    (_chat(seed=2**70), "seed"),  # the reproduction: a 500
    (_chat(seed=-(2**63) - 1), "seed"),
    (_raw_chat('"repetition_penalty": NaN'), None),  # the reproduction: accepted
    (_raw_chat('"temperature": Infinity'), None),
    (_raw_chat('"top_p": -Infinity'), None),
    (_raw_chat('"min_p": 1e999'), None),  # Python's parser turns this into inf
    (_raw_chat('"logit_bias": {"5": NaN}'), None),
    (_raw_chat('"response_format": {"type": "json_schema", "json_schema": {"x": NaN}}'), None),  # pass-through too
    (_chat(repetition_penalty=0), "repetition_penalty"),
    (_chat(repetition_penalty=2.5), "repetition_penalty"),
    (_chat(temperature=2.01), "temperature"),
    (_chat(min_p=1.5), "min_p"),
    (_chat(frequency_penalty=-2.5), "frequency_penalty"),
    (_chat(presence_penalty=3), "presence_penalty"),
    (_chat(n=0), "n"),
    (_chat(n=17), "n"),
    (_chat(top_logprobs=21, logprobs=True), "top_logprobs"),
    (_completion(logprobs=21), "logprobs"),
    (_completion(best_of=17), "best_of"),
    (_chat(max_tokens=2**31), "max_tokens"),
    (_chat(max_completion_tokens=0), "max_completion_tokens"),
    (_chat(logit_bias={"abc": 1}), "logit_bias"),
    (_chat(logit_bias={"-1": 1}), "logit_bias"),
    (_chat(logit_bias={str(2**40): 1}), "logit_bias"),
    (_chat(logit_bias={"5": 100.5}), "logit_bias"),
    (_chat(logit_bias={str(i): 1 for i in range(301)}), "logit_bias"),
    (_chat(stop_token_ids=[2**40]), "stop_token_ids.[0]"),
    (_chat(stop_token_ids=list(range(65))), "stop_token_ids"),
    (_chat(stop=["a", "b", "c", "d", "e"]), "stop"),
    (_completion(prompt=[[1, 2, 2**40]]), "prompt"),
]

ACCEPTED = [  # the edges themselves are valid
    _chat(seed=2**63 - 1), _chat(seed=-(2**63)), _chat(top_k=-1), _chat(top_k=0), _chat(top_k=(1 << 20) - 1),
    _chat(n=16), _chat(top_logprobs=20, logprobs=True), _completion(logprobs=20), _chat(repetition_penalty=2.0),
    _chat(logit_bias={"0": -100, str((1 << 20) - 1): 100}), _chat(temperature=0, top_p=1, min_p=0),
    _chat(frequency_penalty=-2, presence_penalty=2), _chat(stop=["a", "b", "c", "d"]), _chat(max_tokens=2**31 - 1),
]


def test_out_of_range_parameters_are_400_naming_the_parameter(gateway, make_key):
    _key, secret = make_key()
    wrong = []
    for (path, raw), param in REFUSED:
        response = _post(gateway, secret, path, raw)
        error = response.json().get("error", {})
        if response.status_code != 400 or error.get("type") != "invalid_request_error" or (
                param is not None and not str(error.get("param", "")).startswith(param)):
            wrong.append((raw[:120], param, response.status_code, error))
        if param is None and "could not parse the JSON body" not in error.get("message", ""):
            wrong.append((raw[:120], "message", error))
    assert wrong == []


def test_parameters_at_their_bounds_are_accepted(gateway, make_key):
    _key, secret = make_key()
    statuses = [(_post(gateway, secret, path, raw).status_code, raw[:120]) for path, raw in ACCEPTED]
    assert [s for s in statuses if s[0] != 503] == []  # past validation, auth and admission: no worker for it


def _raw_request(url: str, head: str, body_parts: list[bytes], *, read_timeout: float = 10.0) -> tuple[int, bytes]:
    """Sends a request by hand (headers, then body parts until the server answers) and returns (status, body)."""
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=read_timeout) as sock:
        sock.sendall(head.encode())
        sock.setblocking(False)
        received = b""
        for part in body_parts:
            try:
                sock.sendall(part)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break  # the server stopped reading: it answered already
            try:
                received += sock.recv(65536)
                if received:
                    break
            except BlockingIOError:
                pass
        sock.settimeout(read_timeout)  # blocking again, but never forever
        deadline = time.monotonic() + read_timeout
        while b"\r\n\r\n" not in received or len(received.partition(b"\r\n\r\n")[2]) < 10:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data or time.monotonic() > deadline:
                break
            received += data
    status_line, _, rest = received.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in headers.lower():
        size, _, chunk = body.partition(b"\r\n")
        body = chunk[: int(size, 16)]
    return int(status_line.split()[1]), body


def _assert_openai_413(status: int, body: bytes) -> None:
    assert status == 413
    error = json.loads(body)["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "request_too_large"
    assert set(error) == {"message", "type", "param", "code"} and "limit is" in error["message"]


def test_a_200_mb_body_without_authorization_is_refused_unread(gateway):
    # The reproduction: a 200 MB body without Authorization was read whole (5 s of memory and CPU) before the 401.
    # Only 64 KiB of it is ever sent; the answer must come from the Content-Length alone.
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            f"content-length: {200 * 1024 * 1024}\r\n\r\n")
    started = time.monotonic()
    status, body = _raw_request(gateway.url, head, [b" " * 65536])
    assert time.monotonic() - started < 5
    _assert_openai_413(status, body)


def test_a_chunked_body_is_refused_once_it_passes_the_limit(gateway_factory, make_key):
    gateway = gateway_factory(max_body_bytes=64 * 1024)
    _key, secret = make_key()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer {secret}\r\ntransfer-encoding: chunked\r\n\r\n")
    chunk = b" " * 16384
    parts = [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"] * 64  # 1 MiB offered, 16x the limit
    _assert_openai_413(*_raw_request(gateway.url, head, parts))

    # Under the limit the same gateway answers normally (here: past validation to routing, 503 no worker).
    path, raw = _chat()
    assert _post(gateway, secret, path, raw).status_code == 503
