"""Dense targets: dataset=canvas (digits pasted on a canvas: masks and boxes), dataset=dense_folder (your own images
with masks and YOLO labels), model=unet and task=segmentation, trained through the real CLI, predicted and exported."""
import json

import numpy as np
import pytest
import torch

import dlrun
from conftest import FASHION, Server, assert_clean_error, png_base64, read_json, run_dlrun, run_main_inprocess
from dlrun.data.canvas import canvas, paint, source_items, tight_box
from dlrun.data.dense_folder import dense_folder
from dlrun.errors import DlrunError

THRESHOLD = round(0.3 * 255)  # canvas' default threshold in uint8 pixels: an item's shape is brighter than this
# the short run of the tests: 32x32 canvases of up to two of the digits 0, 1 and 2; 8 epochs, about 30 s on one core
CANVAS = {"size": 32, "objects": 2, "classes": [0, 1, 2], "n_samples": 600}
TRAIN = ["dataset=canvas", *(f"dataset.{k}={v}".replace(" ", "") for k, v in CANVAS.items()), "model=unet",
         "model.depth=2", "model.width=16", "trainer.batch_size=16", "optimizer.lr=0.003", "trainer.epochs=8",
         "trainer.summary=false"]


def pixel_box(row: torch.Tensor, size: int) -> tuple[int, int, int, int]:
    """A YOLO row [class, cx, cy, w, h] back to (top, left, bottom, right) pixels, inclusive."""
    _, cx, cy, w, h = (row * torch.tensor([1, size, size, size, size])).tolist()
    return round(cy - h / 2), round(cx - w / 2), round(cy + h / 2) - 1, round(cx + w / 2) - 1


def test_canvas_boxes_are_the_visible_pixels_of_each_pasted_item():
    """Overlapping items: each box is the tight box of its item's pixels left visible, the mask there is its class,
    the mask is the union of the items and exactly the canvas pixels above the threshold."""
    items, labels, _ = source_items("digits", 0.1, 0.2, 0)
    rng = np.random.default_rng(1)
    images, masks, instances, boxes = paint(items[0], labels[0], 200, 64, 4, 2, True, 0, 0.0, (16, 32), 0.3, rng)
    pixels = np.rint(images * 255)
    assert ((pixels > THRESHOLD) == (masks > 0)).all()  # the mask is exactly the items' bright pixels
    assert ((instances > 0) == (masks > 0)).all()
    covered = 0
    for image, mask, inst, rows in zip(pixels, masks, instances, torch.from_numpy(boxes)):
        real = rows[rows[:, 0] >= 0]
        numbers = [n for n in np.unique(inst) if n]
        assert len(real) == len(numbers) and (rows[len(real):] == torch.tensor([-1.0, 0, 0, 0, 0])).all()
        covered += int(inst.max()) - len(numbers)  # items a later one hid completely: no box
        for row, n in zip(real, numbers):
            assert pixel_box(row, 64) == tight_box(inst == n)
            assert set(np.unique(mask[inst == n])) == {int(row[0]) + 1}  # the item's class, shifted past background
    assert covered < 200 * 4  # (a few items may be hidden; most are not)


def test_canvas_without_overlap_and_with_clutter_from_the_bundle_alone():
    """overlap=false: boxes never intersect, each box holds exactly its item's class pixels and they fill it tightly,
    and no class pixel lies outside every box; clutter brightens the background but never enters the mask."""
    data = canvas(size=64, objects=3, min_objects=2, overlap=False, clutter=3, n_samples=150, seed=2)
    assert data.task == "segmentation" and data.num_outputs == 11 and data.classes[:2] == ["background", "0"]
    assert data.train.x.dtype == torch.uint8 and data.train.x.shape[1:] == (1, 64, 64)
    boxes = data.targets["detection"]
    assert [len(b) for b in boxes] == [len(data.train), len(data.val), len(data.test)]
    assert boxes[0].dtype == torch.float32 and boxes[0].shape[1:] == (3, 5)
    bright_background = 0
    for x, mask, rows in zip(data.train.x[:, 0], data.train.y, boxes[0]):
        real = [pixel_box(r, 64) for r in rows if r[0] >= 0]
        assert len(real) >= 1
        inside = torch.zeros_like(mask, dtype=torch.bool)
        for (t, l, b, r), row in zip(real, [r for r in rows if r[0] >= 0]):
            region = mask[t:b + 1, l:r + 1]
            assert set(region.unique().tolist()) == {0, int(row[0]) + 1}
            assert tight_box((region > 0).numpy()) == (0, 0, b - t, r - l)
            assert not inside[t:b + 1, l:r + 1].any()  # no two boxes intersect
            inside[t:b + 1, l:r + 1] = True
        assert not (mask[~inside] > 0).any()
        assert (x[mask > 0] > THRESHOLD).all()
        bright_background += int((x[mask == 0] > THRESHOLD).sum())
    assert bright_background > 0  # the clutter fragments


