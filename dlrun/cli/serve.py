"""`dlrun serve RUN [RUN ...] [--name NAME] [--host 127.0.0.1] [--port 8000] [--max-batch 64] [--batch-timeout-ms 5]
[--workers N] [--checkpoint best|last|PATH] [--device D] [--max-body-mb MB] [--admin]`: trained runs behind HTTP,
answered by `dlrun predict`'s own code, with dynamic batching, versions, metrics and a skew guard (dlrun/serve)."""
from __future__ import annotations

import argparse
from pathlib import Path

from dlrun.errors import DlrunError, report_error


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="dlrun serve", description="Serve trained runs over HTTP: POST /v1/models/NAME/predict {\"inputs\": ...}, "
        "GET /v1/models, /health, /metrics; the API's page is at /docs. Each RUN is a version of a model name: "
        "the newest is the default until POST /v1/models/NAME/default pins one. SIGTERM or Ctrl-C stops it "
        "gracefully (requests in flight are answered).")
    ap.add_argument("runs", nargs="+", metavar="RUN", help="run folders; NAME=RUN serves one under a model name of "
                    "its own")
    ap.add_argument("--name", help="the model name the RUNs are versions of (default: the model's, e.g. mlp)")
    ap.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1: this machine "
                    "only; 0.0.0.0: every interface)")
    ap.add_argument("--port", type=int, default=8000, help="the port (default 8000; 0: any free port, printed)")
    ap.add_argument("--max-batch", type=int, default=64, help="inputs per forward pass at most (default 64; 1: no "
                    "batching)")
    ap.add_argument("--batch-timeout-ms", type=float, default=5.0, help="how long the first request of a batch "
                    "waits for others (default 5 ms)")
    ap.add_argument("--workers", type=int, default=1, help="forward passes run at once per model version, each in "
                    "its own thread (default 1)")
    ap.add_argument("--checkpoint", default="best", help="best (default), last, or a checkpoint file")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")
    ap.add_argument("--max-body-mb", type=float, default=16.0, help="the largest request body (default 16 MB; "
                    "larger: 413)")
    ap.add_argument("--admin", action="store_true", help="enable POST /v1/admin/models (serve one more run while "
                    "running); off by default")
    ap.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"),
                    help="uvicorn's log level (default warning; info: one line per request)")
    return ap.parse_args(argv)


def serve_command(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        return serve(args)
    except DlrunError as exc:
        return report_error(exc)


def serve(args: argparse.Namespace) -> int:
    for flag, value, low in (("--max-batch", args.max_batch, 1), ("--workers", args.workers, 1),
                             ("--port", args.port, 0), ("--batch-timeout-ms", args.batch_timeout_ms, 0),
                             ("--max-body-mb", args.max_body_mb, 0.001)):
        if value < low:
            raise DlrunError(f"{flag} {value}: give a number of at least {low}.")
    if args.port > 65535:
        raise DlrunError(f"--port {args.port}: ports go up to 65535.")
    specs = []
    for text in args.runs:
        name, _, path = text.rpartition("=") if "=" in text and not Path(text).exists() else (None, "", text)
        run = Path(path)
        if not run.is_dir():
            raise DlrunError(f"no such run folder: {run}")
        specs.append((run, name or args.name))
    from dlrun.serve.models import Settings
    from dlrun.serve.server import serve as run_server
    from dlrun.serve.service import RunSpec

    settings = Settings(max_batch=args.max_batch, batch_timeout_ms=args.batch_timeout_ms, workers=args.workers,
                        device=args.device, checkpoint=args.checkpoint, admin=args.admin,
                        max_body_bytes=int(args.max_body_mb * 2**20))
    return run_server([RunSpec(run, name) for run, name in specs], settings, args.host, args.port, args.log_level)
