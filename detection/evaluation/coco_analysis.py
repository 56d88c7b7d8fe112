"""The error breakdown of the COCO API's ``analyze()`` (Hoiem et al.'s analysis of false positives).

Seven precision/recall curves per class, each one removing a kind of error from the one before, so that
the area between two curves is what that kind of error costs (COCO's detection-evaluation page):

- ``C75``, ``C50``: the PR curve at IoU 0.75 and 0.50;
- ``Loc``: at IoU 0.10 (localisation errors forgiven, duplicate detections still false positives);
- ``Sim``: also forgiving confusions with classes of the same supercategory (a detection matched to such a
  ground truth object counts neither as true nor as false positive);
- ``Oth``: also forgiving confusions with any other class;
- ``BG``: also without false positives on background (precision 1 up to the recall reached);
- ``FN``: also without the objects never detected (precision 1 everywhere: AP 1).

Like ``COCOeval.accumulate``, the curves are interpolated precision at the 101 recall thresholds, for
all object areas and 100 detections per image. The MATLAB API marks the ground truth of the forgiven
classes ``ignore``; pycocotools' ``COCOeval`` overwrites ``ignore`` with ``iscrowd``, so the matching
below runs a ``COCOeval`` that keeps that mark (crowd regions would be matched by another rule).
"""

import contextlib
import io
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools.cocoeval import COCOeval

from .coco_evaluation import load_coco_api, load_coco_results

ERROR_TYPES = ("C75", "C50", "Loc", "Sim", "Oth", "BG", "FN")
ERROR_IOU_THRESHOLDS = (0.75, 0.5, 0.1)  # C75, C50, Loc
_FORGIVEN = "_confusion_forgiven"  # marks relabelled ground truth


@dataclass(frozen=True)
class ErrorBreakdown:
    """The seven curves of :data:`ERROR_TYPES` for each class.

    Attributes:
        recall: ``float [R]``, the recall thresholds.
        precision: ``float [7, R, K]``; NaN for a class without ground truth.
        class_names: the K classes.
    """

    recall: np.ndarray
    precision: np.ndarray
    class_names: tuple[str, ...]

    def overall(self) -> np.ndarray:
        """``[7, R]``: the mean over the classes that have ground truth (what COCO's AP averages)."""
        measured = ~np.isnan(self.precision[0, 0])
        if not measured.any():
            return np.full(self.precision.shape[:2], np.nan)
        return self.precision[:, :, measured].mean(axis=2)


def analyze_coco_errors(
    dataset_json: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    image_ids: Sequence[int],
    category_ids: Sequence[int],
) -> ErrorBreakdown:
    """The breakdown of ``results`` (official results format) on the images ``image_ids`` and categories
    ``category_ids`` of a COCO-format ground truth ``dataset_json`` (read, not changed)."""
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' progress chatter
        return _analyze(dataset_json, results, image_ids, category_ids)


def _analyze(
    dataset_json: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    image_ids: Sequence[int],
    category_ids: Sequence[int],
) -> ErrorBreakdown:
    image_ids = sorted(int(i) for i in image_ids)
    category_ids = [int(c) for c in category_ids]
    categories = {category["id"]: category for category in dataset_json["categories"]}
    coco_gt = load_coco_api(dataset_json)
    coco_dt = load_coco_results(coco_gt, list(results))
    main = _run(COCOeval, coco_gt, coco_dt, image_ids, category_ids, ERROR_IOU_THRESHOLDS)
    precision = np.zeros((len(ERROR_TYPES), main.shape[1], len(category_ids)))
    precision[:3] = main

    annotations_by_category = defaultdict(list)
    for annotation in dataset_json["annotations"]:
        annotations_by_category[annotation["category_id"]].append(annotation)
    results_by_category = defaultdict(list)
    for result in results:
        results_by_category[result["category_id"]].append(result)
    supercategory = {category_id: category.get("supercategory") for category_id, category in categories.items()}
    for k, category_id in enumerate(category_ids):
        own, detections = supercategory[category_id], results_by_category[category_id]
        others = [other for other in categories if other != category_id]
        similar = [other for other in others if own is not None and supercategory[other] == own]
        for row, forgiven in ((3, similar), (4, others)):
            precision[row, :, k] = _forgiving_precision(
                dataset_json, annotations_by_category, detections, category_id, forgiven, image_ids
            )
    without_ground_truth = main[1, 0] == -1
    precision[precision == -1] = 0.0
    precision[5] = precision[4] > 0
    precision[6] = 1.0
    precision[:, :, without_ground_truth] = np.nan
    names = tuple(categories[category_id]["name"] for category_id in category_ids)
    return ErrorBreakdown(np.linspace(0.0, 1.0, main.shape[1]), precision, names)


class _COCOevalForgiving(COCOeval):
    """``COCOeval`` that ignores the ground truth marked :data:`_FORGIVEN`, as the MATLAB API's ``ignore``."""

    def _prepare(self) -> None:
        super()._prepare()
        for ground_truth in self._gts.values():
            for annotation in ground_truth:
                if annotation.get(_FORGIVEN):
                    annotation["ignore"] = 1


def _forgiving_precision(
    dataset_json: Mapping[str, Any],
    annotations_by_category: Mapping[int, list[dict[str, Any]]],
    results: list[Mapping[str, Any]],
    category_id: int,
    forgiven: Sequence[int],
    image_ids: list[int],
) -> np.ndarray:
    """``[R]``: the class's PR curve at IoU 0.1 when its detections on objects of the ``forgiven`` classes
    count neither as true nor as false positives."""
    relabelled = [
        {**annotation, "category_id": category_id, _FORGIVEN: True}
        for other in forgiven
        for annotation in annotations_by_category.get(other, [])
    ]
    subset = {
        "images": dataset_json["images"],
        "categories": [category for category in dataset_json["categories"] if category["id"] == category_id],
        "annotations": annotations_by_category.get(category_id, []) + relabelled,
    }
    coco_gt = load_coco_api(subset)
    coco_dt = load_coco_results(coco_gt, results)
    return _run(_COCOevalForgiving, coco_gt, coco_dt, image_ids, [category_id], (0.1,))[0, :, 0]


def _run(
    cocoeval_class: type,
    coco_gt: Any,
    coco_dt: Any,
    image_ids: list[int],
    category_ids: list[int],
    iou_thresholds: Sequence[float],
) -> np.ndarray:
    """``[T, R, K]`` interpolated precision, all areas, 100 detections per image; -1 without ground truth."""
    coco_eval = cocoeval_class(coco_gt, coco_dt, "bbox")
    coco_eval.params.imgIds = image_ids
    coco_eval.params.catIds = category_ids
    coco_eval.params.iouThrs = np.asarray(iou_thresholds, dtype=np.float64)
    coco_eval.params.maxDets = [100]
    coco_eval.params.areaRng = [[0.0, 1e10]]
    coco_eval.params.areaRngLbl = ["all"]
    coco_eval.evaluate()
    coco_eval.accumulate()
    return np.asarray(coco_eval.eval["precision"])[:, :, :, 0, 0]
