"""The gateway's own HTTP/1.1 client against raw asyncio servers that misbehave on purpose: a keep-alive connection
the server drops as it is reused, a chunked body whose UTF-8 characters straddle chunks, a connection lost mid-body,
a port nobody listens on, and a body larger than the read-pause threshold."""

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from gateway.upstream_http import NotStarted, ResponseFailed, UpstreamClient

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    return head + await reader.readexactly(length)


async def _serve(handler: Handler) -> tuple[asyncio.Server, str, list[int]]:
    connections: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections))
        try:
            await handler(reader, writer, len(connections) - 1)
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", connections


def _ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


async def test_reused_connection_dropped_by_the_server_is_retried_on_a_fresh_one():
    requests_seen: dict[int, int] = {}

    async def handler(reader, writer, n):
        request = await _read_request(reader)
        requests_seen[n] = 1
        assert request.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n") and request.endswith(b'{"n":1}')
        writer.write(_ok(b'{"conn":%d}' % n))
        await writer.drain()
        await _read_request(reader)  # the next request on this connection: dropped unanswered, as an idle timeout would
        requests_seen[n] = 2

    server, url, connections = await _serve(handler)
    client = UpstreamClient(connect_timeout_s=2, read_timeout_s=5)
    try:
        for expected in (b'{"conn":0}', b'{"conn":1}', b'{"conn":2}'):
            response = await client.post(url, "/v1/chat/completions", b'{"n":1}', {"content-type": "application/json"})
            assert response.status_code == 200 and await response.aread() == expected
            await response.aclose()  # read to the end: back to the pool, reused (and dropped) by the next post
        assert len(connections) == 3
        assert requests_seen[0] == requests_seen[1] == 2  # each was reused, dropped, and the post went on anew
    finally:
        await client.aclose()
        server.close()


async def test_chunked_lines_with_split_utf8_and_keep_alive():
    body = "data: é😀\n\ndata: [DONE]\n\n".encode()

    async def handler(reader, writer, n):
        for _ in range(2):
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            for i in range(0, len(body), 3):  # 3-byte chunks cut the 2- and 4-byte characters apart
                part = body[i : i + 3]
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    server, url, connections = await _serve(handler)
    client = UpstreamClient(connect_timeout_s=2, read_timeout_s=5)
    try:
        for _ in range(2):
            response = await client.post(url, "/v1/completions", b"{}", {})
            assert [line async for line in response.aiter_lines()] == ["data: é😀", "", "data: [DONE]", ""]
            await response.aclose()
        assert len(connections) == 1  # the second request reused the first connection
    finally:
        await client.aclose()
        server.close()


async def test_connection_lost_mid_body_fails_the_read_and_refused_connect_is_not_started():
    async def handler(reader, writer, n):
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"partial\":")
        await writer.drain()

    server, url, _ = await _serve(handler)
    client = UpstreamClient(connect_timeout_s=2, read_timeout_s=5)
    try:
        response = await client.post(url, "/x", b"{}", {})
        with pytest.raises(ResponseFailed):
            await response.aread()
        await response.aclose()
        server.close()
        await server.wait_closed()
        with pytest.raises(NotStarted):
            await client.post(url, "/x", b"{}", {})
    finally:
        await client.aclose()


async def test_large_body_is_read_whole_across_read_pauses():
    payload = bytes(range(256)) * (3 * 4096 + 7)  # ~3 MiB: over the 1 MiB pause threshold

    async def handler(reader, writer, n):
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(payload) + payload)
        await writer.drain()

    server, url, _ = await _serve(handler)
    client = UpstreamClient(connect_timeout_s=2, read_timeout_s=5)
    try:
        response = await client.post(url, "/x", b"{}", {})
        await asyncio.sleep(0.2)  # let the socket fill the buffer so reading pauses before we consume
        assert await response.aread() == payload
        await response.aclose()
    finally:
        await client.aclose()
        server.close()
