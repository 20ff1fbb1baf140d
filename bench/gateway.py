"""Gateway overhead: requests/s and latency through the gateway vs straight to the upstream, at concurrency 1, 32
and 256, for a stub upstream that answers instantly (non-streamed) and one that streams 100 chunks; then the
non-streamed case through two gateway processes (target: 1,000 req/s on the 2-core dev machine).

    .venv/bin/python bench/gateway.py [--seconds 5]

Starts its own embedded Postgres and Redis under .hearth/bench-gateway, migrates, creates an account and key with the
control plane's services, starts stub workers (tests/gateway/stub_worker.py) and `python -m gateway` subprocesses.
The load generator is aiohttp in this process, so on 2 cores it competes with the gateway for CPU: figures are
lower bounds. Added latency = gateway p50/p99 minus direct p50/p99 at the same concurrency. "gw CPU ms/req" is the
gateway processes' CPU time (user + system, from /proc) per request served: the figure least moved by other load.
"""

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "platform")]

from devstack.services import EmbeddedPostgres, EmbeddedRedis, free_port, reset_dir  # noqa: E402

from bench._results import write_section  # noqa: E402
from contracts import WORKERS_SET, worker_key  # noqa: E402

HOME = ROOT / ".hearth" / "bench-gateway"
BODY = {"model": "stub-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}


def setup_rows(database_url: str, redis_url: str) -> str:
    os.environ.update(DATABASE_URL=database_url, REDIS_URL=redis_url, DJANGO_SETTINGS_MODULE="hearth_platform.settings")
    import django

    django.setup()
    from accounts.models import Account
    from catalog.models import BaseModel
    from django.core.management import call_command
    from keys.services import api_key_create

    call_command("migrate", verbosity=0)
    BaseModel.objects.get_or_create(slug="stub-model", defaults=dict(
        public_name="accounts/hearth/models/stub-model", display_name="stub", architecture="llama",
        context_length=8192, weights_uri="stub://", price_input_per_mtok="0", price_cached_input_per_mtok="0",
        price_output_per_mtok="0"))
    account = Account.objects.create(slug=f"bench-{time.time_ns()}", name="bench", rpm_limit=2_000_000_000, tpm_limit=2_000_000_000)
    return api_key_create(account=account, name="bench")[1]


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def load(url: str, headers: dict[str, str], concurrency: int, seconds: float, stream: bool) -> dict[str, float]:
    body = {**BODY, "stream": stream}
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        end = time.perf_counter() + seconds

        async def one_client() -> None:
            nonlocal errors
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                async with session.post(url, json=body) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                        continue
                latencies.append(time.perf_counter() - t0)

        t_start = time.perf_counter()
        await asyncio.gather(*[one_client() for _ in range(concurrency)])
        elapsed = time.perf_counter() - t_start
    latencies.sort()
    pick = (lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000) if latencies else (
        lambda q: float("nan"))
    return {"rps": len(latencies) / elapsed, "p50": pick(0.5), "p99": pick(0.99), "errors": errors}


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its direct children (uvicorn --workers N forks them)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--concurrency", default="1,32,256")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    reset_dir(HOME)
    pg, rd = EmbeddedPostgres(HOME / "postgres"), EmbeddedRedis(HOME / "redis")
    procs: list[subprocess.Popen] = []
    try:
        database_url, redis_url = pg.start(), rd.start()
        secret = setup_rows(database_url, redis_url)
        stubs = {}
        for name, extra in (("instant", ["--chunks", "16"]), ("stream100", ["--chunks", "100"])):
            port = free_port()
            procs.append(start(["-m", "tests.gateway.stub_worker", "--port", str(port), *extra]))
            stubs[name] = f"http://127.0.0.1:{port}"
            wait_http(stubs[name] + "/health")
        env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "HEARTH_GATEWAY_SPOOL_DIR": str(HOME / "spool")}
        rows = ["| upstream | path | concurrency | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | gw CPU ms/req |",
                "|---|---|---|---|---|---|---|---|---|"]
        summary = []
        for gateways in (1, 2):
            port = free_port()
            gw = start(["-m", "gateway", "--port", str(port), "--workers", str(gateways), "--log-level", "warning"],
                       env)
            procs.append(gw)
            wait_http(f"http://127.0.0.1:{port}/health")
            for name, stub_url in stubs.items():
                if gateways == 2 and name != "instant":
                    continue
                _register(redis_url, stub_url)
                time.sleep(1.2)  # the gateways' registry refresh
                for c in levels if gateways == 1 else [256]:
                    stream = name == "stream100"
                    direct = asyncio.run(load(stub_url + "/v1/chat/completions", {}, c, args.seconds, stream))
                    cpu0 = tree_cpu_s(gw.pid)
                    via = asyncio.run(load(f"http://127.0.0.1:{port}/v1/chat/completions",
                                           {"Authorization": f"Bearer {secret}"}, c, args.seconds, stream))
                    cpu_ms = 1000 * (tree_cpu_s(gw.pid) - cpu0) / max(1.0, via["rps"] * args.seconds)
                    label = f"gateway x{gateways}"
                    rows.append(f"| {name} | direct | {c} | {direct['rps']:.0f} | {direct['p50']:.2f} | "
                                f"{direct['p99']:.2f} | | | |")
                    rows.append(f"| {name} | {label} | {c} | {via['rps']:.0f} | {via['p50']:.2f} | {via['p99']:.2f} | "
                                f"{via['p50'] - direct['p50']:.2f} | {via['p99'] - direct['p99']:.2f} | {cpu_ms:.2f} |")
                    line = (f"gateway {name} x{gateways} c={c}: {via['rps']:.0f} req/s (direct {direct['rps']:.0f}), "
                            f"added p50 {via['p50'] - direct['p50']:.2f} ms p99 {via['p99'] - direct['p99']:.2f} ms, "
                            f"gateway CPU {cpu_ms:.2f} ms/req, errors {via['errors']}, load {os.getloadavg()[0]:.1f}")
                    print(line, flush=True)
                    summary.append(line)
                _unregister(redis_url)
            gw.terminate()
            gw.wait(20)
        body = "\n".join(rows) + (f"\n\nLoad average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs. "
                                  f"Each cell ran {args.seconds:g} s; load generator (aiohttp) shares the CPU with "
                                  "the gateway and the stubs. Targets: added p50 <= 2 ms and p99 <= 10 ms at c=32; "
                                  ">= 1,000 non-streamed req/s through two gateway processes.")
        write_section("gateway", body)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(20)
        rd.stop()
        pg.stop()


def _register(redis_url: str, url: str) -> None:
    import json

    import redis

    client = redis.Redis.from_url(redis_url)
    beat = {"worker_id": "bench", "url": url, "base_model": "stub-model", "region": "local", "max_loras": 0,
            "resident_adapters": [], "num_running": 0, "num_waiting": 0, "num_free_blocks": 1, "updated_at": 0}
    client.set(worker_key("bench"), json.dumps(beat))  # no expiry: the stub doesn't heartbeat in the bench
    client.sadd(WORKERS_SET, "bench")
    client.close()


def _unregister(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.delete(worker_key("bench"))
    client.srem(WORKERS_SET, "bench")
    client.close()


if __name__ == "__main__":
    main()
