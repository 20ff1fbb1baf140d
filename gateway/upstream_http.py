"""A small HTTP/1.1 client for gateway -> worker traffic: asyncio protocols, httptools' parser (uvicorn's), and a
keep-alive pool per worker address.

Why not httpx: profiled under bench/gateway.py, httpx + httpcore took ~60% of the gateway's CPU per request (the pool
polls every idle connection's socket on each request, and anyio wraps every read and write); this client writes a
request in one `transport.write` and parses with httptools' C parser. It speaks only what workers need: POST with a
body, responses with Content-Length or chunked bodies, keep-alive. The worker is ours and internal, so there is no
TLS, no redirects, no proxies.
"""

import asyncio
import codecs
import socket
from collections import deque
from collections.abc import AsyncIterator

import httptools


class UpstreamHTTPError(Exception):
    """Any failure talking to a worker."""


class NotStarted(UpstreamHTTPError):
    """The worker never answered this request (connect refused or timed out, or the connection closed before the
    status line): safe to send to another worker."""


class ResponseFailed(UpstreamHTTPError):
    """The worker's answer broke off (connection lost mid-body, malformed HTTP, or the read timed out)."""


_PAUSE_ABOVE = 1 << 20  # stop reading the socket while this many body bytes wait for the client


class _Connection(asyncio.Protocol):
    def __init__(self, pool: "_HostPool") -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.got_bytes = False
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.error: UpstreamHTTPError | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports don't subclass asyncio's
        sock = transport.get_extra_info("socket")
        if sock is not None:  # without it Nagle can hold a write until the worker's delayed ACK (~20-40 ms)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ResponseFailed(f"malformed HTTP from the worker ({exc})"))
            self.transport.close()  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            kind = ResponseFailed if self.got_bytes else NotStarted
            self._fail(kind("the worker closed the connection"))

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()  # read now: the parser resets at the message's end
        self.head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _PAUSE_ABOVE and not self.paused:
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    # internals
    def _fail(self, error: UpstreamHTTPError) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def wait(self, timeout: float) -> None:
        """Until the parser made progress (head, body bytes, end) or the connection failed."""
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        timer = loop.call_later(timeout, self._fail, ResponseFailed(f"no data from the worker for {timeout:g} s"))
        try:
            await self.waiter
        finally:
            timer.cancel()
            self.waiter = None

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        if self.paused:
            self.paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        return data


class UpstreamResponse:
    """One worker answer: status, then the body read whole (`aread`) or as lines (`aiter_lines`). `aclose` returns
    the connection to the pool when the answer was read to its end, and closes it otherwise (which tells the worker
    to abort the request)."""

    def __init__(self, conn: _Connection, read_timeout_s: float) -> None:
        self._conn = conn
        self._timeout = read_timeout_s
        self._released = False
        self.status_code = conn.status

    async def _more(self) -> bytes | None:
        """The next body bytes; None at the end of the body."""
        conn = self._conn
        while not conn.chunks:
            if conn.complete:
                return None
            if conn.error is not None:
                raise conn.error if isinstance(conn.error, ResponseFailed) else ResponseFailed(str(conn.error))
            await conn.wait(self._timeout)
        return conn.take()

    async def aread(self) -> bytes:
        parts = []
        while (data := await self._more()) is not None:
            parts.append(data)
        return b"".join(parts)

    async def aiter_lines(self) -> AsyncIterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        while (data := await self._more()) is not None:
            pending += decoder.decode(data)
            *lines, pending = pending.split("\n")
            for line in lines:
                yield line.removesuffix("\r")
        pending += decoder.decode(b"", final=True)
        if pending:
            yield pending.removesuffix("\r")

    async def aclose(self) -> None:
        if self._released:
            return
        self._released = True
        conn = self._conn
        reusable = conn.complete and conn.keep_alive and conn.error is None and not conn.closed
        if reusable:
            conn.pool.put(conn)
        elif conn.transport is not None:
            conn.transport.close()


class _HostPool:
    def __init__(self, host: str, port: int, prefix: str, max_idle: int) -> None:
        self.host, self.port, self.prefix = host, port, prefix
        self.idle: list[_Connection] = []
        self.max_idle = max_idle

    def get(self) -> _Connection | None:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    def put(self, conn: _Connection) -> None:
        conn._reset()
        if len(self.idle) < self.max_idle:
            self.idle.append(conn)
        else:
            conn.transport.close()  # type: ignore[union-attr]

    def close(self) -> None:
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()
        self.idle.clear()


class UpstreamClient:
    def __init__(self, *, connect_timeout_s: float, read_timeout_s: float, max_idle_per_worker: int = 256) -> None:
        self._connect_timeout = connect_timeout_s
        self._read_timeout = read_timeout_s
        self._max_idle = max_idle_per_worker
        self._pools: dict[tuple[str, int], _HostPool] = {}

    async def post(self, base_url: str, path: str, body: bytes, headers: dict[str, str]) -> UpstreamResponse:
        """Sends the request and waits for the status line and headers; raises NotStarted or ResponseFailed."""
        pool = self._pool(base_url)
        head = (f"POST {pool.prefix}{path} HTTP/1.1\r\nhost: {pool.host}:{pool.port}\r\ncontent-length: {len(body)}\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode("latin-1")
        conn = pool.get()
        if conn is not None:
            try:
                return await self._exchange(conn, head + body)
            except NotStarted:
                pass  # the worker closed an idle keep-alive connection as we reused it: once more on a fresh one
        return await self._exchange(await self._connect(pool), head + body)

    async def _exchange(self, conn: _Connection, request: bytes) -> UpstreamResponse:
        conn.transport.write(request)  # type: ignore[union-attr]
        try:
            while not conn.head_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait(self._read_timeout)
        except BaseException:
            if conn.transport is not None:
                conn.transport.close()
            raise
        return UpstreamResponse(conn, self._read_timeout)

    async def _connect(self, pool: _HostPool) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(lambda: _Connection(pool), pool.host, pool.port)
        except (OSError, TimeoutError) as exc:
            raise NotStarted(f"could not connect to {pool.host}:{pool.port} ({type(exc).__name__})") from exc
        return conn

    def _pool(self, base_url: str) -> _HostPool:
        pool = self._pools.get(base_url)
        if pool is None:  # http://host[:port][/prefix], as workers advertise themselves
            hostport, slash, prefix = base_url.removeprefix("http://").partition("/")
            host, colon, port = hostport.rpartition(":")
            host, port_num = (host, int(port)) if colon else (hostport, 80)
            pool = self._pools[base_url] = _HostPool(host, port_num, (slash + prefix).rstrip("/"), self._max_idle)
        return pool

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
