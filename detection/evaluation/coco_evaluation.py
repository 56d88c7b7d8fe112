"""COCO bbox evaluation with the official ``pycocotools`` ``COCOeval``, or faster-coco-eval's port.

The numbers are ``COCOeval``'s own: this module only converts detections to the official results
format, restricts the evaluation to the evaluated images (``params.imgIds``, so that images of the
annotation file that were not predicted are not counted as misses) and reads the results out.
Crowd regions are ignored by ``COCOeval`` as usual.

Backends: ``"pycocotools"`` (the reference) and ``"faster"`` (``faster_coco_eval.COCOeval_faster``,
C++ matching and accumulation, same numbers), each with its own COCO API object over the ground truth.
"""

import contextlib
import copy
import io
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .curves import PrecisionRecall
from .tables import format_metric, format_table

logger = logging.getLogger(__name__)

COCO_BACKENDS = ("pycocotools", "faster")
# The 12 numbers of COCOeval.summarize(), in its order; the returned keys are "bbox/<name>".
COCO_SUMMARY_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def coco_results(
    predictions: Mapping[int, Mapping[str, np.ndarray]],
    image_ids: Mapping[int, int],
    label_to_category_id: Mapping[int, int],
) -> list[dict[str, Any]]:
    """Detections in the official results format, submittable as they are.

    Args:
        predictions: dataset index -> ``boxes`` ``[n, 4]`` xyxy original pixels, ``scores`` ``[n]``,
            ``labels`` ``[n]`` in ``1..K``.
        image_ids: dataset index -> COCO image id.
        label_to_category_id: label ``1..K`` -> original COCO category id.

    Returns:
        One ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` per detection.
    """
    results = []
    for index, prediction in predictions.items():
        boxes = np.asarray(prediction["boxes"], dtype=np.float64).reshape(-1, 4)
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        for box, score, label in zip(xywh.tolist(), np.asarray(prediction["scores"]).tolist(), prediction["labels"]):
            results.append(
                {
                    "image_id": int(image_ids[index]),
                    "category_id": int(label_to_category_id[int(label)]),
                    "bbox": box,
                    "score": float(score),
                }
            )
    return results


def coco_ground_truth_json(annotations: Sequence[Mapping[str, Any]], class_names: Sequence[str]) -> dict[str, Any]:
    """COCO-format ground truth for a dataset without a COCO annotation file (VOC): category id = label.

    ``annotations[i]`` is ``dataset.get_annotation(i)``. Crowd and ``difficult`` objects become crowd
    regions: ``COCOeval`` ignores the detections matched to them and does not count them as misses,
    as the VOC protocol does with ``difficult`` ones.
    """
    images, objects = [], []
    for annotation in annotations:
        image_id = int(annotation["image_id"])
        images.append(
            {
                "id": image_id,
                "height": int(annotation["height"]),
                "width": int(annotation["width"]),
                "file_name": str(annotation["file_name"]),
            }
        )
        crowd = np.asarray(annotation["iscrowd"], dtype=bool) | np.asarray(annotation["difficult"], dtype=bool)
        boxes = np.asarray(annotation["boxes"], dtype=np.float64).reshape(-1, 4)
        for box, label, is_crowd in zip(boxes.tolist(), annotation["labels"], crowd):
            width, height = box[2] - box[0], box[3] - box[1]
            objects.append(
                {
                    "id": len(objects) + 1,  # COCOeval reads annotation id 0 as "unmatched"
                    "image_id": image_id,
                    "category_id": int(label),
                    "bbox": [box[0], box[1], width, height],
                    "area": width * height,
                    "iscrowd": int(is_crowd),
                }
            )
    categories = [{"id": label, "name": name} for label, name in enumerate(class_names, start=1)]
    return {"images": images, "annotations": objects, "categories": categories}


def load_coco_api(dataset_json: Mapping[str, Any], backend: str = "pycocotools") -> Any:
    """The ``backend``'s COCO API object over a private copy of a COCO-format ``dataset_json``."""
    coco = _backend_classes(backend)[0]()
    coco.dataset = copy.deepcopy(dict(dataset_json))
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def evaluate_coco(
    coco_gt: Any,
    results: list[dict[str, Any]],
    image_ids: Sequence[int],
    category_ids: Sequence[int] | None = None,
    backend: str = "pycocotools",
    *,
    figures_dir: str | Path | None = None,
) -> dict[str, float]:
    """Scores ``results`` on the images ``image_ids`` of ``coco_gt`` (a COCO API object of ``backend``)
    and the categories ``category_ids`` (default: all of ``coco_gt``).

    With ``figures_dir``, also writes the per-class precision/recall curves at IoU 0.50 and 0.75 (this
    evaluation's own arrays), the per-class AP bars and the error breakdown there (see ``plots``).

    Logs ``COCOeval``'s 12-number summary and a per-class AP / AP50 table. Returns the
    values in ``[0, 1]`` as ``bbox/<name>`` for ``COCO_SUMMARY_NAMES`` and ``bbox/AP_<category>``,
    ``bbox/AP50_<category>`` per category; ``nan`` where there is no ground truth to measure (e.g.
    ``APs`` without small objects; ``COCOeval`` prints ``-1``).
    """
    cocoeval_class = _backend_classes(backend)[1]
    # COCOeval's progress chatter is dropped; its summary is logged below.
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = load_coco_results(coco_gt, results)
        cocoeval_kwargs = {"print_function": print} if backend == "faster" else {}
        coco_eval = cocoeval_class(coco_gt, coco_dt, "bbox", **cocoeval_kwargs)
        coco_eval.params.imgIds = sorted(int(image_id) for image_id in image_ids)
        if category_ids is not None:
            coco_eval.params.catIds = sorted(int(category_id) for category_id in category_ids)
        coco_eval.evaluate()
        coco_eval.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):  # COCOeval prints its summary
        coco_eval.summarize()
    logger.info(
        f"COCO bbox evaluation ({backend}), {len(image_ids)} images, {len(results)} detections:\n"
        + summary.getvalue().rstrip()
    )
    metrics = {f"bbox/{name}": _metric(value) for name, value in zip(COCO_SUMMARY_NAMES, coco_eval.stats[:12])}
    per_class = _per_class_ap(coco_eval, coco_gt)
    for name, (ap, ap50) in per_class.items():
        metrics[f"bbox/AP_{name}"] = ap
        metrics[f"bbox/AP50_{name}"] = ap50
    rows = [[name, format_metric(ap), format_metric(ap50)] for name, (ap, ap50) in per_class.items()]
    logger.info("per-category AP over IoU 0.50:0.95 and at 0.50:\n" + format_table(["category", "AP", "AP50"], rows))
    if figures_dir is not None:
        _write_figures(figures_dir, coco_eval, coco_gt, results, image_ids, per_class)
    return metrics


