"""`python -m workers.server --model <path.gguf|hf dir> --port 8001 --worker-id w0 --redis-url redis://...`

Loads the model before listening, so the worker only registers (heartbeat) once it can serve. SIGTERM and SIGINT
go to uvicorn, which drains, runs the app's shutdown (heartbeat entry removed, engine thread stopped) and exits 0.
"""

import argparse
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

import uvicorn

from contracts.worker_secret import worker_secret_problem
from workers.server.app import DEFAULT_SERVED_MODEL_NAME, ServerSettings, create_app

if TYPE_CHECKING:
    from workers.engine.config import EngineConfig

log = logging.getLogger("hearth.worker")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m workers.server", description="Hearth inference worker")
    p.add_argument("--model", required=True, help="path to a .gguf file or a Hugging Face model folder")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1: listen wider only when told (--host 0.0.0.0)")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--worker-id", default="w0")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL"), help="registry; default $REDIS_URL")
    p.add_argument("--region", default="local")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="default: with --quantize auto the measured fastest, else the engine's")  # fmt: skip
    p.add_argument("--quantize", default="auto", choices=["auto", "none", "int8", "int4"],
                   help="weight-only quantized linears (CPU); auto: the format measured fastest here, cached")
    p.add_argument("--served-model-name", default=DEFAULT_SERVED_MODEL_NAME)
    p.add_argument("--max-loras", type=int, default=4, help="distinct adapters in one step (device slots)")
    p.add_argument("--max-cpu-loras", type=int, default=None, help="adapters kept in host memory (LRU)")
    p.add_argument("--max-lora-rank", type=int, default=None, help="widest adapter rank a slot holds")
    p.add_argument(
        "--adapter-store",
        default=os.environ.get("HEARTH_ADAPTER_STORE"),
        help="folder of validated adapters <store>/<uid>/ (default $HEARTH_ADAPTER_STORE); none: base only",
    )
    p.add_argument("--no-prefix-caching", action="store_true", help="turn the prefix cache off (benchmarks)")
    p.add_argument("--no-ngram-speculation", action="store_true",
                   help="no prompt-lookup drafts (benchmarks against servers that don't speculate); predictions still draft")  # fmt: skip
    p.add_argument("--max-model-len", type=int, default=None)
    p.add_argument("--num-kv-blocks", type=int, default=None)
    p.add_argument("--advertise-url", default=None, help="URL written to the registry; default http://host:port")
    p.add_argument("--graceful-shutdown-s", type=float, default=30.0, help="on SIGTERM, wait this long for streams")
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    if args.max_loras < 1:
        p.error("--max-loras must be >= 1")
    if args.max_cpu_loras is not None and args.max_cpu_loras < args.max_loras:
        p.error("--max-cpu-loras must be >= --max-loras")
    return args


def engine_config(args: argparse.Namespace) -> "EngineConfig":
    from workers.engine.config import EngineConfig

    dtype, quantize = args.dtype, None if args.quantize in ("auto", "none") else args.quantize
    if args.quantize == "auto" and args.dtype is None:
        from workers.models.weight_format import choose_weight_format

        dtype, quantize = choose_weight_format("cpu")
    overrides = {
        k: v
        for k, v in {
            "dtype": dtype,
            "quantize": quantize,
            "enable_prefix_caching": False if args.no_prefix_caching else None,
            "ngram_speculation": False if args.no_ngram_speculation else None,
            "max_model_len": args.max_model_len,
            "num_kv_blocks": args.num_kv_blocks,
            "max_loras": args.max_loras,
            "max_cpu_loras": args.max_cpu_loras,
            "max_lora_rank": args.max_lora_rank,
            "adapter_store": args.adapter_store or None,
        }.items()
        if v is not None
    }
    return EngineConfig(model=args.model, **overrides)


def build_engine(args: argparse.Namespace) -> object:
    from workers.engine.llm_engine import LLMEngine

    return LLMEngine(engine_config(args))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    secret = os.environ.get("HEARTH_WORKER_SECRET") or None
    problem = worker_secret_problem(os.environ.get("HEARTH_ENV", "development"), secret)
    if problem:  # before the model loads: refuse at once, not after a minute of loading
        log.error("refusing to start: %s", problem)
        return 2
    if not args.redis_url:
        log.warning("no --redis-url and no REDIS_URL: this worker will not register with any gateway")
    log.info("loading %s", args.model)
    engine = build_engine(args)
    settings = ServerSettings(
        served_model_name=args.served_model_name,
        worker_id=args.worker_id,
        url=args.advertise_url or f"http://{args.host}:{args.port}",
        region=args.region,
        max_loras=args.max_loras,
        redis_url=args.redis_url,
        worker_secret=secret,
    )
    app = create_app(engine, settings)  # type: ignore[arg-type]
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=args.graceful_shutdown_s,  # uvicorn's default waits for open streams forever
    )
    # uvicorn re-raises the signal it caught once it has shut down, so the process would die "by SIGTERM" (-15).
    # Handlers installed here are what it restores before re-raising: the process then exits 0 after a clean stop.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _note_signal)
    uvicorn.Server(config).run()
    return 0


def _note_signal(signum: int, _frame: object) -> None:
    log.info("stopped by %s", signal.Signals(signum).name)


if __name__ == "__main__":
    sys.exit(main())
