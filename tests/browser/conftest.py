"""A whole Hearth (`python -m devstack`: Postgres, Redis, control plane with the built dashboard, Celery, billing
ingest, gateway, a CPU worker with SmolLM2) on free ports under a temporary HEARTH_HOME, and Debian's chromium
driven by Playwright. No chromium is a failure with the fix in the message, never a skip."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.services import REPO_ROOT, free_port

CHROMIUM = os.environ.get("HEARTH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync"]
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
STACK_START_S = 420  # postgres + migrations + the worker loading SmolLM2 on a shared 2-core box


@dataclass(frozen=True)
class Stack:
    url: str  # the dashboard / control plane
    gateway: str  # OpenAI base URL, ending in /v1
    home: Path


def _build_frontend() -> None:
    # `make frontend` rebuilds only when sources changed (stamp file); the SPA must be current for these tests.
    result = subprocess.run(["make", "-s", "frontend"], cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode != 0 or not (REPO_ROOT / "frontend" / "dist" / "index.html").exists():
        pytest.fail(f"building the dashboard failed (make frontend):\n{result.stdout}\n{result.stderr}")


# Module scope: the stack and the browser stop when test_dashboard.py is done, so the rest of the suite neither
# shares the CPU with an idle `make up` nor inherits Playwright's event loop (its sync API keeps one running in the
# main thread while it lives, and asyncio.run() in later tests then refuses to start).
@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    _build_frontend()
    # Not under pytest's basetemp (other runs reset it to 0700; postgres runs as another user when we are root),
    # and short, for postgres' unix socket path.
    home = Path(tempfile.mkdtemp(prefix="hearth-br-"))
    port, gateway_port, worker_port = free_port(), free_port(), free_port()
    skip = ("DATABASE_URL", "REDIS_URL", "HEARTH_TEST_DATABASE_NAME", "HEARTH_STRIPE_API_KEY", "HEARTH_UP_WITHOUT")
    env = {k: v for k, v in os.environ.items() if k not in skip}
    gateway = f"http://127.0.0.1:{gateway_port}/v1"
    env.update(HEARTH_HOME=str(home), HEARTH_GATEWAY_URL=gateway, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack", "--home", str(home), "--port", str(port), "--gateway-port",
         str(gateway_port), "--worker-port", str(worker_port), "--embedding-port", str(free_port()), "--stripe", "local"],
        cwd=REPO_ROOT / "platform", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + STACK_START_S
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"devstack not up within {STACK_START_S} s:\n{''.join(output)}\nlogs: {home}/logs")
            if line is None:
                pytest.fail(f"devstack exited with {proc.wait()}:\n{''.join(output)}\n{_logs(home)}")
            output.append(line)
            if line.strip().startswith("logs "):  # the banner's last line: everything answers
                break
        if "gateway" not in "".join(output) or "worker w0" not in "".join(output):
            pytest.fail(f"devstack started without the gateway or the worker:\n{''.join(output)}")
        yield Stack(url=f"http://127.0.0.1:{port}", gateway=gateway, home=home)
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)


def _logs(home: Path, tail: int = 40) -> str:
    parts = []
    for log in sorted((home / "logs").glob("*.log")):
        text = log.read_text(errors="replace").splitlines()[-tail:]
        parts.append(f"--- {log.name}\n" + "\n".join(text))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not (Path(CHROMIUM).exists() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's chromium. Run `make browser-deps` "
                    "(apt-get install -y chromium) or set HEARTH_CHROMIUM to a Chromium binary.")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright Python package is missing: pip install -e '.[dev]' (make venv)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture(scope="session")
def peft_adapter(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A real peft save_pretrained folder for SmolLM2's shapes (2 layers: an adapter for layers 0-1 of SmolLM2),
    with init_lora_weights=False so B isn't zero."""
    import peft
    import transformers

    cfg = transformers.LlamaConfig(vocab_size=256, hidden_size=576, intermediate_size=1536, num_hidden_layers=2,
                                   num_attention_heads=9, num_key_value_heads=3, head_dim=64)
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    out = tmp_path_factory.mktemp("peft")
    peft.get_peft_model(transformers.LlamaForCausalLM(cfg), lora).save_pretrained(out)
    return [out / "adapter_config.json", out / "adapter_model.safetensors"]
