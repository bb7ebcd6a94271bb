"""`dlrun serve`, started as a real subprocess on a free loopback port and spoken to over HTTP: served predictions
are `dlrun predict`'s and reproduce the test metrics; a burst is answered in batches, every answer to its own
request; the default version switches and rolls back; every bad input gets its 4xx and the next request is served;
the skew guard's drift rises with shifted inputs; SIGTERM during a burst loses no accepted request; a malicious
checkpoint is refused."""
import base64
import http.client
import io
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import numpy as np
import pytest
import torch

import dlrun
from conftest import DLRUN, Server, read_json, run_command_inprocess, train_runs


def rows_csv(path):
    """A small table: a number, a category and a class that depends on both."""
    rng = np.random.default_rng(0)
    size = rng.normal(5, 2, 300).round(2)
    colour = rng.choice(["red", "green", "blue"], 300)
    label = np.where(size + (colour == "red") * 3 > 6, "big", "small")
    lines = ["size,colour,label"] + [f"{s},{c},{k}" for s, c, k in zip(size, colour, label)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    where = tmp_path_factory.mktemp("serve")
    table = rows_csv(where / "table.csv")
    return train_runs(where, {"v1": ["trainer.epochs=3"],
                              "v2": ["trainer.epochs=1", "seed=1", "model.hidden=[32]"],
                              "table": ["dataset=csv", f"dataset.path={table}", "dataset.target=label",
                                        "trainer.epochs=2"]})


@pytest.fixture(scope="module")
def digits():
    """The digits test split, raw (0..16), and its labels."""
    from dlrun.config import compose
    from dlrun.data import build_dataset

    data = build_dataset(compose(["logger=quiet"]).dataset)
    return data.test.x, data.test.y


@pytest.fixture(scope="module")
def server(runs):
    before = {p: p.read_bytes() for run in runs.values() for p in run.rglob("*") if p.is_file()}
    srv = Server(f"digits={runs['v1']}", f"digits={runs['v2']}", f"table={runs['table']}", f"drift={runs['v1']}",
                 "--admin", "--batch-timeout-ms", "20", "--max-body-mb", "0.5")
    try:
        srv.wait_ready()
        yield srv
    finally:
        code, out = srv.stop()
    assert code == 0, out
    assert "Traceback" not in out, out
    assert {p: p.read_bytes() for run in runs.values() for p in run.rglob("*") if p.is_file()} == before


def test_served_predictions_are_predicts_and_reproduce_the_test_metrics(server, runs, digits, tmp_path):
    x, y = digits
    expected = dlrun.load(runs["v1"]).predict(x)
    got = []
    for part in np.array_split(np.arange(len(x)), 3):  # three requests, of about 120 inputs each
        status, answer = server.post("/v1/models/digits/versions/1/predict", {"inputs": x[part].tolist()})
        assert status == 200, answer
        assert (answer["model"], answer["version"]) == ("digits", 1)
        got += answer["predictions"]
    assert [p["class"] for p in got] == [p["class"] for p in expected]
    assert [p["probability"] for p in got] == pytest.approx([p["probability"] for p in expected], abs=1e-6)
    summary = read_json(runs["v1"] / "summary.json")
    assert sum(p["index"] == int(t) for p, t in zip(got, y)) / len(y) == summary["test_accuracy"]

    from PIL import Image  # images as base64 PNGs: predict's own image code, as `dlrun predict a.png` reads them

    files, encoded = [], []
    for i, img in enumerate(x[:6]):
        buf = io.BytesIO()
        Image.fromarray((img[0].numpy().astype(np.float32) * 255 / 16).round().astype(np.uint8)).save(buf, "PNG")
        (tmp_path / f"{i}.png").write_bytes(buf.getvalue())
        files.append(str(tmp_path / f"{i}.png"))
        encoded.append(base64.b64encode(buf.getvalue()).decode())
    status, answer = server.post("/v1/models/digits/versions/1/predict", {"inputs": encoded, "top_k": 2})
    assert status == 200, answer
    from_files = dlrun.load(runs["v1"]).predict(files, top_k=2)
    assert [p["class"] for p in answer["predictions"]] == [p["class"] for p in from_files]
    assert [p["probability"] for p in answer["predictions"]] == pytest.approx(
        [p["probability"] for p in from_files], abs=1e-6)
    assert all(len(p["top"]) == 2 for p in answer["predictions"])

    rows = [{"size": 9.5, "colour": "blue"}, {"size": 1.0, "colour": "green"}, {"colour": "red", "size": 4}]
    status, answer = server.post("/v1/models/table/predict", {"inputs": rows})
    assert status == 200, answer
    (tmp_path / "new.csv").write_text("colour,size\nblue,9.5\ngreen,1.0\nred,4\n")
    from_csv = dlrun.load(runs["table"]).predict(str(tmp_path / "new.csv"))
    assert [p["class"] for p in answer["predictions"]] == [p["class"] for p in from_csv]
    assert [p["probability"] for p in answer["predictions"]] == pytest.approx(
        [p["probability"] for p in from_csv], abs=1e-6)


def test_a_burst_is_answered_in_batches_each_answer_to_its_own_request(server, runs, digits):
    x, _ = digits
    expected = dlrun.load(runs["v1"]).predict(x[:48])
    labels = {"model": "digits", "version": "1"}
    batches = server.metric("dlrun_batch_size_count", **labels)
    singles = server.metric("dlrun_batch_size_bucket", le="1.0", **labels)
    start, answers = threading.Barrier(48), [None] * 48

    def one(i):
        start.wait()
        answers[i] = server.post("/v1/models/digits/versions/1/predict", {"inputs": x[i].tolist()})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(48)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(status == 200 for status, _ in answers), answers
    assert [a["predictions"][0]["class"] for _, a in answers] == [p["class"] for p in expected]
    assert [a["predictions"][0]["probability"] for _, a in answers] == pytest.approx(
        [p["probability"] for p in expected], abs=1e-6)
    new_batches = server.metric("dlrun_batch_size_count", **labels) - batches
    new_singles = server.metric("dlrun_batch_size_bucket", le="1.0", **labels) - singles
    assert new_batches < 48 and new_batches - new_singles >= 1, (new_batches, new_singles)  # batches of more than one


def test_switching_the_default_version_changes_the_answers_and_rolling_back_restores_them(server, runs, digits):
    x, _ = digits
    inputs = {"inputs": x[:20].tolist()}
    by_version = {v: [p["probability"] for p in dlrun.load(runs[f"v{v}"]).predict(x[:20])] for v in (1, 2)}
    assert by_version[1] != pytest.approx(by_version[2], abs=1e-6)

    def default_answers():
        status, answer = server.post("/v1/models/digits/predict", inputs)
        assert status == 200, answer
        return answer["version"], [p["probability"] for p in answer["predictions"]]

    version, probs = default_answers()
    assert version == 2 and probs == pytest.approx(by_version[2], abs=1e-6)  # the newest by default
    assert server.post("/v1/models/digits/default", {"version": 1}) == (200, {"name": "digits", "default": 1,
                                                                              "pinned": True})
    version, probs = default_answers()
    assert version == 1 and probs == pytest.approx(by_version[1], abs=1e-6)
    assert server.post("/v1/models/digits/default", {"version": 2})[0] == 200  # roll forward again ...
    assert default_answers()[0] == 2
    assert server.post("/v1/models/digits/default", {"version": 1})[0] == 200  # ... and back
    assert default_answers()[1] == pytest.approx(by_version[1], abs=1e-6)
    assert server.post("/v1/models/digits/default", {"version": 7})[0] == 404
    assert server.post("/v1/models/digits/default", {"version": None})[1]["default"] == 2  # unpinned: the newest
    models = {m["name"]: m for m in server.get("/v1/models")[1]["models"]}
    assert models["digits"]["default"] == 2 and not models["digits"]["pinned"]


def test_every_bad_input_gets_its_4xx_and_the_next_request_is_served(server, runs, digits):
    x, _ = digits
    good = {"inputs": x[0].tolist()}
    path = "/v1/models/digits/versions/1/predict"
    cases = [  # (path, body, raw body, status, a fragment of the message)
        (path, None, b'{"inputs": [1, 2', 400, "not valid JSON"),
        (path, None, b"", 400, "no body"),
        (path, [1, 2], None, 400, 'a JSON object with the inputs'),
        (path, {"inputs": x[0].tolist(), "topk": 2}, None, 400, "unknown key"),
        (path, {"inputs": x[0, 0].tolist()[:7]}, None, 422, "this model takes one input of shape (1, 8, 8)"),
        (path, {"inputs": np.zeros((2, 3, 8, 8)).tolist()}, None, 422, "inputs of shape (2, 3, 8, 8)"),
        (path, {"inputs": [[1, 2], [3]]}, None, 422, "not a rectangular array"),
        (path, {"inputs": [["a"] * 8] * 8}, None, 422, "the inputs hold text; give numbers"),
        (path, {"inputs": "abc"}, None, 422, "not base64"),
        (path, {"inputs": [[[True] * 8] * 8]}, None, 422, "booleans"),
        (path, None, b'{"inputs": [[[NaN, 0, 0, 0, 0, 0, 0, 0]' + b', [0, 0, 0, 0, 0, 0, 0, 0]' * 7 + b"]]}",
         422, "NaN or infinite"),
        (path, None, b'{"inputs": [[[1e400, 0, 0, 0, 0, 0, 0, 0]' + b', [0, 0, 0, 0, 0, 0, 0, 0]' * 7 + b"]]}",
         422, "NaN or infinite"),
        (path, {"inputs": []}, None, 422, "empty list"),
        (path, {"inputs": x[0].tolist(), "top_k": 0}, None, 422, "top_k"),
        (path, None, b'{"inputs": [' + b"0," * 300_000 + b"0]}", 413, "--max-body-mb"),
        (path, {"inputs": "bm90IGFuIGltYWdl"}, None, 422, "input 0 cannot be read as an image"),
        (path, {"inputs": ["%%%"]}, None, 422, "not base64"),
        ("/v1/models/nope/predict", good, None, 404, "no model 'nope'"),
        ("/v1/models/digits/versions/9/predict", good, None, 404, "no version '9'"),
        ("/v1/models/digits/versions/abc/predict", good, None, 404, "no version 'abc'"),
        ("/v1/models/table/predict", {"inputs": {"size": 3, "colour": "purple"}}, None, 422, "'purple' is not a category"),
        ("/v1/models/table/predict", {"inputs": [{"size": 3}]}, None, 422, "no column 'colour'"),
        ("/v1/models/table/predict", {"inputs": [{"size": 3, "colour": [1]}]}, None, 422, "an object or a list"),
        ("/v1/models/digits/default", {"version": "x"}, None, 422, "version"),
    ]
    for where, body, raw, status, fragment in cases:
        got, answer = server.post(where, body, raw)
        assert (got, fragment in answer.get("error", "")) == (status, True), (where, body, raw and raw[:60], answer)
        assert "\n" not in answer["error"]
        assert server.post(path, good)[0] == 200  # the server goes on
    assert server.metric("dlrun_request_errors_total", model="digits", version="1", kind="not_finite") == 2
    assert server.metric("dlrun_request_errors_total", model="digits", version="1", kind="too_large") == 1


def test_models_are_listed_with_tasks_inputs_and_metrics_and_documented(server, runs):
    status, listing = server.get("/v1/models")
    assert status == 200 and listing["ready"]
    models = {m["name"]: m for m in listing["models"]}
    assert [v["version"] for v in models["digits"]["versions"]] == [1, 2]
    v1 = models["digits"]["versions"][0]
    assert v1["task"] == "multiclass" and v1["input"]["shape"] == [1, 8, 8] and v1["input"]["dtype"] == "uint8"
    assert v1["metrics"]["test_accuracy"] == read_json(runs["v1"] / "summary.json")["test_accuracy"]
    assert models["table"]["versions"][0]["input"]["columns"] == ["size", "colour"]
    assert server.get("/health")[1]["status"] == "ready"
    paths = server.get("/openapi.json")[1]["paths"]
    assert {"/v1/models/{name}/predict", "/v1/models/{name}/versions/{version}/predict", "/v1/models",
            "/v1/models/{name}/default", "/v1/admin/models", "/health", "/metrics"} <= set(paths)
    assert server.get("/docs")[0] == 200


def test_the_drift_figure_rises_when_shifted_inputs_are_sent(server, digits):
    x, _ = digits
    path, labels = "/v1/models/drift/predict", {"model": "drift", "version": "1"}
    assert server.post(path, {"inputs": x[:300].tolist()})[0] == 200
    z, outside = server.metric("dlrun_input_drift_mean_z", **labels), server.metric("dlrun_input_outside_share", **labels)
    assert z < 0.2 and outside == 0.0  # the test split looks like the training split
    assert 0.7 < server.metric("dlrun_input_drift_std_ratio", **labels) < 1.3
    for _ in range(3):  # the same digits, brighter by 10 (of 16): the mean drifts, no value is beyond 4 std
        assert server.post(path, {"inputs": (x[:300] + 10).tolist()})[0] == 200
    shifted = server.metric("dlrun_input_drift_mean_z", **labels)
    assert shifted > z + 0.5, (z, shifted)
    assert server.metric("dlrun_input_outside_share", **labels) == 0.0
    for _ in range(3):  # brighter by 24: far beyond anything seen in training
        assert server.post(path, {"inputs": (x[:300] + 24).tolist()})[0] == 200
    assert server.metric("dlrun_input_drift_mean_z", **labels) > shifted
    assert server.metric("dlrun_input_outside_share", **labels) > 0.5
    assert server.metric("dlrun_input_channel_z", channel="0", **labels) > 0.5


def test_admin_adds_a_run_and_refuses_unfinished_or_corrupted_ones(server, runs, digits, tmp_path):
    x, _ = digits
    unfinished = tmp_path / "unfinished"
    (unfinished / ".hydra").mkdir(parents=True)
    corrupted = tmp_path / "corrupted"
    shutil.copytree(runs["v1"], corrupted)
    data = bytearray((corrupted / "checkpoints" / "best.pt").read_bytes())
    data[-3000] ^= 0xFF
    (corrupted / "checkpoints" / "best.pt").write_bytes(bytes(data))
    for run, fragment in ((unfinished, "it never completed an epoch"), (corrupted, "sha256 differs"),
                          (tmp_path / "missing", "no such run folder")):
        status, answer = server.post("/v1/admin/models", {"run": str(run), "name": "extra"})
        assert status == 422 and fragment in answer["error"], answer
    status, answer = server.post("/v1/admin/models", {"run": str(runs["v2"]), "name": "extra"})
    assert (status, answer) == (201, {"name": "extra", "version": 1, "default": True})
    status, answer = server.post("/v1/models/extra/predict", {"inputs": x[:5].tolist()})
    assert status == 200
    assert [p["class"] for p in answer["predictions"]] == [p["class"] for p in dlrun.load(runs["v2"]).predict(x[:5])]


def burst(port: int, body: bytes, answers: list, errors: list, stop: threading.Event):
    """One client: requests on a kept-alive connection until the server goes away."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.is_set():
        try:
            conn.request("POST", "/v1/models/mlp/predict", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            answers.append((resp.status, json.loads(resp.read())))
        except (OSError, http.client.HTTPException) as exc:  # refused, closed, reset: never taken in
            errors.append(type(exc).__name__)
            return


def test_sigterm_during_a_burst_answers_every_accepted_request_and_exits_0(runs, digits):
    x, _ = digits
    expected = dlrun.load(runs["v1"]).predict(x[:1])[0]["class"]
    srv = Server(str(runs["v1"]), "--batch-timeout-ms", "10")
    try:
        srv.wait_ready()
        answers, errors, stop = [], [], threading.Event()
        body = json.dumps({"inputs": x[:1].tolist()}).encode()
        clients = [threading.Thread(target=burst, args=(srv.port, body, answers, errors, stop)) for _ in range(16)]
        for c in clients:
            c.start()
        deadline = time.monotonic() + 30
        while len(answers) < 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        srv.proc.send_signal(signal.SIGTERM)  # mid-burst
        code, out = srv.stop()
        stop.set()
        for c in clients:
            c.join(30)
    finally:
        srv.stop()
    assert code == 0, out
    assert "Traceback" not in out, out
    assert len(answers) >= 100 and all(s == 200 and a["predictions"][0]["class"] == expected for s, a in answers)
    accepted, answered = map(int, re.search(r"(\d+) prediction request\(s\) accepted, (\d+) answered", out).groups())
    assert accepted == answered == len(answers), (accepted, answered, len(answers), errors[:3])


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_malicious_checkpoint_or_a_missing_run_is_refused_in_one_line(runs, tmp_path, capsys):
    evil = tmp_path / "evil"
    shutil.copytree(runs["v1"], evil)
    torch.save({"model": _Evil()}, evil / "checkpoints" / "best.pt")
    (evil / "checkpoints" / "best.pt.json").unlink()
    env = {**os.environ, "CI": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(DLRUN), "serve", str(evil), "--port", "0"], capture_output=True, text=True, timeout=90,
                          env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot be read safely" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1, proc.stderr
    assert not (tmp_path / "pwned").exists()
    from dlrun.cli.serve import serve_command

    code, out = run_command_inprocess(serve_command, [str(tmp_path / "missing")], capsys)
    assert code == 2 and "no such run folder" in out
    code, out = run_command_inprocess(serve_command, [str(runs["v1"]), "--max-batch", "0"], capsys)
    assert code == 2 and "--max-batch 0" in out


def test_a_batch_answers_each_request_in_order_and_a_failing_input_fails_alone():
    """In-process: the queue and a version's batch, with a model that fails on one request's input."""
    import asyncio
    from types import SimpleNamespace

    from dlrun.serve.decode import Inputs
    from dlrun.serve.models import ModelVersion

    class Model:  # outputs = inputs * 2; an input of -1 breaks the forward pass of its whole batch
        classes, meta = None, {"input_shape": [2], "tokens": False}
        task = SimpleNamespace(decode=lambda out, classes, top_k: [{"output": row.tolist()} for row in out])

        def outputs(self, raw, batch_size=256):
            if (raw == -1).any():
                raise RuntimeError("a broken input")
            return raw.float() * 2

    metrics = SimpleNamespace(batch_size=SimpleNamespace(labels=lambda *a: SimpleNamespace(observe=sizes.append)))
    sizes = []
    version = ModelVersion("m", 1, "run", Model(), {}, metrics)
    inputs = [Inputs(raw=torch.tensor([[float(i), 0.0]] * (1 + i % 2))) for i in range(9)]
    inputs[4] = Inputs(raw=torch.tensor([[-1.0, 0.0]]))

    async def burst():
        version.start(SimpleNamespace(max_batch=64, batch_timeout_ms=50, workers=1))
        answers = await asyncio.gather(*(version.predict(it) for it in inputs), return_exceptions=True)
        await version.close()
        return answers

    answers = asyncio.run(burst())
    assert isinstance(answers[4], RuntimeError)
    for i, answer in enumerate(answers):
        if i != 4:
            assert answer == [{"output": [2.0 * i, 0.0]}] * (1 + i % 2)  # its own inputs, in order
    assert max(sizes) > 1  # they ran in batches; the broken one alone after its batch failed


def test_text_models_answer_strings_as_predict_does(tmp_path):
    """A character model's prompt in, the text `dlrun predict --text` writes out; a character it never saw is a 422."""
    run = train_runs(tmp_path, {"lm": ["model=charlm", "dataset=text", "dataset.length=16", "model.hidden=32",
                                       "trainer.epochs=1", "trainer.limit_batches=20"]})["lm"]
    from dlrun.predict.text import text_answer

    expected = text_answer(dlrun.load(run), "This ", 24)
    srv = Server(f"lm={run}")
    try:
        srv.wait_ready()
        status, answer = srv.post("/v1/models/lm/predict", {"inputs": ["This ", "This "], "length": 24})
        assert status == 200, answer
        assert [p["text"] for p in answer["predictions"]] == [expected, expected]
        status, answer = srv.post("/v1/models/lm/predict", {"inputs": "\u2603 snow"})
        assert status == 422 and "never saw" in answer["error"], answer
    finally:
        code, out = srv.stop()
    assert code == 0, out


def test_sequence_to_sequence_models_translate_strings_as_predict_does(tmp_path):
    """Source texts in, the translations `dlrun predict --text` gives out (reversal of six letters, learned)."""
    run = tmp_path / "rev"
    dlrun.run(["model=seq2seq", "dataset=pairs", "model.d_model=64", "model.ff=128", "model.layers=1", "model.dropout=0",
               "optimizer.lr=0.004", "trainer.batch_size=32", "dataset.source=reverse", "dataset.length=6",
               "dataset.n_samples=2000", "trainer.epochs=6", "logger=quiet", "trainer.summary=false"], run_dir=str(run))
    from dlrun.predict.text import translations

    texts = ["abcdef", "fedcba", "aabbcc"]
    expected = translations(dlrun.load(run), texts)[1]
    srv = Server(f"rev={run}")
    try:
        srv.wait_ready()
        status, answer = srv.post("/v1/models/rev/predict", {"inputs": texts})
        assert status == 200, answer
        assert answer["predictions"] == expected
        assert sum(p["translation"] == t[::-1] for p, t in zip(answer["predictions"], texts)) >= 2  # it learned
    finally:
        code, out = srv.stop()
    assert code == 0, out
