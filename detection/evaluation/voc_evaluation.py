"""PASCAL VOC average precision, computed as detectron2's ``PascalVOCDetectionEvaluator`` computes it.

detectron2 evaluates with py-faster-rcnn's ``voc_eval.py`` (where the paper-era VOC numbers come from),
a Python port of the devkit's ``VOCevaldet.m``; this module reproduces its numbers exactly, on any
input, in the places where it differs from the MATLAB devkit (marked *detectron2* below).

Matching, per class and IoU threshold:

- every detection is taken as detectron2 writes it to its devkit result file and reads it back: score
  rounded to 3 decimals, box to 1 decimal (*detectron2*; :func:`devkit_file_values`);
- the detections of the class in all evaluated images, in image order, are sorted by decreasing score
  with ``np.argsort(-scores)`` (*detectron2*: ties are ordered by numpy's default sort);
- each detection's candidate is the ground truth object of its class in its image with the largest
  IoU (the first one on ties). If that IoU is ``> threshold`` (*detectron2*; the devkit has ``>=``):

  - a ``difficult`` candidate makes the detection neither a true nor a false positive;
  - a candidate not matched yet makes it a true positive, and the candidate is now matched;
  - an already matched candidate makes it a false positive (a duplicate detection).

  Otherwise, or with no ground truth of its class in the image, it is a false positive.
  Like the devkit (and unlike ``COCOeval``) a detection whose best candidate is taken does not fall
  back to its second-best ground truth object.
- The positives are the non-difficult ground truth objects. A class without any positive in the
  evaluated images has AP ``nan`` and is left out of the mean.

Average precision of the precision/recall points:

- ``"11point"`` (VOC2007, the paper's VOC numbers): the sum over the recall thresholds
  ``np.arange(0.0, 1.1, 0.1)`` of a eleventh of the largest precision at recall ``>= t`` (0 where there
  is none). Those thresholds are not exact tenths: the fourth is 0.30000000000000004 (MATLAB's
  ``0:0.1:1`` gives the same), so a class whose recall stops at exactly 0.3 gets no credit there.
- ``"area"`` (VOC2010 and later): the area under the precision/recall curve after making precision
  monotonically decreasing in recall.

Pixel convention: the package's boxes are 0-based continuous ``(x1, y1, x2, y2)``; the devkit's are
1-based inclusive pixel indices ``(xmin, ymin, xmax, ymax)`` and its IoU adds 1 to every width and
height. Boxes are converted to devkit coordinates as ``(x1 + 1, y1 + 1, x2, y2)`` (the inverse of
the dataset's ``(xmin - 1, ymin - 1, xmax, ymax)``, and what detectron2 writes to the devkit files)
and compared with the devkit's ``+1`` formula; on the devkit's integer coordinates this is the devkit
exactly, and it equals the plain continuous IoU of the package boxes. The result files hold these
devkit coordinates with detectron2's decimals, and the evaluation uses the same rounded values.
"""

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .curves import PrecisionRecall
from .tables import format_metric, format_table

# detectron2's result files: "image score xmin ymin xmax ymax" with these decimals, read back to evaluate.
SCORE_DECIMALS, BOX_DECIMALS = 3, 1
ELEVEN_POINT_RECALLS = np.arange(0.0, 1.1, 0.1)

logger = logging.getLogger(__name__)

VOC_METHODS = ("11point", "area")
# detectron2's PascalVOCDetectionEvaluator: VOC AP at IoU 0.50:0.05:0.95.
COCO_STYLE_IOU_THRESHOLDS = tuple(percent / 100 for percent in range(50, 100, 5))

# A per-image ground truth: "boxes" [M, 4] package xyxy, "labels" [M] in 1..K, "ignore" bool [M].
# A per-image detection: "boxes" [n, 4] package xyxy, "scores" [n], "labels" [n] in 1..K.
Record = Mapping[str, np.ndarray]


def to_devkit_boxes(boxes: np.ndarray) -> np.ndarray:
    """Package boxes ``[N, 4]`` -> devkit ``(xmin, ymin, xmax, ymax)`` ``[N, 4]`` float64."""
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4) + np.array([1.0, 1.0, 0.0, 0.0])


