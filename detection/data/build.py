"""Building datasets (by registered name, or as a config describes them) and the training and evaluation loaders."""

import os
from collections.abc import Sequence
from typing import Any

from torch.utils.data import BatchSampler

from ..distributed import get_rank, get_world_size
from .catalog import DATASETS_ENV_VAR, DEFAULT_DATASETS_DIR, RegisteredDataset, configured_dataset, get_dataset
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
from .transforms import AugmentationOptions, DetectionAugmentation

__all__ = ["build_dataset", "build_test_loader", "build_train_loader", "dataset_from_config"]


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
    """A split of a registered dataset (``coco``, ``voc``, ``shapes``, or one of
    :func:`~detection.data.list_datasets`).

    Args:
        name: the registered name.
        split: COCO: any ``{split}`` of ``annotations/instances_{split}.json`` (``"train2017"``);
            VOC: ``YEAR_SPLIT`` pairs joined by ``+`` (``"2007_trainval+2012_trainval"``);
            shapes: ``"train"`` or ``"val"`` (its COCO format, generated on first use); a registered
            dataset: one of its splits.
        root: the dataset's own folder (see :func:`~detection.data.resolve_dataset_root`).
        train: training (augmentation, images without targets dropped) or evaluation (no
            augmentation, every image kept).
        augmentation: training augmentation; default :class:`AugmentationOptions()` (horizontal
            flip). Only for ``train=True``.
        keep_empty: training only: keep images without training targets as negatives (default
            False). Evaluation datasets always keep every image.
        on_bad_image: ``"raise"`` on an unreadable image, or ``"skip"`` it with a warning.
        classes: class names in label order (VOC default: the 20 classes; COCO default: every
            category by id; a VOC-format folder: the names in its XML files, sorted).

    Every listed image file is checked to exist and not be empty (no decoding), see
    :meth:`DetectionDataset.check_image_files`.

    Raises:
        DatasetError: unknown name, missing root or annotation file, malformed annotations, missing
            or empty image files (with ``on_bad_image="raise"``).
    """
    return _build(
        get_dataset(name),
        split,
        root,
        train=train,
        augmentation=augmentation,
        keep_empty=keep_empty,
        on_bad_image=on_bad_image,
        classes=classes,
    )


def dataset_from_config(data: Any, split: str, *, train: bool) -> DetectionDataset:
    """Split ``split`` of the dataset a :class:`~detection.config.DataConfig` describes: a registered name,
    or its files (``data.train_json``, ``data.voc_folder``, ...), with its loading options, and for
    training its augmentation and ``keep_empty``."""
    return _build(
        configured_dataset(data),
        split,
        data.root,
        train=train,
        augmentation=data.augmentation if train else None,
        keep_empty=data.keep_empty if train else None,
        on_bad_image=data.on_bad_image,
        classes=data.classes,
    )


def _build(
    entry: RegisteredDataset,
    split: str,
    root: str | os.PathLike | None,
    *,
    train: bool,
    augmentation: AugmentationOptions | None,
    keep_empty: bool | None,
    on_bad_image: BadImagePolicy,
    classes: Sequence[str] | None,
) -> DetectionDataset:
    if augmentation is not None and not train:
        raise ValueError("augmentation is for training datasets (train=True) only")
    dataset_root = entry.resolve_root(root)
    if entry.layout is not None and not (dataset_root is not None and dataset_root.is_dir()):
        raise DatasetError(
            f"{entry.name} dataset folder not found (from {_root_origin(root)}); expected layout there: "
            f"{entry.layout}; {TRY_SHAPES}",
            dataset_root,
        )
    dataset = entry.build(
        split,
        dataset_root,
        classes=classes,
        transforms=DetectionAugmentation(augmentation) if train else None,
        keep_empty=bool(keep_empty) if train else True,
        on_bad_image=on_bad_image,
    )
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


def _root_origin(root: str | os.PathLike | None) -> str:
    if root is not None:
        return "--data-root"
    if os.environ.get(DATASETS_ENV_VAR):
        return f"${DATASETS_ENV_VAR}"
    return f"the default ./{DEFAULT_DATASETS_DIR}; set --data-root or ${DATASETS_ENV_VAR}"
