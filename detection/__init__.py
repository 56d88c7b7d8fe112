"""Faster R-CNN assembly, data, training and evaluation for the registered backbones."""

from .detector import DetectorOptions, build_detector
from .poolers import SingleLevelRoIAlign, SingleLevelRoIPool, build_pooler

__all__ = ["DetectorOptions", "SingleLevelRoIAlign", "SingleLevelRoIPool", "build_detector", "build_pooler"]
