"""python -m gateway --host 127.0.0.1 --port 8080 [--workers N]"""

import argparse
import logging

import uvicorn


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway", description="Hearth's OpenAI-compatible gateway")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=1, help="gateway processes sharing the port")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # uvloop + httptools: the fastest loop and HTTP parser uvicorn offers; no access log on the hot path.
    uvicorn.run("gateway.app:create_app", factory=True, host=args.host, port=args.port, workers=args.workers,
                loop="uvloop", http="httptools", access_log=False, log_level=args.log_level, lifespan="on")


if __name__ == "__main__":
    main()
