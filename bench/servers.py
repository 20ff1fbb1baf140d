"""Two OpenAI-protocol servers on the same GGUF, driven by the same streamed client (the openai SDK): our worker
(`python -m workers.server`) and llama.cpp's `llama-server`, built from the `llama-cpp-python` source package's
vendor/llama.cpp under .bench/ (git-ignored; never committed) with GGML_NATIVE=OFF and AVX2/FMA/F16C on (a native
build dies with SIGILL on these machines). Used by bench/engine.py --servers.
"""

import asyncio
import glob
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench._timing import Run, pct

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / ".bench"
LLAMA_SERVER = BENCH_DIR / "llama.cpp" / "build" / "bin" / "llama-server"
LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"


def build_llama_server(jobs: int = 2) -> Path:
    """llama-server from the sdist's vendor/llama.cpp; reused when already built."""
    if LLAMA_SERVER.exists():
        return LLAMA_SERVER
    BENCH_DIR.mkdir(exist_ok=True)
    src = BENCH_DIR / "llama.cpp"
    if not (src / "CMakeLists.txt").exists():
        sdists = glob.glob(str(BENCH_DIR / "llama_cpp_python-*.tar.gz"))
        if not sdists:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                            LLAMA_CPP_PYTHON, "-d", str(BENCH_DIR)], check=True)  # fmt: skip
            sdists = glob.glob(str(BENCH_DIR / "llama_cpp_python-*.tar.gz"))
        with tarfile.open(sdists[0]) as tar:
            top = tar.getnames()[0].split("/")[0]
            members = [m for m in tar.getmembers() if m.name.startswith(f"{top}/vendor/llama.cpp/")]
            tar.extractall(BENCH_DIR / "sdist", members=members, filter="data")
        shutil.move(BENCH_DIR / "sdist" / top / "vendor" / "llama.cpp", src)
    flags = ["-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON",
             "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
             "-DCMAKE_BUILD_TYPE=Release"]  # fmt: skip
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(["cmake", "-S", str(src), "-B", str(src / "build"), *gen, *flags], check=True)
    subprocess.run(["cmake", "--build", str(src / "build"), "--target", "llama-server", "-j", str(jobs)], check=True)
    return LLAMA_SERVER


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout:.0f} s")


@contextmanager
def serve(cmd: list[str], health: str, env: dict[str, str], log: Path, timeout: float = 300) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            _wait_ready(health, proc, timeout)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def ours_cmd(gguf: Path, port: int, fmt: tuple[str, str], threads: int, prefix_caching: bool) -> tuple[list[str], dict]:
    dtype, quantize = fmt
    cmd = [sys.executable, "-m", "workers.server", "--model", str(gguf), "--port", str(port), "--dtype", dtype,
           "--quantize", quantize, "--worker-id", f"bench-{port}", "--log-level", "warning",
           "--no-ngram-speculation"]  # fmt: skip  # llama-server doesn't speculate either: plain decode on both sides
    if not prefix_caching:
        cmd.append("--no-prefix-caching")
    env = {**os.environ, "HEARTH_WORKER_SECRET": "", "OMP_NUM_THREADS": str(threads), "REDIS_URL": ""}
    env.pop("REDIS_URL")
    return cmd, env


def llama_cmd(gguf: Path, port: int, threads: int, slots: int, ctx_per_slot: int) -> tuple[list[str], dict]:
    cmd = [str(LLAMA_SERVER), "-m", str(gguf), "--port", str(port), "-t", str(threads), "-tb", str(threads),
           "--parallel", str(slots), "-c", str(slots * ctx_per_slot), "-ngl", "0", "--log-disable"]  # fmt: skip
    return cmd, dict(os.environ)


async def _one(client: object, model: str, prompt: list[int], n: int, t0: float, run: Run, cache: bool) -> None:
    stream = await client.completions.create(  # type: ignore[attr-defined]
        model=model, prompt=prompt, max_tokens=n, temperature=0, stream=True,
        extra_body={"ignore_eos": True, "cache_prompt": cache},
    )  # fmt: skip
    last = None
    async for chunk in stream:
        if not chunk.choices or not (chunk.choices[0].text or chunk.choices[0].finish_reason is None):
            continue
        now = time.perf_counter()
        if last is None:
            run.ttft.append(now - t0)
        else:
            run.itl.append(now - last)
        last = now
    run.out_tokens += n  # ignore_eos: each request yields exactly max_tokens


def stream_workload(base_url: str, model: str, reqs: list[tuple[list[int], int]], cache: bool = True) -> Run:
    """All requests submitted at once through one AsyncOpenAI client; chunk arrival times give TTFT and ITL."""
    import httpx
    import openai

    async def main() -> Run:
        limits = httpx.Limits(max_connections=len(reqs) + 4, max_keepalive_connections=len(reqs) + 4)
        async with openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=3600,
                                      http_client=httpx.AsyncClient(limits=limits, timeout=3600)) as client:  # fmt: skip
            run = Run()
            t0 = time.perf_counter()
            await asyncio.gather(*(_one(client, model, p, n, t0, run, cache) for p, n in reqs))
            run.wall = time.perf_counter() - t0
            return run

    return asyncio.run(main())


