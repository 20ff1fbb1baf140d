"""hearth adapters upload ./my-lora --base smollm2-135m-instruct --name support-bot | list | delete NAME
hearth routes create support --variant accounts/me/models/support-v3=90 --variant accounts/me/models/support-v4=10

Talks to the control plane with an API key: HEARTH_API_KEY (hk_…) and HEARTH_API_BASE (default
http://127.0.0.1:8000). Exit status 0 on success, 1 when the API refuses, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import httpx

from hearth_cli import routes as routes_cli

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
DEFAULT_BASE = "http://127.0.0.1:8000"


class CliError(Exception):
    """Something to tell the user, then exit 1."""


def _client(http: httpx.Client | None) -> httpx.Client:
    if http is not None:
        return http
    key = os.environ.get("HEARTH_API_KEY", "")
    if not key.startswith("hk_"):
        raise CliError("Set HEARTH_API_KEY to one of your Hearth API keys (hk_…).")
    base = os.environ.get("HEARTH_API_BASE", DEFAULT_BASE).rstrip("/")
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=300)


def _check(response: httpx.Response) -> httpx.Response:
    if response.status_code < 400:
        return response
    try:
        body = response.json()
    except ValueError:
        body = response.text[:500]
    if isinstance(body, dict):
        parts = [f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in body.items()]
        body = "; ".join(parts)
    raise CliError(f"HTTP {response.status_code}: {body}")


def _files_of(path: Path) -> list[Path]:
    if path.is_dir():
        found = [path / n for n in ADAPTER_FILES if (path / n).is_file()]
        if len(found) != len(ADAPTER_FILES):
            raise CliError(f"{path} must hold {' and '.join(ADAPTER_FILES)} (peft's save_pretrained writes them).")
        return found
    if path.is_file():
        return [path]  # an archive: the server checks it
    raise CliError(f"{path} does not exist.")


def _row(a: dict) -> str:
    reason = f"  ({a['failure_reason']})" if a.get("failure_reason") else ""
    return f"{a['name']:<24} {a['status']:<10} {a['base_model']:<28} {a['model']}  uid={a['uid']}{reason}"


def _upload(http: httpx.Client, args: argparse.Namespace, out: TextIO) -> None:
    paths = _files_of(Path(args.path))
    handles = [p.open("rb") for p in paths]
    try:
        files = [("files", (p.name, h, "application/octet-stream")) for p, h in zip(paths, handles, strict=True)]
        created = _check(http.post("/api/v1/adapters", data={"name": args.name, "base_model": args.base},
                                   files=files)).json()
    finally:
        for h in handles:
            h.close()
    print(f"uploaded {created['name']} (uid {created['uid']}): {created['status']}", file=out)
    if not args.wait:
        return
    deadline = time.monotonic() + args.wait
    while created["status"] in ("pending", "validating") and time.monotonic() < deadline:
        time.sleep(1)
        created = _check(http.get(f"/api/v1/adapters/{created['uid']}")).json()
    print(_row(created), file=out)
    if created["status"] == "failed":
        raise CliError(f"validation failed: {created['failure_reason']}")


def _find(http: httpx.Client, name_or_uid: str) -> dict:
    for a in _check(http.get("/api/v1/adapters")).json():
        if name_or_uid in (a["name"], a["uid"]):
            return a
    raise CliError(f"You have no adapter named '{name_or_uid}'.")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hearth", description="Hearth control plane from the command line.")
    top = parser.add_subparsers(dest="group", required=True)
    adapters = top.add_parser("adapters", help="LoRA adapters").add_subparsers(dest="command", required=True)
    up = adapters.add_parser("upload", help="upload a PEFT folder or a .zip / .tar.gz of one")
    up.add_argument("path")
    up.add_argument("--base", required=True, help="base model slug, e.g. smollm2-135m-instruct")
    up.add_argument("--name", required=True, help="lowercase letters, digits, '-' and '_'")
    up.add_argument("--wait", type=float, default=0, metavar="SECONDS", help="wait for validation to finish")
    adapters.add_parser("list", help="list your adapters")
    rm = adapters.add_parser("delete", help="delete an adapter (by name or uid)")
    rm.add_argument("name")
    routes_cli.add_parser(top)
    return parser


def main(argv: Sequence[str] | None = None, *, http: httpx.Client | None = None, out: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    out = out or sys.stdout
    try:
        client = _client(http)
        if args.group == "routes":
            routes_cli.run(client, args, out, _check, CliError)
        elif args.command == "upload":
            _upload(client, args, out)
        elif args.command == "list":
            for a in _check(client.get("/api/v1/adapters")).json():
                print(_row(a), file=out)
        elif args.command == "delete":
            found = _find(client, args.name)
            _check(client.delete(f"/api/v1/adapters/{found['uid']}"))
            print(f"deleted {found['name']} (uid {found['uid']})", file=out)
    except CliError as exc:
        print(f"hearth: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"hearth: can't reach the Hearth API: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
