"""The dataset registry: the names ``--dataset`` and ``data.dataset`` accept, and how each is built.

A dataset is a name and a function that builds one of its splits::

    from detection.data import CocoDetection, register_dataset

    @register_dataset("widgets")
    def build_widgets(split, root, **options):
        return CocoDetection(f"/data/widgets/{split}", f"/data/widgets/{split}.json", **options)

``root`` is ``--data-root`` (``data.root``) or, for a dataset registered with a ``folder``, that folder under
``$DETECTION_DATASETS`` or ``./datasets``; None otherwise. ``options`` are what every reader takes:
``classes``, ``transforms``, ``keep_empty``, ``on_bad_image``. Files at any path need no function:
:func:`register_coco_dataset` (one COCO json and its images per split) and :func:`register_voc_dataset` (a
folder with ``Annotations/`` and ``JPEGImages/``). A config names files without any Python
(``data.train_json``, ``data.voc_folder``, ...; see :func:`configured_dataset`).

Built in: ``coco``, ``voc`` and ``shapes``. Other packages register without being imported first through
the entry-point group ``resnet_c4_detection.datasets`` (the value: a builder as above), loaded on the first
lookup, so that the tools offer their names.

This module imports no torch (the tools list the names in ``--help``); the readers are imported when a
dataset is built.
"""

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, TypeVar

from .errors import TRY_SHAPES, DatasetError

__all__ = [
    "COCO_LAYOUT",
    "DATASETS_ENV_VAR",
    "DEFAULT_DATASETS_DIR",
    "ENTRY_POINT_GROUP",
    "VOC_FOLDER_LAYOUT",
    "VOC_LAYOUT",
    "RegisteredDataset",
    "configured_dataset",
    "get_dataset",
    "list_datasets",
    "register_coco_dataset",
    "register_dataset",
    "register_voc_dataset",
    "resolve_dataset_root",
]

_logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "resnet_c4_detection.datasets"
DATASETS_ENV_VAR = "DETECTION_DATASETS"
DEFAULT_DATASETS_DIR = "datasets"
COCO_LAYOUT = "ROOT/annotations/instances_{split}.json and the images in ROOT/{split}/"
VOC_LAYOUT = (
    "ROOT/VOC{year}/Annotations/*.xml, ROOT/VOC{year}/JPEGImages/*.jpg, ROOT/VOC{year}/ImageSets/Main/{split}.txt"
)
VOC_FOLDER_LAYOUT = (
    "FOLDER/Annotations/*.xml, the images in FOLDER/JPEGImages/, optionally FOLDER/ImageSets/Main/{split}.txt"
)
METRICS = ("coco", "voc")

# build(split, root, *, classes, transforms, keep_empty, on_bad_image) -> DetectionDataset
DatasetBuilder = Callable[..., Any]
_Builder = TypeVar("_Builder", bound=DatasetBuilder)


@dataclass(frozen=True)
class RegisteredDataset:
    """A registry entry.

    Attributes:
        name: what ``--dataset`` and ``data.dataset`` say.
        build: ``build(split, root, **options)`` -> a :class:`~detection.data.DetectionDataset`.
        metric: the evaluation it is scored with by default, ``"coco"`` or ``"voc"``.
        folder: its default root, a sub-folder of ``$DETECTION_DATASETS`` or ``./datasets``; None: no
            default root (the builder knows where its files are).
        layout: what the root holds, for the error when it is missing; None: the root is not checked.
    """

    name: str
    build: DatasetBuilder
    metric: str = "coco"
    folder: str | None = None
    layout: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"dataset name must be a non-empty string, got {self.name!r}")
        if self.metric not in METRICS:
            raise ValueError(f"dataset {self.name!r}: metric must be one of {METRICS}, got {self.metric!r}")

    def resolve_root(self, root: str | os.PathLike | None = None) -> Path | None:
        """The dataset's own folder: ``root`` if given, else ``$DETECTION_DATASETS/<folder>``, else
        ``./datasets/<folder>``; None without a default folder."""
        if root is not None:
            return Path(root)
        if self.folder is None:
            return None
        return Path(os.environ.get(DATASETS_ENV_VAR) or DEFAULT_DATASETS_DIR) / self.folder


