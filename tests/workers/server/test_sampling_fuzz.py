"""Hypothesis over the sampling parameters against a real worker process (SmolLM2): whatever a client sends, the
answer is a 200 or an OpenAI-shaped 4xx naming the parameter, never a 5xx, and a healthy stream of another account
running alongside completes (no crashed batch). Bounded: tiny max_tokens, a fixed example budget, no deadline."""

import json
import threading
import time

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import ACCOUNT_ID_HEADER
from tests.workers.server._serve import MODEL

BIG = st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([0, -1, 1, 2**63, 2**63 - 1, -(2**63), 2**64, 49152]))
FLOAT = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1e-300, 2.0, 1e308]))
PARAMS = st.fixed_dictionaries({}, optional={
    "temperature": FLOAT, "top_p": FLOAT, "top_k": BIG, "min_p": FLOAT, "seed": BIG, "n": st.integers(-2, 20),
    "presence_penalty": FLOAT, "frequency_penalty": FLOAT, "repetition_penalty": FLOAT,
    "logit_bias": st.dictionaries(st.one_of(BIG.map(str), st.text(max_size=4)), FLOAT, max_size=4),
    "logprobs": st.one_of(st.integers(-3, 30), st.booleans()),
    "stop_token_ids": st.lists(BIG, max_size=3), "max_tokens": st.one_of(st.integers(-2, 2), st.sampled_from([2**63])),
})  # fmt: skip


def test_no_sampling_parameters_crash_the_worker(worker) -> None:
    done: dict[str, object] = {}

    def healthy_stream() -> None:  # another account's request, decoding while the fuzzing runs
        body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 48, "stream": True,
                "stream_options": {"include_usage": True}, "ignore_eos": True, "temperature": 0}
        with httpx.stream("POST", f"{worker.base}/v1/completions", json=body, timeout=180,
                          headers={ACCOUNT_ID_HEADER: "acct-healthy"}) as r:
            lines = [line for line in r.iter_lines() if line.startswith("data: ")]
        done["status"], done["lines"] = r.status_code, lines

    stream = threading.Thread(target=healthy_stream)
    stream.start()
    time.sleep(0.5)
    statuses: list[int] = []

    @settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(PARAMS)
    def one(params: dict) -> None:
        body = json.dumps({"model": MODEL, "prompt": "Hi", "max_tokens": 1, **params})  # NaN/Infinity as Python writes
        r = httpx.post(f"{worker.base}/v1/completions", content=body, timeout=120,
                       headers={"content-type": "application/json", ACCOUNT_ID_HEADER: "acct-fuzz"})
        statuses.append(r.status_code)
        assert r.status_code < 500, (params, r.text)
        if r.status_code != 200:
            err = r.json()["error"]
            assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"

    one()
    stream.join(180)
    assert done.get("status") == 200
    lines = done["lines"]
    assert lines[-1] == "data: [DONE]" and not any('"error"' in line for line in lines)
    usage = json.loads(lines[-2][len("data: "):])["usage"]
    assert usage["completion_tokens"] == 48
    assert 200 in statuses and any(s == 400 for s in statuses)  # both sides of the bounds were exercised
