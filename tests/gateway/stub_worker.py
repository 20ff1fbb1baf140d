"""A stand-in worker speaking the OpenAI protocol, for the routing/failure tests and bench/gateway.py (the chat,
completions, streaming and usage tests use the real `workers.server`). Raw ASGI so that, as a benchmark upstream, it
costs as little as possible.

python -m tests.gateway.stub_worker --port P [--chunks 100] [--chunk-delay-ms 0] [--die-after-chunks N]
    [--redis-url URL --worker-id ID --base-model M --region R --adapters a,b]
GET /stats answers {"requests": n, "models": [...]} so tests can see where requests went.
"""

import argparse
import asyncio
import json
import os
import threading
import time
from typing import Any

import uvicorn

WORDS = [f" tok{i}" for i in range(1000)]


class StubWorker:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.requests = 0
        self.inflight = 0
        self.models: list[str] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        if scope["method"] == "GET":
            await self._json(send, 200, {"requests": self.requests, "models": self.models, "status": "ok"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        req = json.loads(body)
        self.requests += 1
        self.models.append(req.get("model"))
        self.inflight += 1
        try:
            await self._complete(send, path, req)
        finally:
            self.inflight -= 1

    async def _json(self, send: Any, status: int, obj: dict) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(obj).encode()})

    async def _complete(self, send: Any, path: str, req: dict) -> None:
        chat = path.endswith("/chat/completions")
        n = min(int(req.get("max_tokens") or self.args.chunks), self.args.chunks)
        prompt_tokens = 7
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n,
                 "prompt_tokens_details": {"cached_tokens": 0}}
        base = {"id": "cmpl-stub", "created": int(time.time()), "model": req["model"]}
        if not req.get("stream"):
            if self.args.die_after_chunks is not None:  # crash after the status line, before the body
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")]})
                await send({"type": "http.response.body", "body": b'{"id": "cmpl-stub", ', "more_body": True})
                await asyncio.sleep(0.05)
                os._exit(1)
            text = "".join(WORDS[i % 1000] for i in range(n))
            choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
                      if chat else {"index": 0, "text": text, "finish_reason": "length"})
            obj = {**base, "object": "chat.completion" if chat else "text_completion", "choices": [choice],
                   "usage": usage}
            await self._json(send, 200, obj)
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        obj_name = "chat.completion.chunk" if chat else "text_completion"
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        for i in range(n):
            if self.args.die_after_chunks is not None and i == self.args.die_after_chunks:
                os._exit(1)  # a worker crash: the connection drops mid-stream
            delta = {"content": WORDS[i % 1000]}
            choice = ({"index": 0, "delta": delta, "finish_reason": None} if chat
                      else {"index": 0, "text": WORDS[i % 1000], "finish_reason": None})
            chunk = {**base, "object": obj_name, "choices": [choice]}
            if include_usage:
                chunk["usage"] = None
            await send({"type": "http.response.body", "body": f"data: {json.dumps(chunk)}\n\n".encode(),
                        "more_body": True})
            if self.args.chunk_delay_ms:
                await asyncio.sleep(self.args.chunk_delay_ms / 1000)
        if include_usage:
            chunk = {**base, "object": obj_name, "choices": [], "usage": usage}
            await send({"type": "http.response.body", "body": f"data: {json.dumps(chunk)}\n\n".encode(),
                        "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


def _heartbeat(stub: StubWorker, args: argparse.Namespace) -> None:
    import redis

    from contracts import WORKERS_SET, worker_key

    client = redis.Redis.from_url(args.redis_url, socket_timeout=1, socket_connect_timeout=1)
    while True:
        beat = {"worker_id": args.worker_id, "url": f"http://127.0.0.1:{args.port}", "base_model": args.base_model,
                "region": args.region, "max_loras": 4, "resident_adapters": [a for a in args.adapters.split(",") if a],
                "num_running": stub.inflight, "num_waiting": 0, "num_free_blocks": 100, "updated_at": time.time()}
        try:
            client.set(worker_key(args.worker_id), json.dumps(beat), ex=3)
            client.sadd(WORKERS_SET, args.worker_id)
        except redis.RedisError:
            pass
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0)
    parser.add_argument("--die-after-chunks", type=int, default=None)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--worker-id", default="stub")
    parser.add_argument("--base-model", default="stub-model")
    parser.add_argument("--region", default="local")
    parser.add_argument("--adapters", default="")
    args = parser.parse_args()
    stub = StubWorker(args)
    if args.redis_url:
        threading.Thread(target=_heartbeat, args=(stub, args), daemon=True).start()
    uvicorn.run(stub, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools", access_log=False,
                log_level="warning")


if __name__ == "__main__":
    main()
