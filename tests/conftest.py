"""Shared helpers: run the real `dlrun` CLI as a subprocess and read what it wrote."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DLRUN = Path(sys.executable).with_name("dlrun")
FASHION = Path("/usr/share/datasets/fashion-mnist")


def run_dlrun(*args: str, env: dict | None = None, timeout: float = 240, cwd: Path | None = None):
    """`dlrun ARGS...` as a user would type it; plain output (CI=1), data cache in a temp folder."""
    # one torch thread: tiny models gain nothing from two, and on 2 cores two threads per run fight the test runner
    full_env = {**os.environ, "CI": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    full_env.pop("HYDRA_FULL_ERROR", None)  # tracebacks only where a test asks for them (env=)
    full_env.update(env or {})
    return subprocess.run([str(DLRUN), *args], capture_output=True, text=True, timeout=timeout,
                          env=full_env, cwd=cwd or ROOT)


def png_base64(images) -> list[str]:
    """(H, W) uint8 arrays as base64 PNGs, the way a client sends images to `dlrun serve`."""
    import base64
    import io

    from PIL import Image

    encoded = []
    for x in images:
        buf = io.BytesIO()
        Image.fromarray(x).save(buf, "PNG")
        encoded.append(base64.b64encode(buf.getvalue()).decode())
    return encoded


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def assert_clean_error(proc, code: int, *fragments: str) -> None:
    """A user error: the expected exit code, the message, and no Python traceback."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, out
    assert "Traceback" not in out, out
    for frag in fragments:
        assert frag in out, f"{frag!r} not in:\n{out}"


def assert_config_mistake(tmp_path: Path, overrides: list[str], message: str, through_cli: bool) -> None:
    """A mistake in the config refused with `message`: through the CLI (exit code 2, no traceback), or
    in-process, which is cheaper when the CLI path is already covered."""
    if through_cli:
        assert_clean_error(run_dlrun(*overrides, "debug=smoke", f"hydra.run.dir={tmp_path}"), 2, message)
        return
    import dlrun
    from dlrun.errors import DlrunError

    with pytest.raises(DlrunError) as err:
        dlrun.run([*overrides, "debug=smoke", "logger=quiet"], run_dir=str(tmp_path / "run"))
    assert message in str(err.value)


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return tmp_path / "run"


def supervised_trainer(model, optimizer, task, data, run_dir, augment=None, in_memory: bool = True,
                       num_workers: int = 0, **settings):
    """A Trainer over a SupervisedLoop for in-process tests: the default trainer settings (conf/trainer/default.yaml)
    with `settings` changed, batches of the whole split unless `batch_size` is given, on the CPU."""
    import dataclasses

    import torch

    from dlrun.config import compose
    from dlrun.config.schema import Trainer as TrainerSettings
    from dlrun.config.schema import settings as make_settings
    from dlrun.data.loader import Batches
    from dlrun.train.loop import SupervisedLoop
    from dlrun.train.trainer import Trainer

    defaults = make_settings(TrainerSettings, compose(["trainer.epochs=1"], check=False).trainer)
    tset = dataclasses.replace(defaults, **{"batch_size": len(data.train), **settings})
    batches = Batches(torch.device("cpu"), tset.batch_size, 0, tset.limit_batches, in_memory, num_workers)
    loop = SupervisedLoop(model, optimizer, task, data, batches, tset, augment=augment)
    return Trainer(loop, tset.epochs, run_dir)


def run_command_inprocess(command, argv: list[str], capsys) -> tuple[int, str]:
    """A dlrun subcommand (`predict_command`, `export_command`, ...) run in this process: (exit code, its
    output). For the many error cases of a command whose CLI path a subprocess test already covers."""
    code = command(argv)
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert "Traceback" not in out, out
    return code, out


def run_main_inprocess(argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """`dlrun ARGV` through `dlrun.cli.main.main` in this process: (exit code, output). For refusals that a
    subprocess test already covers once; the environment the command sets is restored afterwards."""
    from dlrun.cli.main import main

    for name in ("HYDRA_FULL_ERROR", "DLRUN_TRACEBACKS", "DLRUN_SWEEP_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.argv", ["dlrun", *argv])
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert "Traceback" not in out, out
    return code, out


def train_runs(folder: Path, runs: dict[str, list[str]]) -> dict[str, Path]:
    """Train each named run in this process (quiet, no model summary) into folder/NAME; NAME -> its folder."""
    import dlrun

    for name, overrides in runs.items():
        dlrun.run([*overrides, "logger=quiet", "trainer.summary=false"], run_dir=str(folder / name))
    return {name: folder / name for name in runs}


def interrupt_after(args: list[str], run_dir: Path, rows: int, sig: int, env: dict | None = None) -> int:
    """Start `dlrun ARGS` in `run_dir`, send `sig` shortly after `rows` epochs are logged (inside the next epoch, not
    on its boundary), return the exit code."""
    import time

    proc = subprocess.Popen([str(DLRUN), *args, f"hydra.run.dir={run_dir}"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "CI": "1", **(env or {})})
    metrics, deadline = run_dir / "metrics.jsonl", time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= rows:
            time.sleep(0.05)
            proc.send_signal(sig)
            break
        time.sleep(0.01)
    proc.communicate(timeout=120)
    return proc.returncode


class Server:
    """`dlrun serve ARGS --port 0` as a subprocess; the port is read from its first line."""

    def __init__(self, *args: str):
        env = {**os.environ, "CI": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([str(DLRUN), "serve", *args, "--port", "0"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        first = self.proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", first)
        assert match, first + self.proc.stderr.read()
        self.port = int(match.group(1))

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read()
            try:
                if self.get("/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("the server never became ready")

    def request(self, method: str, path: str, body=None, raw: bytes | None = None):
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
        return status, (json.loads(text) if text.startswith(("{", "[")) else text)

    def get(self, path: str):
        return self.request("GET", path)

    def post(self, path: str, body=None, raw: bytes | None = None):
        return self.request("POST", path, body, raw)

    def metric(self, name: str, **labels) -> float:
        """One series of /metrics (0 when absent)."""
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.get("/metrics")[1].splitlines():
            if line.startswith(name + "{"):
                series, value = line.rsplit(" ", 1)
                if ",".join(sorted(series[len(name) + 1:-1].split(","))) == want:
                    return float(value)
        return 0.0

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return self.proc.returncode, out + err
