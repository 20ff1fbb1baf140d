"""hearth routes create NAME --variant MODEL=WEIGHT ... | set NAME --variant ... | list | stats NAME | delete NAME"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    import httpx


def add_parser(top: argparse._SubParsersAction) -> None:
    routes = top.add_parser("routes", help="A/B traffic splits between models").add_subparsers(dest="command",
                                                                                                 required=True)
    for name, text in (("create", "create a route"), ("set", "replace a route's variants and weights")):
        cmd = routes.add_parser(name, help=text)
        cmd.add_argument("name")
        cmd.add_argument("--variant", action="append", required=True, metavar="MODEL=WEIGHT",
                         help="e.g. accounts/me/models/support-v3=90 (repeat for each variant)")
    routes.add_parser("list", help="list your routes")
    stats = routes.add_parser("stats", help="per-variant requests, tokens, cost and latency")
    stats.add_argument("name")
    stats.add_argument("--start", help="ISO date or time (UTC); default 7 days ago")
    stats.add_argument("--end", help="ISO date or time (UTC); default now")
    rm = routes.add_parser("delete", help="delete a route")
    rm.add_argument("name")


def _variants(specs: list[str], error: type[Exception]) -> list[dict]:
    out = []
    for spec in specs:
        model, sep, weight = spec.rpartition("=")
        if not sep or not model or not weight.isdigit():
            raise error(f"--variant takes MODEL=WEIGHT, e.g. accounts/me/models/v3=90 (got {spec!r})")
        out.append({"model": model, "weight": int(weight)})
    return out


def _row(r: dict) -> str:
    parts = ", ".join(f"{v['model']} {v['share'] * 100:.1f}%{'' if v['ready'] else ' (not ready)'}"
                      for v in r["variants"])
    return f"{r['name']:<20} {r['model']}  ->  {parts}"


def run(http: httpx.Client, args: argparse.Namespace, out: TextIO, check, error: type[Exception]) -> None:  # noqa: ANN001
    def find(name: str) -> dict:
        for r in check(http.get("/api/v1/routes")).json():
            if r["name"] == name:
                return r
        raise error(f"You have no route named '{name}'.")

    if args.command == "create":
        created = check(http.post("/api/v1/routes", json={"name": args.name,
                                                          "variants": _variants(args.variant, error)})).json()
        print(_row(created), file=out)
    elif args.command == "set":
        route = find(args.name)
        changed = check(http.patch(f"/api/v1/routes/{route['id']}",
                                   json={"variants": _variants(args.variant, error)})).json()
        print(_row(changed), file=out)
    elif args.command == "list":
        for r in check(http.get("/api/v1/routes")).json():
            print(_row(r), file=out)
    elif args.command == "stats":
        route = find(args.name)
        params = {k: v for k, v in (("start", args.start), ("end", args.end)) if v}
        stats = check(http.get(f"/api/v1/routes/{route['id']}/stats", params=params)).json()
        print(f"{'variant':<48} {'requests':>8} {'in':>9} {'out':>9} {'cost USD':>12} {'ttft p50':>9} "
              f"{'e2e p50':>9} {'e2e p99':>9} {'errors':>7}", file=out)
        for v in stats["data"]:
            def ms(x: float | None) -> str:
                return "-" if x is None else f"{x:.0f}ms"
            print(f"{v['model']:<48} {v['num_requests']:>8} {v['prompt_tokens']:>9} {v['completion_tokens']:>9} "
                  f"{v['cost_usd']:>12} {ms(v['ttft_ms_p50']):>9} {ms(v['latency_ms_p50']):>9} "
                  f"{ms(v['latency_ms_p99']):>9} {v['error_rate'] * 100:>6.1f}%", file=out)
    elif args.command == "delete":
        route = find(args.name)
        check(http.delete(f"/api/v1/routes/{route['id']}"))
        print(f"deleted route {route['name']}", file=out)
