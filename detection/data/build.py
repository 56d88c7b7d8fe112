"""Datasets by name, their root folders, and the training and evaluation loaders."""

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from torch.utils.data import BatchSampler

from ..distributed import get_rank, get_world_size
from .coco import COCO_LAYOUT, CocoDetection
from .dataset import BadImagePolicy, DetectionDataset
from .errors import TRY_SHAPES, DatasetError
from .loader import DetectionDataLoader
from .samplers import (
    GroupedBatchSampler,
    InferenceSampler,
    SeededBatchSampler,
    TrainingSampler,
    aspect_ratio_group_ids,
)
from .shapes import SHAPES_SPLITS, ensure_shapes_dataset
from .transforms import AugmentationOptions, DetectionAugmentation
from .voc import VOC_CLASSES, VOC_LAYOUT, VOCDetection

__all__ = [
    "DATASETS_ENV_VAR",
    "DEFAULT_DATASETS_DIR",
    "DATASET_FOLDERS",
    "build_dataset",
    "build_test_loader",
    "build_train_loader",
    "dataset_names",
    "resolve_dataset_root",
]

DATASETS_ENV_VAR = "DETECTION_DATASETS"
DEFAULT_DATASETS_DIR = "datasets"
# Folder of each dataset under $DETECTION_DATASETS or ./datasets.
DATASET_FOLDERS = {"coco": "coco", "voc": "VOCdevkit", "shapes": "shapes"}
_LAYOUTS = {"coco": COCO_LAYOUT, "voc": VOC_LAYOUT}  # shapes is generated when missing


def dataset_names() -> tuple[str, ...]:
    """The names :func:`build_dataset` knows."""
    return tuple(DATASET_FOLDERS)


def resolve_dataset_root(name: str, root: str | os.PathLike | None = None) -> Path:
    """The dataset's own folder: ``root`` if given, else ``$DETECTION_DATASETS/<folder>``, else
    ``./datasets/<folder>``, where ``<folder>`` is ``coco``, ``VOCdevkit`` or ``shapes``."""
    _check_name(name)
    if root is not None:
        return Path(root)
    parent = os.environ.get(DATASETS_ENV_VAR) or DEFAULT_DATASETS_DIR
    return Path(parent) / DATASET_FOLDERS[name]


def build_dataset(
    name: str,
    split: str,
    *,
    root: str | os.PathLike | None = None,
    train: bool,
    augmentation: AugmentationOptions | None = None,
    keep_empty: bool | None = None,
    on_bad_image: BadImagePolicy = "raise",
    classes: Sequence[str] | None = None,
) -> DetectionDataset:
    """A dataset by name.

    Args:
        name: ``"coco"``, ``"voc"`` or ``"shapes"``.
        split: COCO: any ``{split}`` of ``annotations/instances_{split}.json`` (``"train2017"``);
            VOC: ``YEAR_SPLIT`` pairs joined by ``+`` (``"2007_trainval+2012_trainval"``);
            shapes: ``"train"`` or ``"val"`` (its COCO format, generated on first use).
        root: the dataset's own folder (see :func:`resolve_dataset_root`).
        train: training (augmentation, images without targets dropped) or evaluation (no
            augmentation, every image kept).
        augmentation: training augmentation; default :class:`AugmentationOptions()` (horizontal
            flip). Only for ``train=True``.
        keep_empty: training only: keep images without training targets as negatives (default
            False). Evaluation datasets always keep every image.
        on_bad_image: ``"raise"`` on an unreadable image, or ``"skip"`` it with a warning.
        classes: class names in label order (VOC default: the 20 classes; COCO default: every
            category by id).

    Every listed image file is checked to exist and not be empty (no decoding), see
    :meth:`DetectionDataset.check_image_files`.

    Raises:
        DatasetError: unknown name, missing root or annotation file, malformed annotations, missing
            or empty image files (with ``on_bad_image="raise"``).
    """
    if augmentation is not None and not train:
        raise ValueError("augmentation is for training datasets (train=True) only")
    dataset_root = resolve_dataset_root(name, root)
    if name != "shapes" and not dataset_root.is_dir():
        raise DatasetError(
            f"{name} dataset folder not found (from {_root_origin(root)}); expected layout there: "
            f"{_LAYOUTS[name]}; {TRY_SHAPES}",
            dataset_root,
        )
    options = {
        "transforms": DetectionAugmentation(augmentation) if train else None,
        "keep_empty": bool(keep_empty) if train else True,
        "on_bad_image": on_bad_image,
    }
    dataset = _BUILDERS[name](dataset_root, split, classes, options)
    dataset.check_image_files()
    return dataset


