"""Detection datasets (MS COCO, PASCAL VOC, generated shapes, your own), augmentation and loaders.

>>> from detection.data import build_dataset, build_train_loader
>>> dataset = build_dataset("shapes", "train", train=True)
>>> loader = build_train_loader(dataset, 2, num_workers=2, seed=0)
>>> images, targets = next(iter(loader))

The names below are imported on first use: the dataset registry (``list_datasets``, ``register_*``) and
the errors load no torch, so that the tools can offer ``--dataset`` choices in ``--help`` quickly.
"""

import importlib
from typing import Any

_PUBLIC = {
    "COCO_LAYOUT": "catalog",
    "DATASETS_ENV_VAR": "catalog",
    "DEFAULT_DATASETS_DIR": "catalog",
    "VOC_FOLDER_LAYOUT": "catalog",
    "VOC_LAYOUT": "catalog",
    "RegisteredDataset": "catalog",
    "configured_dataset": "catalog",
    "get_dataset": "catalog",
    "list_datasets": "catalog",
    "register_coco_dataset": "catalog",
    "register_dataset": "catalog",
    "register_voc_dataset": "catalog",
    "resolve_dataset_root": "catalog",
    "DatasetError": "errors",
    "DatasetWarning": "errors",
    "ImageReadError": "errors",
    "ImageAnnotation": "annotations",
    "build_dataset": "build",
    "build_test_loader": "build",
    "build_train_loader": "build",
    "dataset_from_config": "build",
    "CocoDetection": "coco",
    "collate_detection": "collate",
    "DetectionDataset": "dataset",
    "read_image": "images",
    "DetectionDataLoader": "loader",
    "GroupedBatchSampler": "samplers",
    "InferenceSampler": "samplers",
    "SeededBatchSampler": "samplers",
    "TrainingSampler": "samplers",
    "aspect_ratio_group_ids": "samplers",
    "SHAPES_CLASSES": "shapes",
    "ShapesOptions": "shapes",
    "ensure_shapes_dataset": "shapes",
    "generate_shapes_dataset": "shapes",
    "replace_shapes_dataset": "shapes",
    "AugmentationOptions": "transforms",
    "DetectionAugmentation": "transforms",
    "VOC_CLASSES": "voc",
    "VOCDetection": "voc",
    "collect_voc_classes": "voc",
    "parse_voc_split": "voc",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'detection.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