def test_canvas_is_determined_by_its_seed():
    a, b, c = (canvas(n_samples=60, objects=2, noise=0.05, seed=s) for s in (5, 5, 6))
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert torch.equal(a.targets["detection"][2], b.targets["detection"][2])
    assert not torch.equal(a.train.x, c.train.x)


@pytest.mark.skipif(not FASHION.exists(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_canvas_masks_are_the_garments_dark_ones_too():
    from dlrun.data.vision import FASHION_CLASSES

    data = canvas(source="fashion_mnist", n_samples=40, objects=3)
    assert data.classes == ["background", *FASHION_CLASSES] and data.num_outputs == 11
    x, y = data.train.x[:, 0], data.train.y
    assert (y[x >= 14] > 0).all() and (x[y > 0] >= 13).all()  # its threshold, 5% of full intensity (12.75)
    assert set(y.unique().tolist()) - {0} and (y > 0).double().mean() > 0.05


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A short UNet run on digit canvases through the CLI: (run folder, summary)."""
    run = tmp_path_factory.mktemp("unet") / "run"
    proc = run_dlrun(*TRAIN, f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return run, read_json(run / "summary.json")


def background_miou(masks: torch.Tensor) -> float:
    """The mean IoU of predicting background everywhere, over the classes the masks hold (the others are 0)."""
    present = masks.unique()
    return float((masks == 0).double().mean()) / len(present)


def test_unet_learns_the_masks_and_predict_reproduces_its_metrics(trained, tmp_path):
    run, summary = trained
    data = canvas(**CANVAS)
    baseline = background_miou(data.test.y)
    assert summary["task"] == "segmentation" and summary["n_test"] == len(data.test) == 120
    assert summary["test_miou"] > baseline + 0.3, (summary["test_miou"], baseline)
    assert summary["test_pixel_accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-6)
    per_class = [v for k, v in summary.items() if k.startswith("test_iou_")]
    assert len(per_class) == 4 and summary["test_iou_background"] > 0.9
    assert summary["test_miou"] == pytest.approx(np.mean(per_class), abs=1e-6)
    assert (run / "masks.png").stat().st_size > 10_000

    proc = run_dlrun("predict", str(run), "--split", "test", "--out", str(tmp_path / "p.jsonl"))
    assert proc.returncode == 0, proc.stderr
    for key in ("miou", "dice", "pixel_accuracy", "iou_background", "accuracy"):
        assert f"test_{key}: {summary[f'test_{key}']:.6g}" in proc.stdout, key
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    predicted = torch.tensor([r["mask"] for r in rows])
    assert (predicted == data.test.y).double().mean().item() == pytest.approx(summary["test_pixel_accuracy"], abs=1e-6)
    assert len(list(tmp_path.glob("test_*_mask.png"))) == 120


def test_predict_on_png_files_writes_a_mask_per_image(trained, tmp_path):
    from PIL import Image

    run, summary = trained
    data = canvas(**CANVAS)
    folder = tmp_path / "images"
    folder.mkdir()
    for i, x in enumerate(data.test.x[:, 0].numpy()):
        Image.fromarray(x).save(folder / f"canvas{i:03d}.png")
    out = tmp_path / "out" / "p.csv"
    out.parent.mkdir()
    proc = run_dlrun("predict", str(run), str(folder), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    files = sorted(out.parent.glob("canvas*_mask.png"))
    assert len(files) == len(data.test)
    masks = torch.stack([torch.from_numpy(np.asarray(Image.open(f), dtype=np.int64)) for f in files])
    assert masks.max() <= 3  # class ids as pixel values
    assert (masks == data.test.y).double().mean().item() == pytest.approx(summary["test_pixel_accuracy"], abs=1e-6)
    assert "pixels" in out.read_text().splitlines()[0]


def test_served_masks_are_predicts(trained):
    """`dlrun serve` answers base64 PNG canvases with the masks `dlrun predict` gives (and their pixel counts)."""
    run, _ = trained
    images = canvas(**CANVAS).test.x[:4, 0].numpy()
    encoded = png_base64(images)
    expected = dlrun.load(run).predict(images[:, None])
    srv = Server(f"unet={run}")
    try:
        srv.wait_ready()
        status, answer = srv.post("/v1/models/unet/predict", {"inputs": encoded})
        assert status == 200, answer
        assert [p["mask"] for p in answer["predictions"]] == [p["mask"] for p in expected]
        assert [p["pixels"] for p in answer["predictions"]] == [p["pixels"] for p in expected]
        assert len({str(p["mask"]) for p in expected}) > 1  # four different canvases, four different masks
    finally:
        code, out = srv.stop()
    assert code == 0, out


def test_a_trained_unet_exports_to_onnx(trained, tmp_path):
    import onnxruntime as ort

    run, _ = trained
    out = tmp_path / "unet.onnx"
    proc = run_dlrun("export", str(run), "--format", "onnx", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    x = canvas(**CANVAS).test.x[:5]
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    assert got.shape == (5, 4, 32, 32)
    torch.testing.assert_close(torch.from_numpy(got), dlrun.load(run).outputs(x), atol=1e-4, rtol=1e-4)


def test_model_and_task_that_do_not_fit_are_refused_before_training(tmp_path, monkeypatch, capsys):
    assert_clean_error(run_dlrun("model=unet", "task=multiclass", f"hydra.run.dir={tmp_path / 'a'}"), 2,
                       "model=unet gives a score per class and pixel, but task=multiclass needs one output vector")
    assert not (tmp_path / "a" / "checkpoints").exists()
    code, out = run_main_inprocess(["dataset=canvas", "dataset.n_samples=60", "model=cnn",
                                    f"hydra.run.dir={tmp_path / 'b'}"], monkeypatch, capsys)
    assert code == 2 and "model=cnn gives one output vector per input, but task=segmentation needs a score" in out
    code, out = run_main_inprocess(["model=unet", f"hydra.run.dir={tmp_path / 'c'}"], monkeypatch, capsys)
    assert code == 2 and "task=segmentation learns a class per pixel: it needs a mask per image" in out, out


def write_dense_folder(root, n: int = 12, masks: bool = True, labels: bool = True):
    """Canvases as your own files: images/, masks/ and YOLO labels/; returns the canvas bundle's (x, y, boxes)."""
    from PIL import Image

    data = canvas(size=32, objects=2, n_samples=n * 2, val_split=0.25, test_split=0.25, seed=3)
    x, y, boxes = data.train.x[:n, 0], data.train.y[:n], data.targets["detection"][0][:n]
    for sub in ("images", *(["masks"] if masks else []), *(["labels"] if labels else [])):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(x[i].numpy()).save(root / "images" / f"img{i:02d}.png")
        if masks:
            Image.fromarray(y[i].numpy().astype(np.uint8)).save(root / "masks" / f"img{i:02d}.png")
        if labels:
            lines = [f"{int(r[0])} " + " ".join(f"{v:.6f}" for v in r[1:].tolist()) for r in boxes[i] if r[0] >= 0]
            (root / "labels" / f"img{i:02d}.txt").write_text("\n".join(lines) + "\n")
    return x, y, boxes


def test_dense_folder_reads_masks_and_yolo_boxes_as_the_canvas_gave_them(tmp_path):
    x, y, boxes = write_dense_folder(tmp_path)
    data = dense_folder(str(tmp_path), classes=[f"digit{i}" for i in range(10)], val_split=0.25, test_split=0.25)
    assert data.task == "segmentation" and data.num_outputs == 11 and data.classes[1] == "digit0"
    assert data.input_shape == (1, 32, 32) and [len(data.train), len(data.val), len(data.test)] == [6, 3, 3]
    got_x = torch.cat([data.train.x, data.val.x, data.test.x])[:, 0]
    order = [next(j for j in range(len(x)) if torch.equal(x[j], g)) for g in got_x]  # the split's order of files
    assert sorted(order) == list(range(12))
    assert torch.equal(torch.cat([data.train.y, data.val.y, data.test.y]), y[order])
    got_boxes = torch.cat(data.targets["detection"])
    assert got_boxes.shape == (12, 2, 5)
    torch.testing.assert_close(got_boxes, boxes[order], atol=1e-6, rtol=0)

    only_boxes = tmp_path / "boxes"
    write_dense_folder(only_boxes, masks=False)
    data = dense_folder(str(only_boxes), classes=10)
    assert data.task == "detection" and data.train.y.shape[1:] == (2, 5)


@pytest.mark.parametrize("case, message", [
    ("mask_id", "masks/img03.png: class id 11 in the mask, but there are 10 classes"),
    ("box_outside", "labels/img04.txt, line 1: the box (cx 0.9, cy 0.5, w 0.4, h 0.2) is not inside the image"),
    ("fields", "labels/img05.txt, line 2: 4 fields; a YOLO line is `class cx cy w h`"),
    ("no_mask", "images/img06.png has no mask"),
])
def test_dense_folder_bad_input_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys, case, message):
    from PIL import Image

    write_dense_folder(tmp_path)
    if case == "mask_id":
        Image.fromarray(np.full((32, 32), 11, np.uint8)).save(tmp_path / "masks" / "img03.png")
    elif case == "box_outside":
        (tmp_path / "labels" / "img04.txt").write_text("1 0.9 0.5 0.4 0.2\n")
    elif case == "fields":
        (tmp_path / "labels" / "img05.txt").write_text("1 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2\n")
    else:
        (tmp_path / "masks" / "img06.png").unlink()
    args = ["dataset=dense_folder", f"dataset.root={tmp_path}", "dataset.classes=10", "model=unet",
            f"hydra.run.dir={tmp_path / 'run'}"]
    if case == "mask_id":  # once through a real process: exit 2, one line, no traceback
        proc = run_dlrun(*args)
        assert_clean_error(proc, 2, message)
        out = proc.stdout + proc.stderr
    else:
        code, out = run_main_inprocess(args, monkeypatch, capsys)
        assert code == 2, out
    assert message in out and str(tmp_path) in out
    assert len([line for line in out.splitlines() if line.startswith("error:")]) == 1
    with pytest.raises(DlrunError, match="dense_folder reads images/ with masks/"):
        dense_folder(str(tmp_path / "images"))


def test_masks_png_draws_colour_images_in_colour(tmp_path):
    """Images arrive as (channels, H, W): a red square stays red in the figure, a grey one stays grey."""
    from PIL import Image

    from dlrun.plotter import draw_masks

    red = np.zeros((3, 8, 8))
    red[0, 2:6, 2:6] = 1.0
    grey = red[:1]
    mask = np.zeros((8, 8), dtype=int)
    mask[2:6, 2:6] = 1
    for name, image in (("rgb", red), ("grey", grey)):
        draw_masks([image.tolist()], [mask.tolist()], [mask.tolist()], ["background", "square"], tmp_path / f"{name}.png")
    rgb, grey_png = (np.asarray(Image.open(tmp_path / f"{n}.png").convert("RGB")).astype(int) for n in ("rgb", "grey"))
    redness = lambda px: (px[..., 0] - px[..., 1:].max(-1))  # noqa: E731
    assert (redness(rgb) > 200).sum() > 100   # the square, drawn red
    assert (redness(grey_png) > 200).sum() < (redness(rgb) > 200).sum() / 4  # grey: no such red area


def test_a_sweep_and_its_report_show_mean_iou(tmp_path):
    """The task's headline metric (Task.headline) heads the sweep's table and the report, not pixel accuracy."""
    proc = run_dlrun("-m", "dataset=canvas", "dataset.size=32", "dataset.objects=2", "dataset.classes=[0,1,2]",
                     "dataset.n_samples=200", "model=unet", "model.depth=2", "model.width=8", "trainer.epochs=1,2",
                     "logger=quiet", "trainer.summary=false", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = proc.stdout[proc.stdout.index("2 jobs"):]
    assert "test_miou" in table and "test_accuracy" not in table
    miou = [read_json(tmp_path / str(job) / "summary.json")["test_miou"] for job in (0, 1)]
    report = run_dlrun("report", str(tmp_path))
    assert report.returncode == 0 and "sorted by test_miou (desc)" in report.stdout, report.stdout + report.stderr
    import csv

    rows = list(csv.DictReader(open(tmp_path / "report.csv")))
    assert float(rows[0]["test_miou"]) == pytest.approx(max(miou))  # the best mean IoU first
