"""A real worker (`python -m workers.server`, real SmolLM2, real embedded Redis) shared by the server tests.

The worker is a subprocess, so the CLI, uvicorn's signal handling and the engine thread are all the real thing.
It is started once per session; a test that stops it (the SIGTERM test) leaves the next user to start a fresh one.
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from devstack.services import free_port

REPO = Path(__file__).resolve().parents[3]


@dataclass
class RunningWorker:
    proc: subprocess.Popen
    base: str
    worker_id: str
    log_path: Path

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.base}/v1", api_key="x", max_retries=0, timeout=120)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def start_worker(model_path: Path, log_dir: Path, extra_env: dict[str, str] | None = None) -> RunningWorker:
    port = free_port()
    worker_id = f"test-{uuid.uuid4().hex[:8]}"
    log_path = log_dir / f"worker-{worker_id}.log"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'platform'}", **(extra_env or {})}
    cmd = [
        sys.executable, "-m", "workers.server", "--model", str(model_path), "--host", "127.0.0.1",
        "--port", str(port), "--worker-id", worker_id, "--redis-url", os.environ["REDIS_URL"],
        "--region", "test", "--log-level", "warning",
        "--num-kv-blocks", "256",  # 4096 tokens of KV (fp32, 45 KiB/token: 180 MiB), not the 1 GiB default
    ]
    log = log_path.open("wb")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    worker = RunningWorker(proc, f"http://127.0.0.1:{port}", worker_id, log_path)
    deadline = time.monotonic() + 120  # model load is ~10 s alone, more on a busy 2-core box
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            if httpx.get(f"{worker.base}/health", timeout=1).status_code == 200:
                return worker
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            worker.stop()
            raise RuntimeError(f"worker did not come up:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.2)


class WorkerHolder:
    def __init__(self, model_path: Path, log_dir: Path):
        self._model_path = model_path
        self._log_dir = log_dir
        self.current: RunningWorker | None = None

    def get(self) -> RunningWorker:
        if self.current is None or self.current.proc.poll() is not None:
            self.current = start_worker(self._model_path, self._log_dir)
        return self.current

    def take(self) -> RunningWorker:
        """Hands the running worker to a test that will stop it; later users get a fresh one."""
        worker, self.current = self.get(), None
        return worker

    def close(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None


@pytest.fixture(scope="session")
def worker_holder(smollm2_gguf_path, tmp_path_factory):
    holder = WorkerHolder(smollm2_gguf_path, tmp_path_factory.mktemp("workers"))
    try:
        yield holder
    finally:
        holder.close()


@pytest.fixture
def worker(worker_holder) -> RunningWorker:
    return worker_holder.get()


@pytest.fixture
def client(worker) -> openai.OpenAI:
    c = worker.client()
    try:
        yield c
    finally:
        c.close()
