"""`dlrun export`: the exported model takes raw inputs (its normalisation inside), any batch size, and gives
the trained model's outputs; ONNX is checked with onnxruntime against torch on the whole test split."""
import json

import pytest
import torch

import dlrun
from conftest import assert_clean_error, read_json, run_command_inprocess, run_dlrun, train_runs
from dlrun.config import compose
from dlrun.data import build_dataset

MODELS = {  # one short run of each family that ONNX must carry
    "mlp": ["trainer.epochs=2"],
    "cnn": ["model=cnn", "trainer.epochs=2"],
    "resnet": ["model=resnet", "model.depth=8", "trainer.epochs=1"],
    "lstm": ["model=lstm", "model.hidden=32", "trainer.epochs=2"],
    "transformer": ["model=transformer", "model.d_model=32", "model.layers=1", "trainer.epochs=1"],
    "charlm": ["model=charlm", "dataset=text", "dataset.length=16", "model.hidden=32", "trainer.epochs=1"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return train_runs(tmp_path_factory.mktemp("export"), MODELS)


def raw_test_split(run):
    """The run's test split as its dataset gives it (uint8 pixels, token ids), and its targets."""
    dataset = dlrun.load(run).meta["dataset"]
    cfg = compose([f"dataset={dataset['name']}"] + ([f"dataset.length={dataset['length']}"] if "length" in dataset else []))
    data = build_dataset(cfg.dataset)
    return data.test.x, data.test.y


@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_gives_the_models_outputs_and_its_test_accuracy(runs, tmp_path, name):
    import onnx
    import onnxruntime as ort

    run, out = runs[name], tmp_path / f"{name}.onnx"
    proc = run_dlrun("export", str(run), "--format", "onnx", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    meta = json.loads({p.key: p.value for p in onnx.load(out).metadata_props}["dlrun"])
    assert meta["task"] in ("multiclass", "next_token") and meta["input_shape"][0] == "batch"
    x, y = raw_test_split(run)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])  # the whole split as one batch
    want = dlrun.load(run).outputs(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    hits = (got.argmax(-1) == y).double()
    accuracy = (hits.mean(1) if hits.dim() > 1 else hits).sum().item() / len(y)  # per token for charlm
    assert accuracy == pytest.approx(read_json(run / "summary.json")["test_accuracy"], abs=1e-6)  # one miss: 3e-3
    if meta["task"] == "multiclass":
        assert meta["classes"] == [str(i) for i in range(10)] and session.get_inputs()[0].type == "tensor(uint8)"


@pytest.mark.parametrize("fmt", ["torchscript", "pt2", "safetensors"])
def test_the_other_formats_load_back_to_the_same_outputs(runs, tmp_path, fmt):
    from dlrun.predict.export import RawInputModel

    run = runs["cnn"]
    out = tmp_path / f"model.{fmt}"
    proc = run_dlrun("export", str(run), "--format", fmt, "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    predictor = dlrun.load(run)
    x = raw_test_split(run)[0][:37]
    want = predictor.outputs(x)
    if fmt == "torchscript":
        files = {"dlrun.json": ""}
        got = torch.jit.load(str(out), _extra_files=files)(x)
        meta = json.loads(files["dlrun.json"])
    elif fmt == "pt2":
        files = {"dlrun.json": ""}
        got = torch.export.load(str(out), extra_files=files).module()(x)
        meta = json.loads(files["dlrun.json"])
    else:
        from safetensors import safe_open
        from safetensors.torch import load_file

        fresh = RawInputModel(predictor.normalise, dlrun.load(run).model)
        with torch.no_grad():
            for p in fresh.parameters():
                p.zero_()
        fresh.load_state_dict(load_file(out))
        got = fresh.eval()(x)
        with safe_open(out, "pt") as f:
            meta = json.loads(f.metadata()["dlrun"])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert meta["model"] == "cnn" and meta["input_dtype"] == "uint8"


def test_export_refuses_to_overwrite_and_names_what_it_cannot_do(runs, tmp_path, capsys):
    run = runs["mlp"]
    assert run_dlrun("export", str(run), "--format", "safetensors").returncode == 0
    assert_clean_error(run_dlrun("export", str(run), "--format", "safetensors"), 2, "model.safetensors exists")
    assert_clean_error(run_dlrun("export", str(tmp_path), "--format", "onnx"), 2, "has no checkpoints/best.pt")
    from dlrun.cli.export import export_command

    gan = tmp_path / "gan"
    dlrun.run(["experiment=gan_digits", "trainer.epochs=1", "logger=quiet"], run_dir=str(gan))
    for fmt in ("onnx", "pt2", "torchscript"):  # its forward samples noise: a graph could not be checked
        code, out = run_command_inprocess(export_command, [str(gan), "--format", fmt, "--out", str(tmp_path / f"g.{fmt}")],
                                          capsys)
        assert code == 2 and f"model=gan cannot be exported as {fmt}: its forward draws random numbers" in out, out
        assert not (tmp_path / f"g.{fmt}").exists()
    assert run_command_inprocess(export_command, [str(gan), "--format", "safetensors"], capsys)[0] == 0