def _line(name: str, run: Run, weight_bytes: int) -> str:
    tok_s = run.out_tokens / run.wall
    return (f"{name}: {tok_s:7.1f} out tok/s ({tok_s * weight_bytes / 1e9:5.2f} GB/s of weights) | TTFT p50 "
            f"{pct(run.ttft, 50) * 1e3:7.0f} ms p99 {pct(run.ttft, 99) * 1e3:7.0f} ms | ITL p50 "
            f"{pct(run.itl, 50) * 1e3:6.1f} ms | {run.out_tokens} tokens in {run.wall:.1f} s")  # fmt: skip


def _single(url: str, model: str, n: int) -> float:
    # decode tokens per second after the first: ignore_eos makes it exactly n tokens, however the server groups
    # them into chunks (ours sends every token the engine has when the stream writes, so a chunk may hold two)
    run = stream_workload(url, model, [(list(range(200, 232)), n)])
    return (n - 1) / sum(run.itl) if run.itl else float("nan")


Workloads = dict[str, list[tuple[list[int], int]]]


def compare(gguf: Path, work: Workloads, threads: int, fmt: tuple[str, str], ours_bytes: int, single_n: int,
            say: object, log_dir: Path) -> None:  # fmt: skip
    """Ours and llama-server, one after the other, on the same workloads; `say` prints and records a line."""
    from gguf import GGUFReader

    llama_bytes = sum(int(t.n_bytes) for t in GGUFReader(str(gguf)).tensors)
    ctx = max(len(p) + n for reqs in work.values() for p, n in reqs) + 64
    model = "smollm2-135m-instruct"
    results: dict[str, dict[str, Run | float]] = {}
    for side in ("ours", "llama.cpp"):
        port = free_port()
        url = f"http://127.0.0.1:{port}/v1"
        if side == "ours":
            cmd, env = ours_cmd(gguf, port, fmt, threads, prefix_caching=True)
            health, wbytes = f"http://127.0.0.1:{port}/health", ours_bytes
        else:
            cmd, env = llama_cmd(gguf, port, threads, slots=8, ctx_per_slot=ctx)
            health, wbytes = f"http://127.0.0.1:{port}/health", llama_bytes
        res: dict[str, Run | float] = {}
        with serve(cmd, health, env, log_dir / f"{side}.log"):
            stream_workload(url, model, [(list(range(100, 116)), 4)])  # warm-up
            res["single"] = _single(url, model, single_n)
            say(f"{side:9s} single-stream decode: {res['single']:6.1f} tok/s "
                f"({res['single'] * wbytes / 1e9:.2f} GB/s of {wbytes / 1e6:.0f} MB weights)")  # fmt: skip
            for name in ("mixed", "shared"):
                res[name] = run = stream_workload(url, model, work[name], cache=True)
                say(_line(f"{side:9s} {name:16s}", run, wbytes))
            if side == "llama.cpp":  # per request: the server keeps its prompt cache otherwise
                res["shared, no cache"] = run = stream_workload(url, model, work["shared"], cache=False)
                say(_line(f"{side:9s} {'shared, no cache':16s}", run, wbytes))
        if side == "ours":
            cmd, env = ours_cmd(gguf, port, fmt, threads, prefix_caching=False)
            with serve(cmd, health, env, log_dir / "ours-nocache.log"):
                stream_workload(url, model, [(list(range(100, 116)), 4)])
                res["shared, no cache"] = run = stream_workload(url, model, work["shared"], cache=False)
                say(_line(f"{side:9s} {'shared, no cache':16s}", run, wbytes))
        results[side] = res
    o, ll = results["ours"], results["llama.cpp"]

    def tps(r: dict, k: str) -> float:
        return r[k].out_tokens / r[k].wall

    say(f"single-stream: ours / llama.cpp = {o['single'] / ll['single']:.2f}x (target >= 1x)")
    say(f"mixed: ours / llama.cpp (8 slots) = {tps(o, 'mixed') / tps(ll, 'mixed'):.2f}x (target >= 4x)")
    say(f"shared vs mixed out tok/s, ours: {tps(o, 'shared') / tps(o, 'mixed'):.2f}x (target >= 1x)")
    for side, r in results.items():
        ratio = pct(r["shared, no cache"].ttft, 50) / pct(r["shared"].ttft, 50)  # type: ignore[union-attr]
        say(f"shared-prompt TTFT p50 without / with prefix caching, {side}: {ratio:.2f}x (target for ours >= 5x)")