def devkit_iou(boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """IoU ``[N, M]`` of devkit boxes ``[N, 4]`` and ``[M, 4]``, widths and heights counted ``+1``."""
    inter_w = np.minimum(boxes[:, None, 2], gt_boxes[None, :, 2]) - np.maximum(boxes[:, None, 0], gt_boxes[None, :, 0])
    inter_h = np.minimum(boxes[:, None, 3], gt_boxes[None, :, 3]) - np.maximum(boxes[:, None, 1], gt_boxes[None, :, 1])
    intersection = np.clip(inter_w + 1.0, 0.0, None) * np.clip(inter_h + 1.0, 0.0, None)
    area = (boxes[:, 2] - boxes[:, 0] + 1.0) * (boxes[:, 3] - boxes[:, 1] + 1.0)
    gt_area = (gt_boxes[:, 2] - gt_boxes[:, 0] + 1.0) * (gt_boxes[:, 3] - gt_boxes[:, 1] + 1.0)
    return intersection / (area[:, None] + gt_area[None, :] - intersection)


def devkit_file_values(det: Record) -> tuple[np.ndarray, np.ndarray]:
    """A detection record's scores ``[n]`` and devkit boxes ``[n, 4]`` as detectron2's result files hold
    them (rounded by formatting, as its writer does)."""
    scores = np.char.mod(f"%.{SCORE_DECIMALS}f", np.asarray(det["scores"], dtype=np.float64)).astype(np.float64)
    boxes = np.char.mod(f"%.{BOX_DECIMALS}f", to_devkit_boxes(det["boxes"])).astype(np.float64)
    return scores.reshape(-1), boxes.reshape(-1, 4)


def average_precision(recall: np.ndarray, precision: np.ndarray, method: str = "11point") -> float:
    """AP of the points ``recall[i], precision[i]`` ``[D]`` (in decreasing score order) by ``method``."""
    if method == "11point":
        ap = 0.0
        for threshold in ELEVEN_POINT_RECALLS:
            ap += precision[recall >= threshold].max(initial=0.0) / 11.0
        return float(ap)
    if method == "area":
        recall = np.concatenate(([0.0], recall, [1.0]))
        precision = np.concatenate(([0.0], precision, [0.0]))
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        steps = np.flatnonzero(recall[1:] != recall[:-1])
        return float(np.sum((recall[steps + 1] - recall[steps]) * envelope[steps + 1]))
    raise ValueError(f"unknown VOC AP method {method!r}; expected one of {VOC_METHODS}")


def voc_average_precisions(
    ground_truth: Sequence[Record],
    detections: Sequence[Record],
    num_classes: int,
    *,
    iou_thresholds: Sequence[float] = (0.5,),
    method: str = "11point",
) -> np.ndarray:
    """Devkit AP ``[T, K]`` for each IoU threshold and class; ``ground_truth[i]`` and ``detections[i]``
    describe the same image. ``nan`` for a class without positives."""
    if method not in VOC_METHODS:
        raise ValueError(f"unknown VOC AP method {method!r}; expected one of {VOC_METHODS}")
    curves = voc_precision_recall(ground_truth, detections, num_classes, iou_thresholds=iou_thresholds)
    return _curves_ap(curves, method)


def voc_precision_recall(
    ground_truth: Sequence[Record],
    detections: Sequence[Record],
    num_classes: int,
    *,
    iou_thresholds: Sequence[float] = (0.5,),
) -> list[list[tuple[np.ndarray, np.ndarray] | None]]:
    """``[T][K]`` ``(recall, precision)``, ``float [D]`` each: the points of the class's ``D`` detections
    in decreasing score order (difficult matches left out) that the AP is computed from; None for a class
    without positives."""
    curves: list[list[tuple[np.ndarray, np.ndarray] | None]] = [[None] * num_classes for _ in iou_thresholds]
    for label in range(1, num_classes + 1):
        best_iou, best_gt, gt_ignore = _class_candidates(ground_truth, detections, label)
        num_positives = int(np.count_nonzero(~gt_ignore))
        if num_positives == 0:
            continue
        for t, threshold in enumerate(iou_thresholds):
            true_positive = _match(best_iou, best_gt, gt_ignore, threshold)
            tp = np.cumsum(true_positive)
            fp = np.cumsum(~true_positive)
            curves[t][label - 1] = (tp / num_positives, tp / (tp + fp))
    return curves


def _curves_ap(curves: list[list[tuple[np.ndarray, np.ndarray] | None]], method: str) -> np.ndarray:
    """``[T, K]`` AP of :func:`voc_precision_recall`'s curves; NaN where a class has no positives."""
    ap = np.full((len(curves), len(curves[0]) if curves else 0), np.nan)
    for t, row in enumerate(curves):
        for k, curve in enumerate(row):
            if curve is not None:
                ap[t, k] = average_precision(*curve, method)
    return ap


def _class_candidates(
    ground_truth: Sequence[Record], detections: Sequence[Record], label: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the class's detections of all images in decreasing score order ``[D]``: the best IoU and the
    index of that ground truth among all the class's ground truth (-1 where none), and the ``ignore``
    flags ``[G]`` of all the class's ground truth."""
    scores, best_iou, best_gt, gt_ignore = [], [], [], []
    num_gt = 0
    for gt, det in zip(ground_truth, detections):
        gt_mask = gt["labels"] == label
        det_mask = det["labels"] == label
        gt_boxes = to_devkit_boxes(gt["boxes"][gt_mask])
        det_scores, det_boxes = devkit_file_values(det)
        det_boxes = det_boxes[det_mask]
        scores.append(det_scores[det_mask])
        gt_ignore.append(gt["ignore"][gt_mask])
        if len(gt_boxes) == 0:
            best_iou.append(np.full(len(det_boxes), -np.inf))
            best_gt.append(np.full(len(det_boxes), -1))
        else:
            iou = devkit_iou(det_boxes, gt_boxes)
            best_iou.append(iou.max(axis=1, initial=-np.inf))
            best_gt.append(num_gt + iou.argmax(axis=1))
        num_gt += len(gt_boxes)
    order = np.argsort(-np.concatenate(scores))
    return (
        np.concatenate(best_iou)[order],
        np.concatenate(best_gt).astype(np.int64)[order],
        np.concatenate(gt_ignore).astype(bool),
    )


def _match(best_iou: np.ndarray, best_gt: np.ndarray, gt_ignore: np.ndarray, threshold: float) -> np.ndarray:
    """Devkit matching of detections ``[D]`` sorted by score: true-positive flags of the detections
    that count (those matched to an ignored ground truth object are dropped: neither TP nor FP)."""
    hit = best_iou > threshold
    ignored = np.zeros_like(hit)
    ignored[hit] = gt_ignore[best_gt[hit]]
    candidates = np.flatnonzero(hit & ~ignored)
    # The first (highest-scored) detection on a ground truth object matches it; later ones are duplicates.
    _, first = np.unique(best_gt[candidates], return_index=True)
    true_positive = np.zeros_like(hit)
    true_positive[candidates[first]] = True
    return true_positive[~ignored]


def evaluate_voc(
    ground_truth: Sequence[Record],
    detections: Sequence[Record],
    class_names: Sequence[str],
    *,
    method: str = "11point",
    coco_style: bool = False,
    figures_dir: str | Path | None = None,
) -> dict[str, float]:
    """VOC metrics, logged as a per-class table and returned in ``[0, 1]``: ``voc/mAP`` and
    ``voc/AP_<class>`` at IoU 0.5; with ``coco_style`` also ``voc/AP`` (the mean over IoU
    0.50:0.05:0.95 of the mAP at each IoU), ``voc/AP50`` and ``voc/AP75``. With ``figures_dir``, also
    writes the per-class precision/recall curves at IoU 0.5 and the per-class AP bars there."""
    if method not in VOC_METHODS:
        raise ValueError(f"unknown VOC AP method {method!r}; expected one of {VOC_METHODS}")
    thresholds = COCO_STYLE_IOU_THRESHOLDS if coco_style else (0.5,)
    curves = voc_precision_recall(ground_truth, detections, len(class_names), iou_thresholds=thresholds)
    ap = _curves_ap(curves, method)
    metrics = {"voc/mAP": _nanmean(ap[0])}
    metrics.update({f"voc/AP_{name}": float(value) for name, value in zip(class_names, ap[0])})
    rows = [[name, format_metric(value)] for name, value in zip(class_names, ap[0])]
    rows.append(["mAP", format_metric(metrics["voc/mAP"])])
    logger.info(
        f"PASCAL VOC AP at IoU 0.5 ({method} method), {len(detections)} images:\n" + format_table(["class", "AP"], rows)
    )
    if coco_style:
        map_per_threshold = [_nanmean(row) for row in ap]
        metrics["voc/AP"] = float(np.mean(map_per_threshold))
        metrics["voc/AP50"] = map_per_threshold[thresholds.index(0.5)]
        metrics["voc/AP75"] = map_per_threshold[thresholds.index(0.75)]
        logger.info(
            "VOC AP@[.5:.95] "
            + ", ".join(f"{key[4:]} {format_metric(metrics[key])}" for key in ("voc/AP", "voc/AP50", "voc/AP75"))
        )
    if figures_dir is not None:
        from .plots import write_evaluation_figures

        empty = np.zeros(0)
        pr_curves = [
            PrecisionRecall(name, 0.5, *(curve if curve is not None else (empty, empty)), float(value))
            for name, curve, value in zip(class_names, curves[0], ap[0])  # thresholds[0] is 0.5
        ]
        per_class = {"AP": {name: float(value) for name, value in zip(class_names, ap[0])}}
        title = f"PASCAL VOC ({method} AP), {len(detections)} images"
        write_evaluation_figures(figures_dir, pr_curves, per_class, title)
    return metrics


def write_devkit_results(
    output_dir: str | Path, image_names: Sequence[str], detections: Sequence[Record], class_names: Sequence[str]
) -> list[Path]:
    """Writes the devkit result files ``comp4_det_test_<class>.txt`` (one per class, empty ones too),
    one line ``image_name score xmin ymin xmax ymax`` per detection, devkit coordinates."""
    lines: list[list[str]] = [[] for _ in class_names]
    for name, det in zip(image_names, detections):
        for box, score, label in zip(to_devkit_boxes(det["boxes"]), det["scores"], det["labels"]):
            coordinates = " ".join(f"{value:.{BOX_DECIMALS}f}" for value in box)
            lines[int(label) - 1].append(f"{name} {score:.{SCORE_DECIMALS}f} {coordinates}\n")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for class_name, class_lines in zip(class_names, lines):
        path = output_dir / f"comp4_det_test_{class_name}.txt"
        path.write_text("".join(class_lines))
        paths.append(path)
    return paths


def _nanmean(values: Sequence[float]) -> float:
    """Mean of the non-NaN values; NaN (without numpy's warning) when there are none."""
    finite = [float(v) for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan
