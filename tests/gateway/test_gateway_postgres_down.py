"""Issue 12, item 7: what the gateway does while Postgres is away (README, "While Redis or Postgres is down"): a key,
the catalog and the prices it has cached keep serving for `stale_serve_s` past their TTL; a key it has never seen is
a 503 in OpenAI's shape (not a 500, not a 30 s hang); past the bound the cached key is a 503 too; once Postgres is back
everything answers again. Postgres is taken away for real, at the network: the gateway reaches the session's database
through a TCP relay that the test cuts (listener closed, every open connection dropped) and restores."""

import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import STUB_MODEL
from gateway_testlib import sdk, wait_for_workers
from psycopg.conninfo import conninfo_to_dict, make_conninfo

pytestmark = pytest.mark.django_db(transaction=True)
MESSAGES = [{"role": "user", "content": "hi"}]


class TcpRelay:
    """127.0.0.1:<port> -> the database (TCP or unix socket); `cut()` drops everything, `restore()` listens again."""

    def __init__(self, target: tuple[str, int] | str) -> None:
        self._target = target
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.port = 0
        self.restore()

    def _connect_target(self) -> socket.socket:
        if isinstance(self._target, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self._target)
            return sock
        return socket.create_connection(self._target)

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            upstream = self._connect_target()
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        assert self._listener is not None
        try:  # wakes the accept() blocked in the relay's thread; close() alone leaves it accepting
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


@pytest.fixture
def relay(gateway_dsn):
    params = conninfo_to_dict(gateway_dsn)
    host, port = params.get("host") or "127.0.0.1", int(params.get("port") or 5432)
    target: tuple[str, int] | str = str(Path(host) / f".s.PGSQL.{port}") if host.startswith("/") else (host, port)
    relay = TcpRelay(target)
    dsn = make_conninfo(gateway_dsn, host="127.0.0.1", port=str(relay.port))
    yield relay, dsn
    relay.cut()


def _chat(gateway_url: str, secret: str) -> httpx.Response:
    return httpx.post(f"{gateway_url}/v1/chat/completions", json={"model": STUB_MODEL, "messages": MESSAGES},
                      headers={"authorization": f"Bearer {secret}"}, timeout=30)


def test_cached_keys_serve_unknown_keys_get_503_and_all_recover(gateway_factory, stub_worker, make_key, relay):
    relay, dsn = relay
    gateway = gateway_factory(database_url=dsn, key_cache_ttl_s=0.2, catalog_ttl_s=0.2, price_cache_ttl_s=0.2,
                              stale_serve_s=4.0, db_pool_timeout_s=1.0)
    stub_worker("stub-0", "--chunks", "3")
    wait_for_workers(gateway, STUB_MODEL)
    _key, known = make_key()
    _other, unknown = make_key()
    first = _chat(gateway.url, known)
    assert first.status_code == 200 and first.json()["usage"]["cost"]

    relay.cut()
    cut_at = time.monotonic()
    time.sleep(0.4)  # past every TTL: each answer below needs Postgres or its stale copy
    served = _chat(gateway.url, known)
    assert served.status_code == 200, served.text
    assert served.json()["usage"]["cost"] == first.json()["usage"]["cost"]  # stale prices, same cost
    started = time.monotonic()
    refused = _chat(gateway.url, unknown)
    assert time.monotonic() - started < 10  # the pool's timeout, not a hang
    assert refused.status_code == 503
    assert refused.json()["error"] == {"message": refused.json()["error"]["message"], "type": "server_error",
                                       "param": None, "code": "service_unavailable"}

    time.sleep(max(0.0, cut_at + 0.2 + 4.0 + 0.3 - time.monotonic()))  # past TTL + stale_serve_s
    late = _chat(gateway.url, known)
    assert late.status_code == 503 and late.json()["error"]["code"] == "service_unavailable"

    relay.restore()
    deadline = time.monotonic() + 30
    while (response := _chat(gateway.url, unknown)).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert response.status_code == 200, response.text
    assert sdk(gateway.url, known).chat.completions.create(model=STUB_MODEL, messages=MESSAGES).choices
