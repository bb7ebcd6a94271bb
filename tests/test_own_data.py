"""Your own data: CSV tables, image folders and .npz arrays, written here from scikit-learn's bundled sets, trained
through the real CLI beside scikit-learn's own MLP on the same split, and predicted again from new files."""
import json

import numpy as np
import pytest
import torch

import dlrun
from conftest import assert_clean_error, read_json, run_dlrun
from dlrun.data.image_folder import image_folder
from dlrun.data.tabular import csv_table
from dlrun.errors import DlrunError


def write_table(name: str, path, seed: int = 0):
    """A bundled scikit-learn set as CSV with a seeded train/val/test column; (frame, split)."""
    from sklearn import datasets

    frame = getattr(datasets, f"load_{name}")(as_frame=True, **({"scaled": False} if name == "diabetes" else {})).frame
    split = np.random.default_rng(seed).choice(["train", "val", "test"], len(frame), p=[0.7, 0.15, 0.15])
    frame = frame.assign(split=split)
    frame.to_csv(path, index=False)
    return frame, split


def sklearn_baseline(frame, split, regression: bool) -> float:
    """scikit-learn's MLP, the same hidden sizes as model=mlp, on the same standardised training rows: test score."""
    from sklearn.metrics import r2_score
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.preprocessing import StandardScaler

    x, y = frame.drop(columns=["target", "split"]).to_numpy(), frame["target"].to_numpy()
    tr, te = split == "train", split == "test"
    scaler = StandardScaler().fit(x[tr])
    mlp = (MLPRegressor if regression else MLPClassifier)(hidden_layer_sizes=(256, 128), max_iter=500, random_state=0)
    mlp.fit(scaler.transform(x[tr]), y[tr])
    pred = mlp.predict(scaler.transform(x[te]))
    return r2_score(y[te], pred) if regression else float((pred == y[te]).mean())


def new_rows(frame, split, path):
    """The test rows as a user would bring them: no target or split, columns in another order, an extra column."""
    rows = frame[split == "test"].drop(columns=["target", "split"])
    rows = rows[list(reversed(rows.columns))].assign(comment="ignored")
    rows.to_csv(path, index=False)
    return frame["target"][split == "test"].to_numpy()


