"""Evaluation: inference over a loader, COCO mAP (COCOeval) and PASCAL VOC mAP (the devkit's AP)."""

from .coco_evaluation import (
    COCO_BACKENDS,
    COCO_SUMMARY_NAMES,
    coco_ground_truth_json,
    coco_results,
    evaluate_coco,
    load_coco_api,
)
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
    "average_precision",
    "check_predictions",
    "coco_ground_truth_json",
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
    "write_devkit_results",
]