_DATASETS: dict[str, RegisteredDataset] = {}
_entry_points_loaded = False


def register_dataset(
    name: str, *, metric: str = "coco", folder: str | None = None, layout: str | None = None
) -> Callable[[_Builder], _Builder]:
    """Decorator that registers ``build(split, root, **options)`` under ``name`` (see :class:`RegisteredDataset`)."""

    def decorator(builder: _Builder) -> _Builder:
        _add(RegisteredDataset(name, builder, metric, folder, layout))
        return builder

    return decorator


def register_coco_dataset(
    name: str, json_file: str | os.PathLike, image_dir: str | os.PathLike | None = None, *, split: str
) -> None:
    """Registers split ``split`` of dataset ``name``: a COCO-format json anywhere and its image folder.

    Call it once per split (``split="train"``, ``split="val"``); the paths are checked when the split is built.

    Args:
        json_file: ``images``, ``annotations`` and ``categories`` in the COCO format (``file_name`` is
            relative to ``image_dir``).
        image_dir: default: the json's folder (as exported by Roboflow).
    """
    files = _CocoFiles({split: (Path(json_file), None if image_dir is None else Path(image_dir))})
    existing = _DATASETS.get(name)
    if existing is not None and isinstance(existing.build, _CocoFiles):
        _DATASETS[name] = RegisteredDataset(name, existing.build.with_splits(files, name), "coco")
    else:
        _add(RegisteredDataset(name, files, "coco"))


def register_voc_dataset(name: str, folder: str | os.PathLike, classes: Sequence[str] | None = None) -> None:
    """Registers a Pascal VOC-format folder (labelImg, CVAT, Roboflow exports) as dataset ``name``.

    The folder holds ``Annotations/*.xml`` and ``JPEGImages/``; a split is ``ImageSets/Main/{split}.txt``,
    or every XML file when there is no ``ImageSets/Main``. ``classes`` in label order; None: the object
    names found in all the XML files, sorted (logged). Scored with the VOC metric by default.
    """
    _add(RegisteredDataset(name, _VocFolder(Path(folder), None if classes is None else tuple(classes)), "voc"))


def list_datasets() -> list[str]:
    """Sorted names of all registered datasets, entry points included."""
    return sorted(_registry())


def get_dataset(name: str) -> RegisteredDataset:
    """The entry registered as ``name``; an unknown name is a :class:`DatasetError` that lists the known ones."""
    datasets = _registry()
    if name not in datasets:
        raise DatasetError(
            f"unknown dataset {name!r}; known datasets: {', '.join(sorted(datasets))} (or give a dataset's files: "
            "data.train_json and data.test_json, or data.voc_folder)"
        )
    return datasets[name]


def resolve_dataset_root(name: str, root: str | os.PathLike | None = None) -> Path | None:
    """The root of the registered dataset ``name`` (see :meth:`RegisteredDataset.resolve_root`): for the
    built-in ones ``$DETECTION_DATASETS`` or ``./datasets`` with ``coco``, ``VOCdevkit`` or ``shapes``."""
    return get_dataset(name).resolve_root(root)


def configured_dataset(data: Any) -> RegisteredDataset:
    """The dataset a :class:`~detection.config.DataConfig` describes.

    With ``data.train_json``/``data.test_json`` (COCO format) or ``data.voc_folder`` (VOC format), a dataset
    of those files named ``data.dataset``, with the splits ``data.train_split`` and ``data.test_split``
    (VOC: the folder's ``ImageSets/Main`` files); relative paths are relative to ``data.root`` when it is
    set. Otherwise the registered dataset ``data.dataset``.
    """
    base = Path(data.root) if data.root is not None else None

    def path(value: str | None) -> Path | None:
        if value is None:
            return None
        return base / value if base is not None else Path(value)

    if data.voc_folder is not None:
        return RegisteredDataset(data.dataset, _VocFolder(path(data.voc_folder), None), "voc")
    if data.train_json is not None or data.test_json is not None:
        splits = {
            data.train_split: (path(data.train_json), path(data.train_images)),
            data.test_split: (path(data.test_json), path(data.test_images)),
        }
        return RegisteredDataset(data.dataset, _CocoFiles(splits), "coco")
    return get_dataset(data.dataset)