def train_table(name: str, tmp_path, regression: bool):
    """A bundled set written as CSV, trained by the CLI from the file beside scikit-learn's MLP on the same split:
    (frame, split, run folder, summary, scikit-learn's test score)."""
    frame, split = write_table(name, tmp_path / f"{name}.csv")
    run = tmp_path / "run"
    proc = run_dlrun("dataset=csv", f"dataset.path={tmp_path / f'{name}.csv'}", "dataset.target=target",
                     "dataset.split_column=split", "trainer.epochs=30", f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr
    return frame, split, run, read_json(run / "summary.json"), sklearn_baseline(frame, split, regression)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_csv_classification_matches_sklearn_and_predicts_new_rows(tmp_path):
    frame, split, run, summary, theirs = train_table("breast_cancer", tmp_path, regression=False)
    assert summary["task"] == "binary" and summary["n_test"] == (split == "test").sum()
    assert summary["test_accuracy"] >= theirs - 0.01 and summary["test_accuracy"] > 0.9, (summary["test_accuracy"], theirs)

    truth = new_rows(frame, split, tmp_path / "new.csv")
    proc = run_dlrun("predict", str(run), str(tmp_path / "new.csv"), "--out", str(tmp_path / "p.jsonl"))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    predicted = np.array([int(r["class"]) for r in rows])
    assert (predicted == truth).mean() == summary["test_accuracy"]  # the same rows, prepared the same way

    # a row missing a column the model reads, and a file without it: one line naming it, exit 2
    (tmp_path / "short.csv").write_text("mean radius\n12.5\n")
    assert_clean_error(run_dlrun("predict", str(run), str(tmp_path / "short.csv")), 2, "has no column 'mean texture'")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_csv_regression_matches_sklearn_in_the_files_units(tmp_path):
    frame, split, run, summary, theirs = train_table("diabetes", tmp_path, regression=True)
    assert summary["task"] == "regression"
    assert summary["test_r2"] >= theirs - 0.02 and summary["test_r2"] > 0.3, (summary["test_r2"], theirs)

    truth = new_rows(frame, split, tmp_path / "new.csv")
    values = np.array([r["value"] for r in dlrun.load(run).predict(str(tmp_path / "new.csv"))])
    assert 25 <= values.min() and values.max() <= 346  # the file's units (disease progression), not standardised
    assert np.mean((values - truth) ** 2) == pytest.approx(summary["test_mse"], rel=1e-5)


def test_csv_rules_delimiter_bom_quotes_missing_and_categories(tmp_path):
    """A semicolon file with a BOM, a quoted field holding the delimiter, a missing number and a text column."""
    lines = ["size;colour;note;price"] + [f"{i % 7 + 1};{'red' if i % 3 else 'blue'};\"a;b\";{i * 2.5}" for i in range(40)]
    lines[5] = "3;;\"x;y\";7.5"  # missing colour: its own category under missing=mean
    lines[6] = ";red;\"x;y\";8"  # missing size: the training mean
    (tmp_path / "t.csv").write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode())
    data = csv_table(str(tmp_path / "t.csv"), "price")
    assert data.task == "regression" and data.table["targets"] == ["price"]
    columns = {c["name"]: c for c in data.table["columns"]}
    assert columns["colour"]["categories"] == ["(missing)", "blue", "red"] and columns["note"]["categories"] == ["a;b", "x;y"]
    assert data.features["size"] == [0] and data.features["colour"] == [1, 2, 3] and data.input_shape == (6,)
    train_sizes = data.train.x[:, 0]
    assert abs(columns["size"]["fill"] - train_sizes.mean().item()) < 0.1
    dropped = csv_table(str(tmp_path / "t.csv"), "price", missing="drop")
    assert len(dropped.train) + len(dropped.val) + len(dropped.test) == 38 and "2 row(s)" in dropped.notes[0]
    indexed = csv_table(str(tmp_path / "t.csv"), "price", encoding="index")
    assert indexed.input_shape == (3,) and set(indexed.train.x[:, 1].tolist()) <= {0.0, 1.0, 2.0}

    from dlrun.data.tabular import read_rows

    (tmp_path / "new.csv").write_text("note,colour,size,extra\nx;y,red,,1\na;b,green,3,2\n")
    with pytest.raises(DlrunError, match=r"row 3: 'green' is not a category of column 'colour'"):
        read_rows(tmp_path / "new.csv", data.describe())
    (tmp_path / "new.csv").write_text("note,colour,size\nx;y,red,\n")  # a missing size: the training mean
    x, names = read_rows(tmp_path / "new.csv", data.describe())
    assert x[0, 0].item() == pytest.approx(columns["size"]["fill"]) and names == [f"{tmp_path / 'new.csv'}, row 2"]

    (tmp_path / "plain.csv").write_text("".join(f"{i % 5},{i * 0.5},{'ab'[i % 2]}\n" for i in range(40)))
    headerless = csv_table(str(tmp_path / "plain.csv"), 2)  # no header: columns are named 0, 1, 2
    assert headerless.task == "binary" and headerless.classes == ["a", "b"] and list(headerless.features)[:2] == ["0", "1"]


