"""Speculative decoding benchmark: predicted outputs on a code-edit workload, and prompt lookup on mixed chat.

1. Code edits (the "fast apply" path): 20 Python files of 100-300 lines built here (fixed seed); each request asks
   for a small change and passes the original file as `prediction`. Single stream, greedy: output tok/s (first to
   last output token) with speculation vs without (target >= 3x), and the share of drafted prediction tokens kept.
2. The mixed chat workload of bench/engine.py (64 requests, prompts 32-512, outputs 32-256, all at once) with
   prompt-lookup speculation on vs off (target: on is at most 5% slower).

    python bench/speculative.py [--quick] [--device cuda] [--threads N] [--files 20] [--mixed-requests 64]
"""

import argparse
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import torch  # noqa: E402

from bench._results import write_section  # noqa: E402
from bench.engine import load, run_ours, workload  # noqa: E402
from workers.engine.config import EngineConfig  # noqa: E402
from workers.engine.llm_engine import LLMEngine  # noqa: E402
from workers.engine.sampling_params import SamplingParams  # noqa: E402

WORDS = ["alpha", "beta", "gamma", "delta", "total", "count", "index", "value", "items", "result", "buffer", "limit",
         "offset", "record", "window", "score", "weight", "name", "path", "size"]  # fmt: skip


def python_file(rng: random.Random, num_lines: int) -> tuple[str, str]:
    """A plausible module of about num_lines lines -> (source, the name of one of its functions)."""
    lines = [f'"""Utilities for {rng.choice(WORDS)} {rng.choice(WORDS)} handling."""', "", "import math", ""]
    names: list[str] = []
    while len(lines) < num_lines:
        name = f"{rng.choice(WORDS)}_{rng.choice(WORDS)}_{len(names)}"
        names.append(name)
        a, b = rng.sample(WORDS, 2)
        lines += ["", f"def {name}({a}: list[float], {b}: int = {rng.randint(1, 9)}) -> float:",
                  f'    """Return the {rng.choice(WORDS)} of {a} over {b} steps."""', "    result = 0.0"]  # fmt: skip
        for _ in range(rng.randint(3, 9)):
            op = rng.choice(["+=", "-=", "*="])
            lines.append(f"    result {op} math.sqrt(abs({a}[{rng.randint(0, 4)}] * {rng.randint(2, 97)})) / {b}")
        if rng.random() < 0.5:
            lines += [f"    for i in range({b}):", f"        result += {a}[i % len({a})] * i"]
        lines += ["    return result", ""]
    return "\n".join(lines[:num_lines]) + "\n", rng.choice(names)


