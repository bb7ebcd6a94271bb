"""The process: a listening socket (bound first, so a taken port is a one-line error and --port 0 picks a free
one), uvicorn serving the app on it, and a graceful stop on SIGTERM or SIGINT: stop accepting connections, answer
every request already taken in (batches queued included), then exit 0. A second SIGINT stops at once."""
from __future__ import annotations

import signal
import socket

import uvicorn

from dlrun.errors import DlrunError
from dlrun.serve.app import create_app
from dlrun.serve.models import Settings
from dlrun.serve.service import RunSpec, Service

GRACE_S = 60  # the longest a shutdown waits for requests in flight


class _Server(uvicorn.Server):
    """uvicorn's server, except that a signal it has handled gracefully is not raised again once it is done (uvicorn
    re-raises it, so the process would die of SIGTERM): a graceful stop exits 0."""

    def handle_exit(self, sig, frame) -> None:
        if self.should_exit and sig == signal.SIGINT:  # a second Ctrl-C: stop without waiting
            self.force_exit = True
        self.should_exit = True


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto named: asyncio sets TCP_NODELAY only on sockets whose proto says TCP. Without it, a response's
    # headers and body leave as two small writes, and Nagle's algorithm holds the body for the client's delayed
    # ACK: 40 ms per request on a kept-alive connection.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise DlrunError(f"cannot listen on {host}:{port}: {exc.strerror or exc}.") from None
    sock.set_inheritable(True)
    return sock


def say(message: str) -> None:
    print(f"dlrun serve: {message}", flush=True)


def serve(runs: list[RunSpec], settings: Settings, host: str, port: int, log_level: str = "warning") -> int:
    """Serve `runs` until a signal stops the server; the exit code (0, or 2 when a run could not be loaded)."""
    sock = listen(host, port)
    service = Service(settings, runs, say)
    config = uvicorn.Config(create_app(service), log_level=log_level, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=GRACE_S, server_header=False)
    server = _Server(config)
    service.stop = lambda: setattr(server, "should_exit", True)
    shown = f"[{host}]" if ":" in host else host
    say(f"listening on http://{shown}:{sock.getsockname()[1]} (API docs: /docs); loading {len(runs)} run(s)")
    server.run(sockets=[sock])
    if service.failure is not None:
        raise service.failure
    return 0

