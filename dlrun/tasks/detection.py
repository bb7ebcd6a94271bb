"""Objects in an image, each a class and a box: YOLO v1's loss on an S x S grid, non-maximum suppression, mAP.

Targets: per image a float tensor (max_objects, 5), rows [class, cx, cy, w, h] in YOLO's normalised form (0..1
of the image; class 0..C-1, not counting a background), padding rows with class -1; datasets put them in
`DataBundle.targets["detection"]` (dataset=canvas, dataset=dense_folder) and `adapt` moves them into y.

The model's output is the grid described in dlrun/models/yolo.py: (batch, S, S, B*5 + C), per box x, y (in the
cell), sqrt(w), sqrt(h) (of the image), confidence; then C class probabilities per cell. An exported model
(`dlrun export`) gives this raw grid: decoding (thresholds, non-maximum suppression) stays outside the graph,
in `Detection.decode` (or the consumer's own code), so the graph is a plain convolutional net any runtime runs.

torchvision.ops is imported where it is used: every task module is imported to fill the task registry, and
importing torchvision (1 to 3 s here) would otherwise delay every run's first step, detection or not.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dlrun.errors import DlrunError
from dlrun.tasks.base import Artifacts, Task, per_input_paths, register_task
from dlrun.train.checkpoint import atomic_write

SHOWN = 16  # test images in boxes.png
MAX_DETECTIONS = 100  # per image, after non-maximum suppression (COCO's limit)


def split_grid(out: torch.Tensor, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The grid (batch, S, S, B*5 + C) as (boxes (batch, S, S, B, 5), class probabilities (batch, S, S, C))."""
    width = out.shape[-1] - classes
    if out.dim() != 4 or out.shape[1] != out.shape[2] or width < 5 or width % 5:
        raise DlrunError(f"task=detection reads a YOLO grid (batch, S, S, B*5 + {classes}); this model gives outputs "
                         f"of shape {tuple(out.shape)}: use model=yolov1.")
    return out[..., :width].unflatten(-1, (width // 5, 5)), out[..., width:]


def grid_boxes(xy_sqrt_wh: torch.Tensor) -> torch.Tensor:
    """Boxes as the grid holds them, (batch, S, S, [B,] 4): x, y in their cell, sqrt(w), sqrt(h), -> [x1, y1, x2, y2]
    as fractions of the image."""
    from torchvision.ops import box_convert

    s = xy_sqrt_wh.shape[1]
    rows = torch.arange(s, device=xy_sqrt_wh.device, dtype=xy_sqrt_wh.dtype).view(1, s, 1, *[1] * (xy_sqrt_wh.dim() - 4))
    cols = rows.transpose(1, 2)
    cx, cy = (cols + xy_sqrt_wh[..., 0]) / s, (rows + xy_sqrt_wh[..., 1]) / s
    return box_convert(torch.stack([cx, cy, xy_sqrt_wh[..., 2] ** 2, xy_sqrt_wh[..., 3] ** 2], dim=-1), "cxcywh", "xyxy")


def paired_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of each box in `a` with the box at the same place in `b` ([x1, y1, x2, y2], broadcast); 0 when both are
    empty. (torchvision's box_iou pairs every box with every other: N x M where this needs N.)"""
    wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp_min(0)
    inter = wh[..., 0] * wh[..., 1]
    area = lambda box: (box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter).clamp_min(1e-9)


def assign_to_cells(target: torch.Tensor, s: int, classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each true box to the cell holding its centre: (object (batch, S, S) bool, box (batch, S, S, 4) as x, y in the
    cell and w, h of the image, one-hot class (batch, S, S, C)). Two centres in one cell: the first object (in row
    order) is that cell's, as YOLO v1 predicts one set of class probabilities per cell. Dense tensor operations
    only (no per-object loop, no boolean indexing), so a GPU never waits for the host here."""
    n, m = target.shape[:2]
    target = target.float()
    valid = target[..., 0] >= 0  # (batch, M); padding rows have class -1
    col, row = (target[..., 1:3] * s).floor().long().clamp(0, s - 1).unbind(-1)
    in_cell = nn.functional.one_hot(row * s + col, s * s) * valid.unsqueeze(-1)  # (batch, M, S*S)
    owner = (in_cell * (in_cell.cumsum(dim=1) == 1)).float()  # the first object whose centre is in the cell
    where = torch.stack([target[..., 1] * s - col, target[..., 2] * s - row, target[..., 3], target[..., 4]], dim=-1)
    label = nn.functional.one_hot(target[..., 0].long().clamp(0, classes - 1), classes).float()
    obj = owner.sum(dim=1).bool().view(n, s, s)
    box = torch.einsum("bmc,bmk->bck", owner, where).view(n, s, s, 4)
    one_hot = torch.einsum("bmc,bmk->bck", owner, label).view(n, s, s, classes)
    return obj, box, one_hot


class YoloLoss(nn.Module):
    """YOLO v1's sum-squared error (Redmon et al. 2016, eq. 3), summed over the batch and divided by its size.

    The cell holding an object's centre is responsible for it, and of that cell's B boxes the one whose predicted box
    has the highest IoU with the true box. Per image:
        lambda_coord * sum over responsible boxes of (x - x^)^2 + (y - y^)^2 + (sqrt w - sqrt w^)^2 + (sqrt h - sqrt h^)^2
      + sum over responsible boxes of (C - C^)^2, C the IoU of the predicted box with the true one (`rescore`, the
        paper's "confidence = Pr(object) * IoU" and Darknet's default; rescore=false: C = 1)
      + lambda_noobj * sum over all other boxes of C^2 (the other boxes of an object's cell included)
      + sum over cells holding an object of sum over classes of (p(c) - p^(c))^2
    x, y are relative to the cell, w, h to the image; the target IoU is a constant (no gradient through it)."""

    def __init__(self, classes: int, lambda_coord: float = 5.0, lambda_noobj: float = 0.5, rescore: bool = True):
        super().__init__()
        self.classes, self.lambda_coord, self.lambda_noobj, self.rescore = classes, lambda_coord, lambda_noobj, rescore

    def terms(self, out: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss's four sums over the batch (coordinates and no-object already weighted), not yet divided."""
        boxes, probs = split_grid(out.float(), self.classes)
        s, b = boxes.shape[1], boxes.shape[3]
        obj, truth, one_hot = assign_to_cells(target, s, self.classes)
        want = torch.cat([truth[..., :2], truth[..., 2:].sqrt()], dim=-1).unsqueeze(3)  # x, y, sqrt w, sqrt h
        iou = paired_iou(grid_boxes(boxes[..., :4]), grid_boxes(want))  # (batch, S, S, B)
        best = iou.argmax(dim=-1)  # ties: the first box
        r = (nn.functional.one_hot(best, b).bool() & obj.unsqueeze(-1)).float()  # 1 for the responsible boxes
        coord = ((boxes[..., :4] - want) ** 2).sum(-1)
        confidence = boxes[..., 4]
        target_conf = iou.detach() if self.rescore else torch.ones_like(iou)
        return {"coord": self.lambda_coord * (coord * r).sum(),
                "object": ((confidence - target_conf) ** 2 * r).sum(),
                "no_object": self.lambda_noobj * (confidence ** 2 * (1 - r)).sum(),
                "class": (((probs - one_hot) ** 2).sum(-1) * obj.float()).sum()}

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(self.terms(out, target).values()) / len(out)



def detect(out: torch.Tensor, classes: int, size: tuple[int, int], conf_threshold: float, iou_threshold: float,
           every_class: bool = False, max_detections: int = MAX_DETECTIONS) -> list[tuple[torch.Tensor, ...]]:
    """Per image (boxes [x1, y1, x2, y2] in pixels, scores, class indices): each box's class-specific confidence
    (its confidence times the cell's class probability, the paper's test-time score) over `conf_threshold`, for
    its best class (`every_class`: for each class, a hypothesis each, as COCO-style evaluation ranks them), then
    torchvision's per-class non-maximum suppression at `iou_threshold`, the best `max_detections` kept."""
    from torchvision.ops import batched_nms

    boxes, probs = split_grid(out.float(), classes)
    height, width = size
    limits = torch.tensor([width, height, width, height], dtype=torch.float32, device=out.device)
    scores = boxes[..., 4:5] * probs.unsqueeze(-2)  # (batch, S, S, B, C)
    if not every_class:  # the best class's score, the others 0
        scores = scores * nn.functional.one_hot(scores.argmax(-1), classes)
    pixels = torch.minimum((grid_boxes(boxes[..., :4]) * limits).clamp_min(0), limits)
    found = []
    for image_scores, image_boxes in zip(scores.flatten(1, 3), pixels.flatten(1, 3)):
        box, label = (image_scores > conf_threshold).nonzero(as_tuple=True)
        score = image_scores[box, label]
        keep = batched_nms(image_boxes[box], score, label, iou_threshold)[:max_detections]
        found.append((image_boxes[box][keep], score[keep], label[keep]))
    return found


def true_boxes(target: torch.Tensor, size: tuple[int, int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per image (boxes [x1, y1, x2, y2] in pixels, class indices) from its [class, cx, cy, w, h] rows, padding left out."""
    from torchvision.ops import box_convert

    height, width = size
    scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=target.device)
    rows = [t[t[:, 0] >= 0].float() for t in target]
    return [(box_convert(t[:, 1:5], "cxcywh", "xyxy") * scale, t[:, 0].long()) for t in rows]


def mean_average_precision(found: list, truth: list) -> dict[str, float]:
    """torchmetrics' MeanAveragePrecision (COCO's evaluation through pycocotools): mAP at IoU 0.5 and averaged over
    IoU 0.5:0.95."""
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")
    metric.update([{"boxes": b.cpu(), "scores": s.cpu(), "labels": c.cpu()} for b, s, c in found],
                  [{"boxes": b.cpu(), "labels": c.cpu()} for b, c in truth])
    result = metric.compute()
    return {"map_50": float(result["map_50"]), "map": float(result["map"])}


@register_task
class Detection(Task):
    """objects in an image: a class and a box each (YOLO v1 grid, non-maximum suppression, mAP)"""

    name, losses, model_output = "detection", ("yolo",), "grid"
    headline = "test_map_50"

    def __init__(self, loss_name, loss_fn, data=None, class_weight=None):
        super().__init__(loss_name, loss_fn, data, class_weight)
        shape = (data or {}).get("input_shape") or [1, 1, 1]
        self.size = (int(shape[-2]), int(shape[-1]))  # (height, width): boxes in pixels
        self.conf_threshold, self.iou_threshold, self.map_conf_threshold = 0.25, 0.5, 0.01  # conf/loss/yolo.yaml's

    @classmethod
    def build(cls, loss, num_outputs, data=None, class_weight=None):
        """The task with its loss; the loss config's thresholds say what counts as a detection."""
        task = super().build(loss, num_outputs, data, class_weight)
        for key in ("conf_threshold", "iou_threshold", "map_conf_threshold"):
            setattr(task, key, float(loss.get(key) if loss.get(key) is not None else getattr(task, key)))
        return task

    @classmethod
    def make_loss(cls, name, options, num_outputs):
        return YoloLoss(num_outputs, float(options.get("lambda_coord", 5.0)), float(options.get("lambda_noobj", 0.5)),
                        bool(options.get("rescore", True)))

    @classmethod
    def adapt(cls, data) -> None:
        """The boxes (`data.targets["detection"]`) become each split's targets; the classes are the objects'."""
        boxes = (data.targets or {}).get("detection")
        if boxes is None:
            raise DlrunError(f"task=detection needs a box and class per object (YOLO rows [class, cx, cy, w, h]): use "
                             f"dataset=canvas or dataset=dense_folder (images with YOLO .txt labels); this dataset "
                             f"gives {data.task} targets.")
        for split, y in zip((data.train, data.val, data.test), boxes):
            split.y = y.to(split.x.device)
        classes = list(data.classes or [])
        classes = classes[1:] if classes[:1] == ["background"] else classes  # the masks' class 0, by position
        if not classes:
            classes = [str(i) for i in range(max(int(max(float(y[..., 0].max()) for y in boxes)), 0) + 1)]
        data.task, data.classes, data.num_outputs = cls.name, classes, len(classes)

    def detections(self, out: torch.Tensor, for_map: bool = False) -> list:
        """Per image (boxes in pixels, scores, class indices): a box's best class over `conf_threshold`, or, for
        mAP, every class's hypothesis over `map_conf_threshold`."""
        if for_map:
            return detect(out, self.loss_fn.classes, self.size, self.map_conf_threshold, self.iou_threshold, True)
        return detect(out, self.loss_fn.classes, self.size, self.conf_threshold, self.iou_threshold)

    def metrics(self, out, y, classes):
        """mAP@0.5 and mAP@[.5:.95] of every class hypothesis above `map_conf_threshold` (ranked by score, as COCO's
        evaluation wants them: a low threshold, so the precision-recall curve reaches far)."""
        return mean_average_precision(self.detections(out, for_map=True), true_boxes(y, self.size)), {}

    def decode(self, out, classes, top_k=3):
        """Each image's boxes, their best class scoring over `conf_threshold`, after non-maximum suppression:
        class, score, [x1, y1, x2, y2] in pixels."""
        name = (lambda i: classes[i]) if classes else str
        return [{"boxes": [{"class": name(c), "index": c, "score": s, "box": [round(v, 2) for v in box]}
                           for box, s, c in zip(b.tolist(), sc.tolist(), lab.tolist())]}
                for b, sc, lab in self.detections(out)]

    def write_files(self, out: torch.Tensor, names: list[str], folder: Path) -> list[Path]:
        """NAME.txt per input in `folder`, YOLO's label format with the score added: a line `class cx cy w h score`
        per detection (class index; centre and size as fractions of the image), as `decode` finds them."""
        from torchvision.ops import box_convert

        height, width = self.size
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        paths = per_input_paths(names, folder, ".txt")
        for path, (boxes, scores, labels) in zip(paths, self.detections(out)):
            rows = box_convert(boxes.cpu(), "xyxy", "cxcywh") / scale
            text = "".join(f"{c} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f} {sc:.6f}\n"
                           for c, (cx, cy, w, h), sc in zip(labels.tolist(), rows.tolist(), scores.tolist()))
            atomic_write(path, lambda f, text=text: f.write(text.encode()), durable=False)
        return paths

    def artifacts(self, a: Artifacts, summary: dict) -> None:
        """boxes.png: the first test images, true boxes in green, detections in red with class and score."""
        out = torch.cat([o for o, _ in a.outputs])[:SHOWN].cpu()
        images = a.data.test.x[:SHOWN].cpu()
        truth = true_boxes(a.data.test.y[:SHOWN].cpu(), self.size)
        names = a.data.classes or [str(i) for i in range(self.loss_fn.classes)]
        a.plotter.boxes(images.tolist(), [[[*b, names[c]] for b, c in zip(tb.tolist(), tc.tolist())] for tb, tc in truth],
                        [[[*b, f"{names[c]} {s:.2f}"] for b, s, c in zip(pb.tolist(), ps.tolist(), pc.tolist())]
                         for pb, ps, pc in self.detections(out)],
                        a.run_dir / "boxes.png", f"{a.title}: test boxes (green: true, red: detected)")
        a.say(f"test: mAP@0.5 {summary.get('test_map_50', 0):.4f}, mAP@[.5:.95] {summary.get('test_map', 0):.4f} "
              "(boxes.png)")
