"""Serving: throughput and latency of `dlrun serve` with dynamic batching on and off, against the plainest server a
user would write (a FastAPI endpoint calling the model per request), side by side on loopback.

Per case (the digits MLP; the Fashion-MNIST CNN when /usr/share/datasets/fashion-mnist is there), a run is trained
briefly, then three servers of it run at once, each its own process with the same torch threads:
- batched:   `dlrun serve RUN --max-batch 64 --batch-timeout-ms 5` (the defaults);
- unbatched: `dlrun serve RUN --max-batch 1` (the same server, one input per forward pass);
- plain:     FastAPI + uvicorn, `def predict(body: dict)` calling `dlrun.load(RUN).predict(inputs)` per request
             (FastAPI runs it in its thread pool);
- batched_0ms: `dlrun serve RUN --batch-timeout-ms 0`: no waiting; a batch is what queued while the worker was busy.
For each number of clients (default 1, 8, 32, 64) the servers take turns (the order flips each time), each
measured for at most --requests requests or --seconds seconds after a warm-up. A client is one kept-alive
connection sending one test input per request and waiting for its answer (a minimal HTTP/1.1 client on asyncio
streams, so that the load generator takes as little of the shared CPU as possible); every answer is checked
against the class `dlrun predict` gives that input, and any other answer, status or broken connection counts as a
failure. Printed: requests/s, p50 and p99 latency (ms), failures, and the throughput ratios.

    .venv/bin/python benchmarks/bench_serve.py
    .venv/bin/python benchmarks/bench_serve.py --cases digits_mlp --clients 1,8,32,64 --requests 2000 --out /tmp/serve.json
    .venv/bin/python benchmarks/bench_serve.py --device cuda   # on a GPU machine
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FASHION = Path("/usr/share/datasets/fashion-mnist")
CASES = {  # name: (training overrides, needs Fashion-MNIST)
    "digits_mlp": (["dataset=digits", "model=mlp", "model.hidden=[256,128]", "trainer.epochs=5"], False),
    "fashion_cnn": (["dataset=fashion_mnist", "dataset.download=false", "model=cnn", "trainer.epochs=1",
                     "trainer.limit_batches=300"], True),
}
SERVERS = {"batched": ["--max-batch", "64", "--batch-timeout-ms", "5"], "unbatched": ["--max-batch", "1"],
           "plain": None, "batched_0ms": ["--max-batch", "64", "--batch-timeout-ms", "0"]}


# ---- the plain server: what a user would write ------------------------------------------------------------
def plain_server(run: str, device: str) -> None:
    """FastAPI calling the model per request; prints its port, then serves until killed."""
    import numpy as np
    import uvicorn
    from fastapi import FastAPI

    import dlrun

    model = dlrun.load(run, device=device)
    app = FastAPI()

    @app.post("/predict")
    def predict(body: dict):
        return {"predictions": model.predict(np.asarray(body["inputs"]))}

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # as uvicorn's own bind: TCP_NODELAY
    sock.bind(("127.0.0.1", 0))
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


# ---- a minimal keep-alive HTTP/1.1 client -----------------------------------------------------------------
async def client(port: int, path: str, bodies: list[bytes], expected: list[str], state: dict, start: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = start
    try:
        while state["left"] > 0 and time.perf_counter() < state["deadline"]:
            state["left"] -= 1
            body = bodies[i % len(bodies)]
            head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" \
                   f"Content-Length: {len(body)}\r\n\r\n"
            t0 = time.perf_counter()
            writer.write(head.encode() + body)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            answer = await reader.readexactly(length)
            state["latencies"].append(time.perf_counter() - t0)
            ok = status == 200 and json.loads(answer)["predictions"][0]["class"] == expected[i % len(expected)]
            state["failures"] += not ok
            i += 1
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
        state["failures"] += 1
    finally:
        writer.close()


async def measure(port: int, path: str, bodies, expected, clients: int, requests: int, seconds: float) -> dict:
    state = {"left": requests, "deadline": time.perf_counter() + seconds, "latencies": [], "failures": 0}
    t0 = time.perf_counter()
    await asyncio.gather(*(client(port, path, bodies, expected, state, k * 7) for k in range(clients)))
    wall = time.perf_counter() - t0
    lat = sorted(state["latencies"])
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")  # noqa: E731
    return {"requests": len(lat), "rps": len(lat) / wall, "p50_ms": q(0.50), "p99_ms": q(0.99),
            "failures": state["failures"]}


# ---- servers ----------------------------------------------------------------------------------------------
def start(kind: str, run: Path, device: str, env: dict) -> tuple[subprocess.Popen, int, str]:
    if SERVERS[kind] is None:
        cmd = [sys.executable, __file__, "--plain-server", str(run), "--device", device]
        path = "/predict"
    else:
        cmd = [str(BIN / "dlrun"), "serve", f"m={run}", "--port", "0", "--device", device, *SERVERS[kind]]
        path = "/v1/models/m/predict"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    port = int(re.search(r"127\.0\.0\.1:(\d+)", proc.stdout.readline()).group(1))
    return proc, port, path


async def wait_answering(port: int, path: str, body: bytes, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = {"left": 1, "deadline": time.perf_counter() + 30, "latencies": [], "failures": 0}
            await client(port, path, [body], ["?"], state, 0)
            if state["latencies"]:
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"no answer on port {port}")


def train(case: str, where: Path):
    """A briefly trained run, and its first 256 test inputs as request bodies with predict's classes."""
    import dlrun
    from dlrun.config import compose
    from dlrun.data import build_dataset

    overrides = CASES[case][0]
    run = where / case
    t0 = time.perf_counter()
    dlrun.run([*overrides, "logger=quiet", "trainer.summary=false"], run_dir=str(run))
    print(f"{case}: trained in {time.perf_counter() - t0:.0f} s", flush=True)
    data = build_dataset(compose([o for o in overrides if o.startswith("dataset")] + ["logger=quiet"]).dataset)
    x = data.test.x[:256]
    expected = [p["class"] for p in dlrun.load(run).predict(x)]
    return run, [json.dumps({"inputs": x[i:i + 1].tolist()}).encode() for i in range(len(x))], expected


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--clients", default="1,8,32,64")
    ap.add_argument("--requests", type=int, default=2000, help="requests per measurement at most (default 2000)")
    ap.add_argument("--seconds", type=float, default=15, help="seconds per measurement at most (default 15)")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every server (default 1)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    ap.add_argument("--plain-server", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.plain_server:
        return plain_server(args.plain_server, args.device)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "CI": "1"}
    clients = [int(c) for c in args.clients.split(",")]
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, "
                          f"device {args.device}", "load": os.getloadavg(), "cases": {}}
    with tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp:
        for case in args.cases.split(","):
            if CASES[case][1] and not FASHION.is_dir():
                print(f"skipping {case}: Fashion-MNIST not found in {FASHION}")
                continue
            run, bodies, expected = train(case, Path(tmp))
            gc.collect()
            gc.freeze()  # the client's latencies without full collections over torch's objects
            servers = {kind: start(kind, run, args.device, env) for kind in SERVERS}
            try:
                for proc, port, path in servers.values():
                    asyncio.run(wait_answering(port, path, bodies[0]))
                for proc, port, path in servers.values():  # warm-up: first batches, page cache, allocator
                    asyncio.run(measure(port, path, bodies, expected, 8, 200, 10))
                table = {}
                for turn, n in enumerate(clients):
                    order = list(SERVERS) if turn % 2 == 0 else list(SERVERS)[::-1]
                    for kind in order:
                        proc, port, path = servers[kind]
                        r = asyncio.run(measure(port, path, bodies, expected, n, args.requests, args.seconds))
                        table[(kind, n)] = r
                        print(f"  {case} {kind:9} clients {n:3}: {r['rps']:7.0f} req/s  p50 {r['p50_ms']:7.1f} ms  "
                              f"p99 {r['p99_ms']:7.1f} ms  failures {r['failures']} ({r['requests']} requests)",
                              flush=True)
            finally:
                for proc, _, _ in servers.values():
                    proc.terminate()
                    proc.wait(30)
            results["cases"][case] = {f"{kind}@{n}": r for (kind, n), r in table.items()}
            print(f"\n{case} (requests/s; p50 / p99 ms; failures):")
            ratios = (("batched", "unbatched"), ("batched", "plain"), ("batched_0ms", "unbatched"))
            print("| clients | " + " | ".join(SERVERS) + " | " + " | ".join(f"{a} / {b}" for a, b in ratios) + " |")
            print("|---|" + "---|" * (len(SERVERS) + len(ratios)))
            for n in clients:
                cells = [f"{table[(k, n)]['rps']:.0f} ({table[(k, n)]['p50_ms']:.1f} / {table[(k, n)]['p99_ms']:.1f}; "
                         f"{table[(k, n)]['failures']})" for k in SERVERS]
                cells += [f"{table[(a, n)]['rps'] / table[(b, n)]['rps']:.2f}" for a, b in ratios]
                print(f"| {n} | " + " | ".join(cells) + " |")
            print(flush=True)
    results["load_after"] = os.getloadavg()
    print(f"machine: {results['machine']}; load average before {results['load'][0]:.2f}, "
          f"after {results['load_after'][0]:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
