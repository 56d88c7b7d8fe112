"""Faster R-CNN with the registered backbones, on torchvision: models, data, training, evaluation.

The public names below are imported on first use, so that ``import detection.config`` (or a tool's
``--help``) does not load torch and torchvision.

    >>> from detection import build_detector, fasterrcnn_resnet101_c4
    >>> model = build_detector("resnet101", num_classes=81)
    >>> model = fasterrcnn_resnet101_c4(weights="DEFAULT")  # torchvision's way: detectron2's R101-C4, 41.1 AP
"""

import importlib
from typing import Any

_PUBLIC = {
    "DetectorOptions": "detection.modeling.options",
    "build_detector": "detection.modeling.detector",
    "SingleLevelRoIAlign": "detection.modeling.poolers",
    "SingleLevelRoIPool": "detection.modeling.poolers",
    "build_pooler": "detection.modeling.poolers",
    "fasterrcnn_resnet18_c4": "detection.modeling.zoo",
    "fasterrcnn_resnet34_c4": "detection.modeling.zoo",
    "fasterrcnn_resnet50_c4": "detection.modeling.zoo",
    "fasterrcnn_resnet101_c4": "detection.modeling.zoo",
    "fasterrcnn_resnet152_c4": "detection.modeling.zoo",
    "fasterrcnn_vgg16": "detection.modeling.zoo",
    "FasterRCNN_ResNet50_C4_Weights": "detection.modeling.weights",
    "FasterRCNN_ResNet101_C4_Weights": "detection.modeling.weights",
    "get_weight": "detection.modeling.weights",
    "ResNet50_MSRA_Weights": "detection.modeling.msra",
    "ResNet101_MSRA_Weights": "detection.modeling.msra",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'detection' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
