"""Precision/recall curves as the evaluators compute their AP from them (what the figures draw)."""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PrecisionRecall:
    """One class's precision/recall curve at one IoU threshold, and the AP the evaluator computed from it.

    COCO: ``recall`` is ``COCOeval``'s 101 recall thresholds and ``precision`` its interpolated precision at
    each (all areas, 100 detections per image), so ``ap`` is their mean. VOC: the raw points, one per
    detection in decreasing score order, and ``ap`` the devkit's (11-point or area) AP of them.

    Attributes:
        class_name: the class.
        iou: the IoU threshold of a true positive.
        recall, precision: ``float [N]``.
        ap: the evaluator's AP in ``[0, 1]``; NaN for a class without ground truth (empty arrays).
    """

    class_name: str
    iou: float
    recall: np.ndarray
    precision: np.ndarray
    ap: float
