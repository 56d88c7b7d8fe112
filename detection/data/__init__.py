"""Detection datasets (MS COCO, PASCAL VOC, generated shapes), augmentation and loaders.

>>> from detection.data import build_dataset, build_train_loader
>>> dataset = build_dataset("shapes", "train", train=True)
>>> loader = build_train_loader(dataset, 2, num_workers=2, seed=0)
>>> images, targets = next(iter(loader))
"""

from .annotations import ImageAnnotation
from .build import (
    DATASET_FOLDERS,
    DATASETS_ENV_VAR,
    DEFAULT_DATASETS_DIR,
    build_dataset,
    build_test_loader,
    build_train_loader,
    dataset_names,
    resolve_dataset_root,
)
from .coco import COCO_CLASSES, CocoDetection
from .collate import collate_detection
from .dataset import DetectionDataset
from .errors import DatasetError, DatasetWarning, ImageReadError
from .images import read_image
from .loader import DetectionDataLoader
from .samplers import (
    GroupedBatchSampler,
    InferenceSampler,
    SeededBatchSampler,
    TrainingSampler,
    aspect_ratio_group_ids,
)
from .shapes import (
    SHAPES_CLASSES,
    ShapesOptions,
    ensure_shapes_dataset,
    generate_shapes_dataset,
    replace_shapes_dataset,
)
from .transforms import AugmentationOptions, DetectionAugmentation
from .voc import VOC_CLASSES, VOCDetection, parse_voc_split

__all__ = [
    "COCO_CLASSES",
    "DATASETS_ENV_VAR",
    "DATASET_FOLDERS",
    "DEFAULT_DATASETS_DIR",
    "SHAPES_CLASSES",
    "VOC_CLASSES",
    "AugmentationOptions",
    "CocoDetection",
    "DatasetError",
    "DatasetWarning",
    "DetectionAugmentation",
    "DetectionDataLoader",
    "DetectionDataset",
    "GroupedBatchSampler",
    "ImageAnnotation",
    "ImageReadError",
    "InferenceSampler",
    "SeededBatchSampler",
    "ShapesOptions",
    "TrainingSampler",
    "VOCDetection",
    "aspect_ratio_group_ids",
    "build_dataset",
    "build_test_loader",
    "build_train_loader",
    "collate_detection",
    "dataset_names",
    "ensure_shapes_dataset",
    "generate_shapes_dataset",
    "parse_voc_split",
    "read_image",
    "replace_shapes_dataset",
    "resolve_dataset_root",
]