def edit_requests(tok: object, n: int, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """-> (prompt ids, prediction ids) per file: rename one function, answer with the whole file."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        source, name = python_file(rng, rng.randint(100, 300))
        ask = (f"Rename the function `{name}` to `{name}_v2` in this file. Answer with the whole updated file only, "
               f"in a python code block.\n\n```python\n{source}```")  # fmt: skip
        # The answer is primed with the opening fence (as fast-apply prompts do), so the model starts on the code
        text = tok.apply_chat_template([{"role": "user", "content": ask}]) + "```python\n"  # type: ignore[attr-defined]
        prompt = tok.encode(text, add_special_tokens=False)  # type: ignore[attr-defined]
        out.append((prompt, tok.encode(f"{source}```", add_special_tokens=False)))  # type: ignore[attr-defined]
    return out


def single_stream(engine: LLMEngine, prompt: list[int], prediction: list[int], max_tokens: int,
                  speculate: bool) -> tuple[int, float, int, int]:  # fmt: skip
    """-> (output tokens, decode seconds from first to last token, accepted, rejected prediction tokens). One engine
    serves both modes (the second run of a file hits the first's prefix cache); without speculation the request's
    draft state is removed, so it decodes one token a step."""
    seqs = engine.new_request("edit", prompt, SamplingParams(temperature=0, max_tokens=max_tokens, prediction=prediction))
    if not speculate:
        for seq in seqs:
            seq.spec = None
    engine.add(seqs)
    first = last = None
    n = accepted = rejected = 0
    while engine.has_unfinished_requests():
        for d in engine.step():
            now = time.perf_counter()
            if d.new_token_ids and first is None:
                first = now
            n += len(d.new_token_ids)
            last = now
            accepted, rejected = d.num_accepted_prediction_tokens, d.num_rejected_prediction_tokens
    assert first is not None and last is not None
    return n, last - first, accepted, rejected


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=EngineConfig.__dataclass_fields__["dtype"].default)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--files", type=int, default=20, help="code-edit files measured (of the 20 built)")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--mixed-requests", type=int, default=64, help="requests of the mixed chat workload")
    args = ap.parse_args()
    args.random_weights = False
    if args.threads:
        torch.set_num_threads(args.threads)
    q = args.quick
    files, max_tokens = (2, 48) if q else (args.files, args.max_tokens)
    model, tok, _ = load(args, args.dtype)
    lines = [f"device {args.device}, dtype {args.dtype}, threads {torch.get_num_threads()}, SmolLM2-135M GGUF, "
             f"{'quick' if q else 'full'} run, load average {os.getloadavg()[0]:.1f} at start (machine shared with "
             "other engineers' runs)"]  # fmt: skip
    print(lines[0], flush=True)

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    reqs = edit_requests(tok, 20)[:files]
    say(f"code edits: {files} of 20 files, prompts {min(len(p) for p, _ in reqs)}-{max(len(p) for p, _ in reqs)} "
        f"tokens, greedy, up to {max_tokens} output tokens, single stream, answer primed with the code fence")
    cfg = EngineConfig(model="bench", dtype=args.dtype, device=args.device, num_kv_blocks=1024, max_num_batched_tokens=4096)
    engine = LLMEngine(cfg, model=model, tokenizer=tok)  # type: ignore[arg-type]
    engine.generate([reqs[0][0][:32]], SamplingParams(temperature=0, max_tokens=4))  # warm-up
    spec, plain = [], []
    for p, pred in reqs:
        spec.append(single_stream(engine, p, pred, max_tokens, speculate=True))
        plain.append(single_stream(engine, p, pred, max_tokens, speculate=False))
    rate = lambda runs: sum(r[0] - 1 for r in runs) / sum(r[1] for r in runs)  # noqa: E731 - tokens after the first
    acc, rej = sum(r[2] for r in spec), sum(r[3] for r in spec)
    say(f"code edits, speculation off: {rate(plain):7.1f} out tok/s")
    say(f"code edits, prediction     : {rate(spec):7.1f} out tok/s")
    say(f"code-edit speed-up: {rate(spec) / rate(plain):.2f}x (target >= 3x); prediction tokens kept "
        f"{acc / max(acc + rej, 1):.1%} ({acc} kept, {rej} rejected)")

    n_req, prompt_r, out_r = (8, (32, 128), (8, 32)) if q else (args.mixed_requests, (32, 512), (32, 256))
    mixed = workload(n_req, prompt_r, out_r, [], seed=0)
    on = run_ours(model, tok, args, mixed)
    off = run_ours(model, tok, args, mixed, num_speculative_tokens=0)
    say(on.line("mixed, prompt lookup on "))
    say(off.line("mixed, speculation off  "))
    slower = (off.out_tokens / off.wall) / (on.out_tokens / on.wall) - 1
    say(f"mixed chat ({n_req} requests) with prompt lookup: {slower:+.1%} time vs off (target <= +5%)")
    say(f"load average at the end: {os.getloadavg()[0]:.1f} (1 min)")
    if not q:
        name = "speculative" if args.device == "cpu" else f"speculative-{args.device}"
        write_section(name, "```\n" + "\n".join(lines) + "\n```")


if __name__ == "__main__":
    main()