def coco_precision_recall(
    coco_eval: Any, coco_gt: Any, iou_thresholds: Sequence[float] = (0.5, 0.75)
) -> list[PrecisionRecall]:
    """The per-class curves of an accumulated ``COCOeval`` at ``iou_thresholds`` (all areas, 100
    detections per image): ``eval["precision"]`` at its recall thresholds, class by class, then by IoU."""
    precision = np.asarray(coco_eval.eval["precision"])  # [T, R, K, A, M]; -1: no ground truth
    recall = np.asarray(coco_eval.params.recThrs, dtype=np.float64)
    rows = [int(np.flatnonzero(np.isclose(coco_eval.params.iouThrs, iou))[0]) for iou in iou_thresholds]
    curves = []
    for k, category in enumerate(coco_gt.loadCats(coco_eval.params.catIds)):
        for iou, t in zip(iou_thresholds, rows):
            curve = precision[t, :, k, 0, -1]
            measured = bool((curve > -1).any())
            curves.append(
                PrecisionRecall(
                    category["name"],
                    float(iou),
                    recall if measured else recall[:0],
                    curve if measured else curve[:0],
                    float(curve[curve > -1].mean()) if measured else math.nan,
                )
            )
    return curves


def _write_figures(
    figures_dir: str | Path,
    coco_eval: Any,
    coco_gt: Any,
    results: list[dict[str, Any]],
    image_ids: Sequence[int],
    per_class: Mapping[str, tuple[float, float]],
) -> None:
    from .coco_analysis import analyze_coco_errors
    from .plots import write_evaluation_figures

    breakdown = analyze_coco_errors(coco_gt.dataset, results, image_ids, coco_eval.params.catIds)
    write_evaluation_figures(
        figures_dir,
        coco_precision_recall(coco_eval, coco_gt),
        {"AP": {name: ap for name, (ap, _) in per_class.items()}, "AP50": {n: v[1] for n, v in per_class.items()}},
        f"COCO bbox, {len(image_ids)} images",
        breakdown,
    )


def _per_class_ap(coco_eval: Any, coco_gt: Any) -> dict[str, tuple[float, float]]:
    """Category name -> (AP over IoU .50:.95, AP at IoU .50), all areas, 100 detections per image."""
    # precision: [IoU thresholds T, recall thresholds R, categories K, areas A, max detections M]; -1: no GT.
    precision = np.asarray(coco_eval.eval["precision"])
    iou_50 = int(np.flatnonzero(np.isclose(coco_eval.params.iouThrs, 0.5))[0])
    per_class = {}
    for k, category in enumerate(coco_gt.loadCats(coco_eval.params.catIds)):
        curves = precision[:, :, k, 0, -1]
        valid = curves[curves > -1]
        valid_50 = curves[iou_50][curves[iou_50] > -1]
        per_class[category["name"]] = (
            float(valid.mean()) if valid.size else math.nan,
            float(valid_50.mean()) if valid_50.size else math.nan,
        )
    return per_class


def load_coco_results(coco_gt: Any, results: list[dict[str, Any]]) -> Any:
    """The results' COCO API object. ``loadRes`` fills in fields of the dicts it gets (copies here) and
    pycocotools' cannot load an empty list, so no detections gives an empty results object directly."""
    if results:
        return coco_gt.loadRes([dict(result) for result in results])
    coco_dt = type(coco_gt)()
    coco_dt.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": coco_gt.dataset["categories"],
        "annotations": [],
    }
    coco_dt.createIndex()
    return coco_dt


def _metric(value: float) -> float:
    return float(value) if value >= 0 else math.nan


def _backend_classes(backend: str) -> tuple[type, type]:
    """The ``(COCO, COCOeval)`` classes of ``backend``."""
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    if backend == "faster":
        try:
            from faster_coco_eval import COCO, COCOeval_faster
        except ImportError as error:
            raise ImportError("coco_backend='faster' needs faster-coco-eval: pip install faster-coco-eval") from error
        return COCO, COCOeval_faster
    raise ValueError(f"unknown COCO backend {backend!r}; expected one of {COCO_BACKENDS}")