def test_csv_targets_decide_the_task(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    table = {"a": x[:, 0], "b": x[:, 1], "kind": np.where(x[:, 0] > 0, "up", "down"), "count": rng.integers(0, 4, 60),
             "l1": (x[:, 0] > 0).astype(int), "l2": (x[:, 1] > 0).astype(int), "v": x.sum(1)}
    import pandas as pd

    pd.DataFrame(table).to_csv(tmp_path / "t.csv", index=False)
    for target, task, outputs in [("kind", "binary", 1), ("count", "multiclass", 4), ("v", "regression", 1),
                                  (["l1", "l2"], "multilabel", 2), (["v", "a"], "regression", 2)]:
        data = csv_table(str(tmp_path / "t.csv"), target, features=["a", "b"])
        assert (data.task, data.num_outputs) == (task, outputs), target
    assert csv_table(str(tmp_path / "t.csv"), "count", features=["a"], target_kind="values").task == "regression"


@pytest.mark.parametrize("content, options, message", [
    ("a,b\n1,2\n3,4\n", {"target": "c"}, "has no column 'c'"),
    ("a,b\n1,x\n2,0\n3,1\n4,0\n5,1\n6,1\n7,0\n", {"target": "a", "features": ["b"], "categorical": []},
     "row 2: 'x' in column 'b' is not a number"),
    ("a,b\n" + "".join(f"{i},{i}\n" for i in range(20)).replace("7,7", "7,seven"), {"target": "a"}, "'seven' in column 'b'"),
    ("a,b\n1,yes\n2,yes\n3,yes\n", {"target": "b"}, "has a single class ('yes')"),
    ("", {"target": "a"}, "is empty"),
    ("a,b\n1,2\n3,\n", {"target": "a", "missing": "error"}, "row 3: column 'b' has no value"),
    ("a,b\n" + "".join(f"{i},id{i}\n" for i in range(80)), {"target": "a"}, "column 'b' has more than 50 distinct values"),
    ("a,b,s\n1,5,train\n2,6,later\n", {"target": "a", "split_column": "s"}, "row 3: 'later' in the split column"),
])
def test_csv_bad_input_is_named(tmp_path, content, options, message):
    (tmp_path / "t.csv").write_text(content)
    with pytest.raises(DlrunError, match=message.replace("(", r"\(").replace(")", r"\)")):
        csv_table(str(tmp_path / "t.csv"), **options)


def test_csv_bad_input_through_the_cli(tmp_path):
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    assert_clean_error(run_dlrun("dataset=csv", f"dataset.path={tmp_path / 't.csv'}", "dataset.target=zz",
                                 f"hydra.run.dir={tmp_path / 'run'}"), 2, "has no column 'zz'")
    assert not (tmp_path / "run" / "checkpoints").exists()


def write_images(root, split_dirs: bool = True):
    """Digits 0-2 as 16x16 greyscale PNGs in class folders (train/ and test/), plus files a real folder has:
    a note, a corrupt JPEG, a 1x1 image and a big one."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i, (img, t) in enumerate(zip(digits.images, digits.target)):
        if t > 2 or i >= 600:
            continue
        part = ("test" if i % 5 == 0 else "train") if split_dirs else ""
        f = root / part / f"digit{t}" / f"{i}.png"
        f.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * 255 / 16).astype(np.uint8)).resize((16, 16), Image.Resampling.NEAREST).save(f)
    train = root / ("train" if split_dirs else "")
    (train / "digit0" / "README.txt").write_text("not an image")
    (train / "digit1" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    Image.new("L", (1, 1), 255).save(train / "digit2" / "tiny.png")
    Image.new("L", (3000, 2000), 0).save(train / "digit2" / "huge.png")


def test_image_folder_trains_skips_bad_files_and_predicts_new_images(tmp_path):
    write_images(tmp_path / "images")
    run = tmp_path / "run"
    proc = run_dlrun("dataset=image_folder", f"dataset.root={tmp_path / 'images'}", "model=cnn", "trainer.epochs=5",
                     f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr
    summary = read_json(run / "summary.json")
    test_images = sorted((tmp_path / "images" / "test").rglob("*.png"))
    assert summary["n_test"] == len(test_images) and summary["test_accuracy"] > 0.9
    log = (run / "dlrun.log").read_text()
    assert "2 file(s) skipped" in log and "README.txt" in log and "broken.jpg" in log
    assert "as 1x16x16" in log  # the most common size and greyscale, inferred; the 1x1 and the huge one resized

    right = 0
    for k in range(3):
        rows = dlrun.load(run).predict(str(tmp_path / "images" / "test" / f"digit{k}"))
        right += sum(r["class"] == f"digit{k}" for r in rows)
    assert right / len(test_images) == summary["test_accuracy"]  # the same images, prepared by the same code


def test_image_folder_bad_layouts(tmp_path):
    (tmp_path / "one" / "cats").mkdir(parents=True)
    with pytest.raises(DlrunError, match="holds 1 class folder"):
        image_folder(str(tmp_path / "one"))
    (tmp_path / "one" / "dogs").mkdir()
    (tmp_path / "one" / "dogs" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DlrunError, match="none of its 1 image files can be read"):
        image_folder(str(tmp_path / "one"))
    with pytest.raises(DlrunError, match="no such folder"):
        image_folder(str(tmp_path / "nowhere"))


def test_npz_arrays_train_and_predict(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    np.savez(tmp_path / "d.npz", x=(digits.images * 15).astype(np.uint8), y=digits.target)
    run = tmp_path / "run"
    dlrun.run(["dataset=npz", f"dataset.path={tmp_path / 'd.npz'}", "trainer.epochs=3", "logger=quiet",
               "trainer.summary=false"], run_dir=str(run))
    summary = read_json(run / "summary.json")
    from dlrun.data.arrays import npz

    test = npz(str(tmp_path / "d.npz")).test
    assert summary["n_test"] == len(test) == 269 and summary["test_accuracy"] > 0.85  # 15% of 1797, per class
    np.save(tmp_path / "test_x.npy", test.x.numpy())
    rows = dlrun.load(run).predict(str(tmp_path / "test_x.npy"))
    assert np.mean([r["index"] == t for r, t in zip(rows, test.y.tolist())]) == summary["test_accuracy"]
    np.savez(tmp_path / "bad.npz", inputs=np.zeros((3, 2)))
    with pytest.raises(DlrunError, match="name them x and y"):
        npz(str(tmp_path / "bad.npz"))


def test_class_weight_balanced_is_sklearns_and_shifts_the_predictions(tmp_path):
    """`balanced` equals scikit-learn's compute_class_weight; weighing one class up makes the model predict it more,
    and predict on the test split still reproduces the weighted test loss."""
    from sklearn.utils.class_weight import compute_class_weight

    from dlrun.tasks.multiclass import Multiclass

    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 5)
    assert Multiclass.class_weights("balanced", y, 3) == pytest.approx(
        compute_class_weight("balanced", classes=np.arange(3), y=y.numpy()).tolist())
    with pytest.raises(DlrunError, match="has 2 weights; this data has 3 classes"):
        Multiclass.class_weights([1, 2], y, 3)

    common = ["dataset=digits", "dataset.classes=[3,8]", "trainer.epochs=2", "model.hidden=[8]", "logger=quiet",
              "trainer.summary=false"]
    predicted_eights = {}
    for weights in ("null", "[1,30]"):
        run = tmp_path / weights.strip("[]").replace(",", "_")
        dlrun.run([*common, f"trainer.class_weight={weights}"], run_dir=str(run))
        cm = read_json(run / "summary.json")["confusion_matrix"]
        predicted_eights[weights] = cm[0][1] + cm[1][1]
    assert predicted_eights["[1,30]"] > predicted_eights["null"] + 5, predicted_eights
    summary = read_json(run / "summary.json")
    metrics, _, _ = dlrun.load(run).evaluate_split("test")
    assert metrics["loss"] == summary["test_loss"]
    assert_clean_error(run_dlrun("dataset=synthetic", "dataset.kind=regression", "trainer.class_weight=balanced",
                                 f"hydra.run.dir={tmp_path / 'r'}"), 2, "task=regression has no classes to weigh")


def write_wine(path):
    """Wine as a table with a text class, a categorical column (colour intensity in three bands) and a value."""
    import pandas as pd
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    frame["class"] = [["barolo", "grignolino", "barbera"][t] for t in frame.pop("target")]
    frame["intensity"] = pd.cut(frame.pop("color_intensity"), [0, 3.5, 6, 20], labels=["pale", "medium", "deep"]).astype(str)
    frame["split"] = np.random.default_rng(0).choice(["train", "val", "test"], len(frame), p=[0.7, 0.15, 0.15])
    frame.to_csv(path, index=False)
    return frame


def test_two_inputs_two_outputs_report_both_and_loss_weights_shift_the_balance(tmp_path):
    """The recipe's graph (numeric and categorical inputs; a class head and a value head) reports both heads' metrics;
    weighing one head to zero leaves it untrained while the other learns; predict reproduces the test pass."""
    frame = write_wine(tmp_path / "wine.csv")
    common = ["experiment=graph_two_inputs_two_outputs", f"dataset.path={tmp_path / 'wine.csv'}",
              "dataset.target=[class,alcohol]", "dataset.split_column=split"]
    proc = run_dlrun(*common, f"hydra.run.dir={tmp_path / 'both'}")
    assert proc.returncode == 0, proc.stderr
    both = read_json(tmp_path / "both" / "summary.json")
    assert both["task"] == "multioutput" and both["test_class_accuracy"] > 0.9 and both["test_alcohol_r2"] > 0.2, both
    results = {}
    for name, weights in (("no_class", "{class:0,alcohol:1}"), ("no_value", "{class:1,alcohol:0}")):
        dlrun.run([*common, f"loss.weights={weights}", "logger=quiet", "trainer.summary=false"],
                  run_dir=str(tmp_path / name))
        results[name] = read_json(tmp_path / name / "summary.json")
    assert results["no_class"]["test_class_accuracy"] < both["test_class_accuracy"] - 0.3
    assert results["no_class"]["test_alcohol_r2"] > 0.2
    assert results["no_value"]["test_alcohol_r2"] < both["test_alcohol_r2"] - 0.3
    assert results["no_value"]["test_class_accuracy"] > 0.9

    metrics, _, _ = dlrun.load(tmp_path / "no_value").evaluate_split("test")  # trained in this process: exact
    assert all(results["no_value"][f"test_{k}"] == v for k, v in metrics.items()) and "alcohol_r2" in metrics
    rows = frame[frame["split"] == "test"].drop(columns=["class", "alcohol", "split"])
    rows.to_csv(tmp_path / "new.csv", index=False)
    preds = dlrun.load(tmp_path / "both").predict(str(tmp_path / "new.csv"))
    truth = frame[frame["split"] == "test"]
    assert np.mean([p["outputs"]["class"]["class"] == c for p, c in zip(preds, truth["class"])]) == both["test_class_accuracy"]
    values = np.array([p["outputs"]["alcohol"]["value"] for p in preds])
    assert np.mean((values - truth["alcohol"].to_numpy()) ** 2) == pytest.approx(both["test_alcohol_mse"], rel=1e-5)


def test_heads_loss_is_the_weighted_sum_of_each_heads_loss():
    from dlrun.tasks.base import build_task

    heads = [{"name": "k", "task": "multiclass", "width": 3, "classes": ["a", "b", "c"], "scale": None},
             {"name": "v", "task": "regression", "width": 1, "classes": None, "scale": ([0.0], [1.0])}]
    task = build_task("multioutput", {"name": "auto", "weights": {"v": 0.25}}, 4, {"heads": heads})
    out, y = torch.randn(5, 4), torch.stack([torch.tensor([0., 2, 1, 1, 0]), torch.randn(5)], 1)
    manual = torch.nn.functional.cross_entropy(out[:, :3], y[:, 0].long()) + 0.25 * torch.nn.functional.mse_loss(
        out[:, 3:], y[:, 1:])
    torch.testing.assert_close(task.loss_fn(out, y), manual)
    with pytest.raises(DlrunError, match="loss.weights names w, which are not targets"):
        build_task("multioutput", {"name": "auto", "weights": {"w": 1.0}}, 4, {"heads": heads})


def test_streaming_from_a_prepared_file_gives_the_same_run(tmp_path):
    """dataset.in_memory=false: the table is read in chunks and encoded once into a memory-mapped file that the
    DataLoader's workers read batches from; the run's numbers are the in-memory run's, and a second run reuses
    the file."""
    write_table("breast_cancer", tmp_path / "cancer.csv")
    common = ["dataset=csv", f"dataset.path={tmp_path / 'cancer.csv'}", "dataset.target=target",
              "dataset.split_column=split", "trainer.epochs=3"]
    env = {"DLRUN_DATA": str(tmp_path / "data")}
    summaries = {}
    for name, extra in (("memory", []), ("stream", ["dataset.in_memory=false", "dataset.chunk_rows=100",
                                                     "dataset.num_workers=1"])):
        proc = run_dlrun(*common, *extra, f"hydra.run.dir={tmp_path / name}", env=env)
        assert proc.returncode == 0, proc.stderr
        summaries[name] = read_json(tmp_path / name / "summary.json")
    for key in ("test_loss", "test_accuracy", "n_train", "n_val", "n_test"):
        assert summaries["stream"][key] == summaries["memory"][key], key
    prepared = list((tmp_path / "data" / "prepared").glob("csv-cancer-*.npy"))
    assert len(prepared) == 1 and np.load(prepared[0], mmap_mode="r").shape == (569, 30)
    stamp = prepared[0].stat().st_mtime_ns
    proc = run_dlrun(*common, "dataset.in_memory=false", "dataset.chunk_rows=100", "trainer.epochs=1",
                     f"hydra.run.dir={tmp_path / 'again'}", env=env)
    assert proc.returncode == 0 and prepared[0].stat().st_mtime_ns == stamp  # opened, not written again


def test_image_folder_streams_from_a_prepared_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DLRUN_DATA", str(tmp_path / "data"))
    write_images(tmp_path / "images", split_dirs=False)
    memory = image_folder(str(tmp_path / "images"))
    stream = image_folder(str(tmp_path / "images"), in_memory=False)
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(memory, part).x, getattr(stream, part).x)
        assert torch.equal(getattr(memory, part).y, getattr(stream, part).y)
    assert memory.notes[1] == stream.notes[1]  # the same files skipped, named
    assert isinstance(np.load(next((tmp_path / "data" / "prepared").glob("images-*.npy")), mmap_mode="r"), np.memmap)


def test_graph_outputs_name_the_tables_targets():
    """Outputs written {node, target} take their width from the target's head and follow the targets' order; a target
    the data lacks, or one left without an output, is refused before training."""
    from dlrun.models.graph import Graph

    nodes = [{"name": "h", "input": "x", "layers": ["linear:8", "relu"]}, {"name": "v", "input": "h", "layers": ["linear"]},
             {"name": "k", "input": "h", "layers": ["linear"]}]
    heads = {"kind": 3, "value": 1}
    model = Graph((5,), 4, nodes=nodes, outputs=[{"node": "v", "target": "value"}, {"node": "k", "target": "kind"}],
                  heads=heads)
    assert model(torch.zeros(2, 5)).shape == (2, 4) and model.outputs == ["k", "v"]  # the targets' order
    with pytest.raises(DlrunError, match="gives target 'size', which is not one of the dataset's targets"):
        Graph((5,), 4, nodes=nodes, outputs=[{"node": "v", "target": "size"}, {"node": "k", "target": "kind"}], heads=heads)
    with pytest.raises(DlrunError, match="give each of the dataset's targets"):
        Graph((5,), 4, nodes=nodes[:2], outputs=[{"node": "v", "target": "value"}], heads=heads)


def test_class_weight_reaches_the_loss_of_more_than_two_classes():
    """trainer.class_weight with three classes is torch's CrossEntropyLoss(weight=): sum(w_y * loss) / sum(w_y)."""
    from dlrun.tasks.multiclass import Multiclass

    task = Multiclass.build({"name": "auto"}, 3, None, [1.0, 1.0, 4.0])
    out, y = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]]), torch.tensor([1, 2])
    each = torch.nn.functional.cross_entropy(out, y, reduction="none")
    assert float(task.loss_fn(out, y)) == pytest.approx(float((1 * each[0] + 4 * each[1]) / 5))