def build_train_loader(
    dataset: DetectionDataset,
    batch_size: int,
    *,
    num_workers: int,
    seed: int,
    start_iter: int = 0,
    aspect_ratio_grouping: bool = True,
) -> DetectionDataLoader:
    """Endless training batches ``(images, targets)`` for this process.

    The batches and each image's augmentation are a function of ``(seed, rank, world_size)``
    only, whatever ``num_workers``. Under ``torch.distributed`` each rank gets its own shard and
    ``batch_size`` is per rank. ``start_iter=k`` yields exactly what would come after ``k``
    batches, without decoding the skipped images. With aspect-ratio grouping every batch holds
    images of one aspect-ratio bin (as torchvision's references, group factor 3).
    """
    if len(dataset) == 0:
        raise DatasetError(
            "the training dataset has no images (all without boxes?); build it with keep_empty=True or check the split"
        )
    rank, world_size = get_rank(), get_world_size()
    sampler = TrainingSampler(len(dataset), seed=seed, rank=rank, world_size=world_size)
    if aspect_ratio_grouping:
        batches = GroupedBatchSampler(sampler, aspect_ratio_group_ids(dataset), batch_size)
    else:
        batches = BatchSampler(sampler, batch_size, drop_last=True)
    keys = SeededBatchSampler(batches, seed=seed, rank=rank, start=start_iter)
    return _loader(dataset, keys, num_workers)


def build_test_loader(dataset: DetectionDataset, batch_size: int = 1, *, num_workers: int) -> DetectionDataLoader:
    """The dataset in order, in batches of ``batch_size``; under ``torch.distributed`` this
    rank's contiguous shard (the shards cover every image exactly once)."""
    rank, world_size = get_rank(), get_world_size()
    sampler = InferenceSampler(len(dataset), rank=rank, world_size=world_size)
    return _loader(dataset, BatchSampler(sampler, batch_size, drop_last=False), num_workers)


def _loader(dataset: DetectionDataset, batch_sampler, num_workers: int) -> DetectionDataLoader:
    return DetectionDataLoader(dataset, batch_sampler, num_workers=num_workers)


def _check_name(name: str) -> None:
    if name not in DATASET_FOLDERS:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_FOLDERS)}")


def _root_origin(root: str | os.PathLike | None) -> str:
    if root is not None:
        return "--data-root"
    if os.environ.get(DATASETS_ENV_VAR):
        return f"${DATASETS_ENV_VAR}"
    return f"the default ./{DEFAULT_DATASETS_DIR}; set --data-root or ${DATASETS_ENV_VAR}"


def _build_coco(root: Path, split: str, classes: Sequence[str] | None, options: dict) -> CocoDetection:
    return CocoDetection(root / split, root / "annotations" / f"instances_{split}.json", classes=classes, **options)


def _build_voc(root: Path, split: str, classes: Sequence[str] | None, options: dict) -> VOCDetection:
    return VOCDetection(root, split, classes=classes if classes is not None else VOC_CLASSES, **options)


def _build_shapes(root: Path, split: str, classes: Sequence[str] | None, options: dict) -> CocoDetection:
    if split not in SHAPES_SPLITS:
        raise DatasetError(f"unknown shapes split {split!r}; expected one of {', '.join(SHAPES_SPLITS)}")
    return _build_coco(ensure_shapes_dataset(root) / "coco", split, classes, options)


_BUILDERS: dict[str, Callable[[Path, str, Sequence[str] | None, dict], DetectionDataset]] = {
    "coco": _build_coco,
    "voc": _build_voc,
    "shapes": _build_shapes,
}
