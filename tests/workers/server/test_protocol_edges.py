"""Protocol edge cases the real engine can't be made to hit on demand, on a stand-in engine (tests/workers/server/
fake_engine.py, same interface) behind the real app, uvicorn and openai SDK: the shared-secret header, an engine
step that raises mid-stream (the request ends with an error event, the worker keeps serving), and param mapping
from pydantic error locations. The real-model behaviour is covered by the other modules."""

import asyncio
import gc
import time

import httpx
import openai
import pytest

from tests.workers.server._serve import MODEL, serve_in_thread
from tests.workers.server.fake_engine import FakeEngine
from workers.engine.sampling_params import SamplingParams
from workers.server.app import ServerSettings, create_app
from workers.server.async_engine import AsyncEngine
from workers.server.errors import _param_from_loc

MESSAGES = [{"role": "user", "content": "Hello there"}]


def test_worker_secret_guards_the_api_but_not_health():
    app = create_app(FakeEngine(), ServerSettings(worker_secret="s3cret"))
    with serve_in_thread(app) as base:
        with openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0) as bare:
            with pytest.raises(openai.AuthenticationError) as exc:
                bare.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)
            assert exc.value.code == "invalid_worker_secret"
        headers = {"x-hearth-worker-secret": "wrong"}
        assert httpx.get(f"{base}/v1/models", headers=headers).status_code == 401
        good = {"x-hearth-worker-secret": "s3cret"}
        with openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, default_headers=good) as ok:
            r = ok.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)
            assert r.usage.completion_tokens == 2
        assert httpx.get(f"{base}/health").status_code == 200
        assert httpx.get(f"{base}/metrics").status_code == 200


def test_engine_failure_ends_the_stream_with_an_error_and_the_worker_serves_on():
    engine = FakeEngine()
    with serve_in_thread(create_app(engine, ServerSettings())) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0)
        engine.fail_next_step = True
        with pytest.raises(openai.APIError) as exc:
            list(client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4, stream=True))
        assert "engine failed" in exc.value.message
        engine.fail_next_step = True
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4)
        r = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4)
        assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 4
        client.close()


def test_unknown_route_and_method_come_out_in_openai_shape():
    with serve_in_thread(create_app(FakeEngine(), ServerSettings())) as base:
        r = httpx.get(f"{base}/v1/nope")
        assert r.status_code == 404 and set(r.json()["error"]) == {"message", "type", "param", "code"}
        r = httpx.get(f"{base}/v1/chat/completions")
        assert r.status_code == 405 and r.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("loc", "param"),
    [
        (("body", "temperature"), "temperature"),
        (("stop", "str"), "stop"),
        (("stop", "list[str]", 0), "stop.[0]"),
        (("messages", 0, "content", "list[union[TextContentPart,OtherContentPart]]", 1, "TextContentPart", "text"),
         "messages.[0].content.[1].text"),
        ((), None),
    ],
)
def test_param_names_drop_union_member_segments(loc, param):
    assert _param_from_loc(loc) == param


def test_a_stream_dropped_unread_aborts_its_request():
    # max_tokens=None: the stand-in never finishes on its own, so only the abort can end it.
    async def scenario() -> None:
        engine = FakeEngine()
        loop_engine = AsyncEngine(engine)
        loop_engine.start()
        try:
            stream = await loop_engine.add_request("dropped", [5, 6, 7], SamplingParams(max_tokens=None))
            assert engine.has_unfinished_requests()
            del stream
            gc.collect()
            deadline = time.monotonic() + 10
            while engine.has_unfinished_requests() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert not engine.has_unfinished_requests()
        finally:
            await loop_engine.stop()

    asyncio.run(scenario())
