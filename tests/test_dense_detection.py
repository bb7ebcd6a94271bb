"""Detection: model=yolov1, task=detection (YOLO v1's loss, NMS, mAP), on dataset=canvas; predict and export."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import Server, assert_clean_error, png_base64, assert_config_mistake, read_json, read_jsonl, run_dlrun
from dlrun.errors import DlrunError
from dlrun.registry import create_model
from dlrun.tasks.detection import YoloLoss, detect, mean_average_precision, true_boxes


def grid(s: int, b: int, c: int, batch: int = 1) -> torch.Tensor:
    """An all-zero YOLO output, (batch, S, S, B*5 + C)."""
    return torch.zeros(batch, s, s, b * 5 + c)


# ---- the loss, by hand ---------------------------------------------------------------------------------
def test_yolo_loss_equals_the_paper_computed_by_hand():
    """A 2x2 grid, B=2 boxes, C=2 classes, one object of class 1 at (cx, cy, w, h) = (0.3, 0.7, 0.49, 0.36)."""
    out = grid(2, 2, 2, batch=2)  # per cell: [x, y, sqrt w, sqrt h, conf] x 2 boxes, then p(class 0), p(class 1)
    # The object's centre (0.3, 0.7) * S = (0.6, 1.4): column 0, row 1; in that cell x = 0.6, y = 0.4.
    out[0, 1, 0] = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.6,    # box 0: centre (0.25, 0.75), 0.25 x 0.25, conf 0.6
                                 0.5, 0.4, 0.6, 0.6, 0.3,    # box 1: centre (0.25, 0.70), 0.36 x 0.36, conf 0.3
                                 0.2, 0.7])                  # class probabilities
    out[0, 0, 0, [4, 9]] = torch.tensor([0.1, 0.2])  # the other cells' confidences, and class scores that
    out[0, 0, 1, [4, 9]] = torch.tensor([0.0, 0.4])  # do not count (no object there)
    out[0, 1, 1, [4, 9, 10, 11]] = torch.tensor([0.5, 0.0, 0.9, 0.9])
    out[1, 0, 0, 4] = 0.2  # a second image without objects: one confident box
    target = torch.tensor([[[1, 0.3, 0.7, 0.49, 0.36], [-1, 0, 0, 0, 0]],
                           [[-1, 0, 0, 0, 0], [-1, 0, 0, 0, 0]]])
    # True box: x 0.3 +- 0.245 = [0.055, 0.545], y 0.7 +- 0.18 = [0.52, 0.88]; area 0.49 * 0.36 = 0.1764.
    # Box 0: x [0.125, 0.375], y [0.625, 0.875], inside the true box: IoU = 0.0625 / 0.1764 = 0.3543.
    # Box 1: x [0.07, 0.43], y [0.52, 0.88], inside the true box: IoU = 0.1296 / 0.1764 = 0.7347 -> responsible.
    iou_1 = 0.36 * 0.36 / 0.1764
    coord = 5 * ((0.6 - 0.5) ** 2 + (0.4 - 0.4) ** 2 + (math.sqrt(0.49) - 0.6) ** 2 + (math.sqrt(0.36) - 0.6) ** 2)
    obj = (iou_1 - 0.3) ** 2
    noobj = 0.5 * (0.6 ** 2 + 0.1 ** 2 + 0.2 ** 2 + 0.0 ** 2 + 0.4 ** 2 + 0.5 ** 2 + 0.0 ** 2 + 0.2 ** 2)
    cls = (0 - 0.2) ** 2 + (1 - 0.7) ** 2
    assert coord == pytest.approx(0.1) and obj == pytest.approx(0.188959, abs=1e-6)
    assert noobj == pytest.approx(0.43) and cls == pytest.approx(0.13)
    loss = YoloLoss(classes=2, lambda_coord=5, lambda_noobj=0.5)
    terms = loss.terms(out, target)
    assert {k: v.item() for k, v in terms.items()} == pytest.approx(
        {"coord": coord, "object": obj, "no_object": noobj, "class": cls}, abs=1e-6)
    assert loss(out, target).item() == pytest.approx((coord + obj + noobj + cls) / 2, abs=1e-6)  # / batch size
    # rescore=false: the responsible box's confidence target is 1 instead of its IoU
    plain = YoloLoss(classes=2, rescore=False).terms(out, target)["object"].item()
    assert plain == pytest.approx((1 - 0.3) ** 2)


def test_each_box_goes_to_the_cell_of_its_centre_and_the_first_one_keeps_a_shared_cell():
    from dlrun.tasks.detection import assign_to_cells

    target = torch.tensor([[[2, 0.30, 0.70, 0.2, 0.4],    # centre in row 1, column 0 of a 2x2 grid
                            [1, 0.90, 0.10, 0.1, 0.1],    # row 0, column 1
                            [0, 0.40, 0.90, 0.5, 0.5],    # row 1, column 0 again: the first object keeps it
                            [-1, 0.0, 0.0, 0.0, 0.0]]])   # padding
    obj, box, one_hot = assign_to_cells(target, 2, 3)
    assert obj.tolist() == [[[False, True], [True, False]]]
    assert box[0, 1, 0].tolist() == pytest.approx([0.6, 0.4, 0.2, 0.4])  # x, y within the cell: 0.3*2, 0.7*2 - 1
    assert box[0, 0, 1].tolist() == pytest.approx([0.8, 0.2, 0.1, 0.1])
    assert one_hot[0, 1, 0].tolist() == [0, 0, 1] and one_hot[0, 0, 1].tolist() == [0, 1, 0]
    assert box[0, 0, 0].abs().sum() == 0 and one_hot[0, 1, 1].sum() == 0


def test_the_loss_trains_the_responsible_box_towards_the_truth():
    torch.manual_seed(0)
    logits = torch.zeros(1, 2, 2, 12, requires_grad=True)
    target = torch.tensor([[[1, 0.3, 0.7, 0.49, 0.36]]])
    opt = torch.optim.Adam([logits], lr=0.1)
    loss = YoloLoss(classes=2)
    for _ in range(300):
        opt.zero_grad()
        loss(torch.sigmoid(logits), target).backward()
        opt.step()
    found = detect(torch.sigmoid(logits).detach(), 2, (100, 100), conf_threshold=0.25, iou_threshold=0.5)
    boxes, scores, labels = found[0]
    assert labels.tolist() == [1] and scores.item() > 0.5
    assert boxes[0].tolist() == pytest.approx([5.5, 52.0, 54.5, 88.0], abs=1.0)


# ---- decoding: NMS and mAP from the libraries ------------------------------------------------------------
def test_decoding_keeps_the_higher_of_two_overlapping_boxes_and_scales_to_pixels():
    out = grid(2, 2, 2)
    # cell (row 0, col 1), both boxes on one object: centres (0.75, 0.25) and (0.76, 0.26), 0.36 x 0.36;
    # their IoU: 0.35^2 / (2 * 0.36^2 - 0.35^2) = 0.896
    out[0, 0, 1] = torch.tensor([0.5, 0.5, 0.6, 0.6, 0.9, 0.52, 0.52, 0.6, 0.6, 0.6, 1.0, 0.5])
    # cell (row 1, col 1): a weak box under the threshold
    out[0, 1, 1] = torch.tensor([0.5, 0.5, 0.3, 0.3, 0.2, 0, 0, 0, 0, 0, 1.0, 0.0])
    boxes, scores, labels = detect(out, 2, (64, 128), conf_threshold=0.25, iou_threshold=0.5)[0]
    # score = confidence x p(class), each box's best class: 0.9 x 1.0 kept; 0.6 x 1.0 overlaps it and goes;
    # 0.2 x 1.0 is under the threshold
    assert scores.tolist() == pytest.approx([0.9]) and labels.tolist() == [0]
    # centre (0.75 * 128, 0.25 * 64) = (96, 16), size 0.36 * 128 x 0.36 * 64 = 46.08 x 23.04
    assert boxes[0].tolist() == pytest.approx([96 - 23.04, 16 - 11.52, 96 + 23.04, 16 + 11.52], abs=1e-4)
    # every class's hypothesis (for mAP): class 1 too, 0.9 x 0.5 kept and 0.6 x 0.5 suppressed within class 1
    _, scores, labels = detect(out, 2, (64, 128), conf_threshold=0.25, iou_threshold=0.5, every_class=True)[0]
    assert scores.tolist() == pytest.approx([0.9, 0.45]) and labels.tolist() == [0, 1]
    # an IoU threshold above their overlap keeps both
    both = detect(out, 2, (64, 128), conf_threshold=0.25, iou_threshold=0.95)[0]
    assert both[1].tolist() == pytest.approx([0.9, 0.6])


def test_map_equals_the_coco_hand_computation():
    """Two true boxes (one per image) and three detections: right (0.9), wrong place (0.8), right (0.7).
    Ranked: precision/recall (1, 0.5), (0.5, 0.5), (0.67, 1). COCO interpolates precision (the best at any
    higher recall) at 101 recall points: 1 for recall 0..0.50 (51 points), 2/3 for 0.51..1 (50 points)."""
    truth = [(torch.tensor([[10.0, 10, 30, 30]]), torch.tensor([0])), (torch.tensor([[5.0, 5, 25, 25]]), torch.tensor([0]))]
    found = [(torch.tensor([[10.0, 10, 30, 30], [40, 40, 60, 60]]), torch.tensor([0.9, 0.8]), torch.tensor([0, 0])),
             (torch.tensor([[5.0, 5, 25, 25]]), torch.tensor([0.7]), torch.tensor([0]))]
    expected = (51 * 1 + 50 * 2 / 3) / 101
    result = mean_average_precision(found, truth)
    assert result["map_50"] == pytest.approx(expected, abs=1e-6)
    assert result["map"] == pytest.approx(expected, abs=1e-6)  # exact boxes: the same at every IoU up to 0.95
    # a detection of the wrong class is a false positive of its class and misses the true one
    result = mean_average_precision([(b, s, torch.ones_like(c)) for b, s, c in found], truth)
    assert result["map_50"] == pytest.approx(0.0)


def test_true_boxes_are_the_yolo_rows_in_pixels_without_padding():
    target = torch.tensor([[[2, 0.5, 0.25, 0.5, 0.25], [-1, 0, 0, 0, 0]]])
    (boxes, labels), = true_boxes(target, (64, 128))
    assert boxes.tolist() == [[32.0, 8.0, 96.0, 24.0]] and labels.tolist() == [2]


# ---- the model ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,grid_size,boxes", [((1, 64, 64), 8, 2), ((1, 96, 96), 8, 2), ((3, 96, 96), 12, 3)])
def test_yolov1_gives_the_s_by_s_grid_in_0_to_1(shape, grid_size, boxes):
    model = create_model("yolov1", input_shape=shape, num_outputs=10, grid=grid_size, boxes=boxes, width=8).eval()
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, grid_size, grid_size, boxes * 5 + 10)
    assert 0 <= out.min() and out.max() <= 1


def test_yolov1_refuses_inputs_it_cannot_grid():
    with pytest.raises(DlrunError, match="detects objects in images"):
        create_model("yolov1", input_shape=(64,), num_outputs=3)
    with pytest.raises(DlrunError, match="finer than the 4x4 images"):
        create_model("yolov1", input_shape=(1, 4, 4), num_outputs=3, grid=8)


# ---- a real run through the CLI: train, predict, export ---------------------------------------------------
# one digit per canvas, 700 to train, a narrow net: about 25 s on one core; mAP@0.5 about 0.8 (0.3 by chance-free
# guessing would need boxes in the right place: a random model scores ~0)
RUN = ["dataset=canvas", "dataset.objects=1", "dataset.n_samples=1000", "model=yolov1", "model.width=8",
       "task=detection", "trainer.epochs=10", "trainer.batch_size=32", "optimizer.lr=0.003", "scheduler=cosine",
       "trainer.summary=false"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("detection") / "run"
    proc = run_dlrun(*RUN, f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return run, proc


def test_a_short_run_finds_the_digits(trained):
    run, proc = trained
    summary = read_json(run / "summary.json")
    assert summary["task"] == "detection" and summary["loss"] == "yolo"
    assert summary["test_map_50"] > 0.5, summary  # measured 0.79
    assert 0 < summary["test_map"] < summary["test_map_50"]
    assert "train_accuracy" not in summary["last_epoch"]  # no accuracy: mAP is the score
    assert "test: mAP@0.5" in proc.stdout and (run / "boxes.png").stat().st_size > 10_000


def test_report_ranks_by_map(trained, tmp_path):
    run, _ = trained
    assert read_json(run / "summary.json")["headline"] == "test_map_50"
    proc = run_dlrun("report", str(run), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "sorted by test_map_50" in proc.stdout and "test_map_50" in (tmp_path / "report.csv").read_text()


def test_predict_on_the_test_split_equals_the_summary(trained):
    run, _ = trained
    proc = run_dlrun("predict", str(run), "--split", "test")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = read_json(run / "summary.json")
    for key in ("test_loss", "test_map_50", "test_map"):
        assert f"{key}: {summary[key]:.6g}" in proc.stdout


def test_served_boxes_are_predicts(trained):
    """`dlrun serve` answers base64 PNG canvases with the boxes, classes and scores `dlrun predict` finds."""
    import dlrun
    from dlrun.data.canvas import canvas

    run, _ = trained
    images = canvas(objects=1, n_samples=40, seed=7).test.x[:4, 0].numpy()
    encoded = png_base64(images)
    expected = dlrun.load(run).predict(images[:, None])
    srv = Server(f"yolo={run}")
    try:
        srv.wait_ready()
        status, answer = srv.post("/v1/models/yolo/predict", {"inputs": encoded})
        assert status == 200, answer
        got = answer["predictions"]
        assert [[b["class"] for b in p["boxes"]] for p in got] == [[b["class"] for b in p["boxes"]] for p in expected]
        for p, e in zip(got, expected):
            for b, eb in zip(p["boxes"], e["boxes"]):
                assert b["box"] == pytest.approx(eb["box"], abs=0.011) and b["score"] == pytest.approx(eb["score"], abs=1e-5)
        assert sum(len(p["boxes"]) for p in got) >= 3  # a trained detector finds most of the four digits
    finally:
        code, out = srv.stop()
    assert code == 0, out


def test_predict_on_png_files_writes_boxes_and_yolo_labels(trained, tmp_path):
    from PIL import Image

    from dlrun.data.canvas import canvas

    run, _ = trained
    data = canvas(objects=1, n_samples=40, seed=7)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(data.test.x[i, 0].numpy()).save(images / f"canvas{i}.png")
    out = tmp_path / "out" / "boxes.jsonl"
    out.parent.mkdir()
    proc = run_dlrun("predict", str(run), str(images), "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    preds = read_jsonl(out)
    assert [p["input"] for p in preds] == [str(images / f"canvas{i}.png") for i in range(3)]
    for i, pred in enumerate(preds):
        lines = (out.parent / f"canvas{i}.txt").read_text().splitlines()
        assert len(lines) == len(pred["boxes"])
        for line, box in zip(lines, pred["boxes"]):
            c, cx, cy, w, h, score = line.split()
            x1, y1, x2, y2 = box["box"]
            assert int(c) == box["index"] and box["class"] == str(box["index"])  # canvas digits: class "7" is 7
            assert float(score) == pytest.approx(box["score"], abs=1e-5) and float(score) > 0.25
            assert [float(cx), float(cy), float(w), float(h)] == pytest.approx(
                [(x1 + x2) / 128, (y1 + y2) / 128, (x2 - x1) / 64, (y2 - y1) / 64], abs=1e-3)
    # most canvases' digit is found, in about the right place
    found = [p["boxes"][0] for p in preds if p["boxes"]]
    assert len(found) >= 2


def test_onnx_export_gives_the_raw_grid(trained, tmp_path):
    import numpy as np
    import onnxruntime as ort

    run, _ = trained
    path = tmp_path / "yolo.onnx"
    proc = run_dlrun("export", str(run), "--format", "onnx", "--out", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    grid_out = session.run(None, {"input": np.zeros((3, 1, 64, 64), np.uint8)})[0]
    assert grid_out.shape == (3, 8, 8, 2 * 5 + 10)  # decoding (thresholds, NMS) stays outside the graph


def test_a_model_that_does_not_fit_the_task_is_refused_in_one_line(tmp_path):
    proc = run_dlrun("dataset=canvas", "dataset.n_samples=100", "model=unet", "task=detection", "debug=smoke",
                     f"hydra.run.dir={tmp_path / 'unet'}")
    assert_clean_error(proc, 2, "model=unet gives a score per class and pixel, but task=detection needs a grid")
    assert len(proc.stderr.strip().splitlines()) == 1  # stdout: the dataset's note, before the model is built
    assert_config_mistake(tmp_path / "yolo", ["dataset=digits", "model=yolov1", "task=multiclass"],
                          "model=yolov1 gives a grid of boxes and class probabilities, but task=multiclass needs",
                          through_cli=False)
    assert_config_mistake(tmp_path / "digits", ["dataset=digits", "model=yolov1"],
                          "task=detection needs a box and class per object", through_cli=False)