class _CocoFiles:
    """Builder of a dataset whose splits are COCO-format json files anywhere: ``{split: (json, image_dir)}``."""

    def __init__(self, splits: dict[str, tuple[Path, Path | None]]) -> None:
        self.splits = splits

    def with_splits(self, other: "_CocoFiles", name: str) -> "_CocoFiles":
        taken = sorted(set(self.splits) & set(other.splits))
        if taken:
            raise ValueError(f"dataset {name!r} already has the split {taken[0]!r}")
        return _CocoFiles({**self.splits, **other.splits})

    def __call__(self, split: str, root: Path | None, **options: Any) -> Any:
        from .coco import CocoDetection

        if split not in self.splits:
            raise DatasetError(f"unknown split {split!r}; this dataset's splits: {', '.join(self.splits)}")
        json_file, image_dir = self.splits[split]
        return CocoDetection(json_file.parent if image_dir is None else image_dir, json_file, **options)


class _VocFolder:
    """Builder of a dataset in one VOC-format folder (see :func:`register_voc_dataset`)."""

    def __init__(self, folder: Path, classes: tuple[str, ...] | None) -> None:
        self.folder = folder
        self.classes = classes

    def __call__(self, split: str, root: Path | None, *, classes: Sequence[str] | None = None, **options: Any) -> Any:
        from .voc import VOCDetection, collect_voc_classes

        classes = classes if classes is not None else self.classes
        if classes is None:
            classes = collect_voc_classes(self.folder)
            _logger.info(
                f"classes collected from {self.folder / 'Annotations'}: {', '.join(classes)} "
                "(set data.classes to choose them and their order)"
            )
        return VOCDetection(self.folder, split, layout="folder", classes=classes, **options)


def _add(entry: RegisteredDataset) -> None:
    if entry.name in _DATASETS:
        owner = getattr(_DATASETS[entry.name].build, "__module__", "?")
        raise ValueError(f"dataset {entry.name!r} is already registered (by {owner})")
    _DATASETS[entry.name] = entry


def _registry() -> dict[str, RegisteredDataset]:
    global _entry_points_loaded
    if not _entry_points_loaded:
        _entry_points_loaded = True
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            if entry_point.name in _DATASETS:
                warnings.warn(
                    f"ignoring entry point {entry_point.value!r} of group {ENTRY_POINT_GROUP!r}: "
                    f"dataset {entry_point.name!r} is already registered",
                    stacklevel=2,
                )
                continue
            _add(RegisteredDataset(entry_point.name, entry_point.load()))
    return _DATASETS


@register_dataset("coco", metric="coco", folder="coco", layout=COCO_LAYOUT)
def _build_coco(split: str, root: Path, **options: Any) -> Any:
    from .coco import CocoDetection

    annotation_file, image_dir = root / "annotations" / f"instances_{split}.json", root / split
    for path, kind in ((annotation_file, "annotation file"), (image_dir, "image folder")):
        if not path.exists():
            raise DatasetError(f"COCO {kind} not found; expected layout {COCO_LAYOUT}; {TRY_SHAPES}", path)
    return CocoDetection(image_dir, annotation_file, **options)


@register_dataset("voc", metric="voc", folder="VOCdevkit", layout=VOC_LAYOUT)
def _build_voc(split: str, root: Path, *, classes: Sequence[str] | None = None, **options: Any) -> Any:
    from .voc import VOC_CLASSES, VOCDetection

    return VOCDetection(root, split, classes=classes if classes is not None else VOC_CLASSES, **options)


@register_dataset("shapes", metric="coco", folder="shapes")
def _build_shapes(split: str, root: Path, **options: Any) -> Any:
    from . import shapes

    if split not in shapes.SHAPES_SPLITS:
        raise DatasetError(f"unknown shapes split {split!r}; expected one of {', '.join(shapes.SHAPES_SPLITS)}")
    return _build_coco(split, shapes.ensure_shapes_dataset(root) / "coco", **options)
