"""Evaluation: inference over a loader, COCO mAP (COCOeval) and PASCAL VOC mAP (the devkit's AP).

The figures (``plots``, matplotlib), the COCO error breakdown (``coco_analysis``), evaluations on disk
(``records``) and comparisons (``comparison``) are submodules, imported where used.
"""

from .coco_evaluation import (
    COCO_BACKENDS,
    COCO_SUMMARY_NAMES,
    coco_ground_truth_json,
    coco_precision_recall,
    coco_results,
    evaluate_coco,
    load_coco_api,
)
from .curves import PrecisionRecall
from .inference import run_inference
from .metrics import (
    COCO_RESULTS_FILE,
    METRICS,
    DatasetGroundTruth,
    check_predictions,
    dataset_ground_truth,
    evaluate_predictions,
)
from .voc_evaluation import (
    COCO_STYLE_IOU_THRESHOLDS,
    VOC_METHODS,
    average_precision,
    devkit_iou,
    evaluate_voc,
    to_devkit_boxes,
    voc_average_precisions,
    voc_precision_recall,
    write_devkit_results,
)

__all__ = [
    "COCO_BACKENDS",
    "COCO_RESULTS_FILE",
    "COCO_STYLE_IOU_THRESHOLDS",
    "COCO_SUMMARY_NAMES",
    "METRICS",
    "VOC_METHODS",
    "DatasetGroundTruth",
    "PrecisionRecall",
    "average_precision",
    "check_predictions",
    "coco_ground_truth_json",
    "coco_precision_recall",
    "coco_results",
    "dataset_ground_truth",
    "devkit_iou",
    "evaluate_coco",
    "evaluate_predictions",
    "evaluate_voc",
    "load_coco_api",
    "run_inference",
    "to_devkit_boxes",
    "voc_average_precisions",
    "voc_precision_recall",
    "write_devkit_results",
]
