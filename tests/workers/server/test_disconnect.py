"""A client that goes away mid-request aborts its sequence: the engine stops generating and frees its KV blocks."""

import json

import httpx

from tests.workers.server._serve import MODEL, metric, wait_until

LABELS = {"model_name": MODEL}
ABORTED = {**LABELS, "finish_reason": "abort"}
# Long enough that it can only end by abort in this test (ignore_eos: no early stop).
LONG = {"max_tokens": 2000, "ignore_eos": True, "temperature": 0}


def _idle_and_freed(base: str) -> bool:
    return (
        metric(base, "hearth_worker_num_running", LABELS) == 0
        and metric(base, "hearth_worker_kv_blocks_used", LABELS) == 0
    )


def test_stream_disconnect_aborts_and_frees_blocks(worker):
    assert wait_until(lambda: _idle_and_freed(worker.base))
    aborted_before = metric(worker.base, "hearth_worker_requests_finished_total", ABORTED)
    tokens_before = metric(worker.base, "hearth_worker_generation_tokens_total", LABELS)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Count to a thousand."}], "stream": True, **LONG}
    with httpx.Client(timeout=60) as http:
        with http.stream("POST", f"{worker.base}/v1/chat/completions", json=body) as resp:
            assert resp.status_code == 200
            seen = 0
            for line in resp.iter_lines():
                if line.startswith("data: ") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    seen += 1
                if seen == 3:
                    # Mid-generation: the sequence runs and holds KV blocks right now.
                    assert metric(worker.base, "hearth_worker_num_running", LABELS) == 1
                    assert metric(worker.base, "hearth_worker_kv_blocks_used", LABELS) > 0
                    break  # closing the line iterator mid-body drops the connection
    assert wait_until(lambda: _idle_and_freed(worker.base), timeout=30)
    assert metric(worker.base, "hearth_worker_requests_finished_total", ABORTED) == aborted_before + 1
    generated = metric(worker.base, "hearth_worker_generation_tokens_total", LABELS) - tokens_before
    assert 3 <= generated < 1000


def test_non_streamed_disconnect_aborts_too(worker):
    assert wait_until(lambda: _idle_and_freed(worker.base))
    aborted_before = metric(worker.base, "hearth_worker_requests_finished_total", ABORTED)
    body = {"model": MODEL, "prompt": "Once upon a time", **LONG}
    try:
        httpx.post(f"{worker.base}/v1/completions", json=body, timeout=httpx.Timeout(60, read=1.5))
        raise AssertionError("2000 tokens can't be generated within the read timeout on this CPU")
    except httpx.ReadTimeout:
        pass  # the client gives up and closes the connection
    assert wait_until(lambda: _idle_and_freed(worker.base), timeout=30)
    assert metric(worker.base, "hearth_worker_requests_finished_total", ABORTED) == aborted_before + 1
