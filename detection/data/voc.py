"""PASCAL VOC-format detection datasets: the devkit layout (several (year, split) pairs concatenated), or
one folder of XML files as labelling tools export it."""

import dataclasses
import os
import re
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from .annotations import ImageAnnotation, clip_boxes
from .catalog import VOC_FOLDER_LAYOUT, VOC_LAYOUT
from .dataset import BadImagePolicy, DetectionDataset
from .errors import TRY_SHAPES, DatasetError, DatasetWarning
from .images import IMAGE_EXTENSIONS
from .transforms import DetectionAugmentation

__all__ = ["VOCDetection", "VOC_CLASSES", "collect_voc_classes", "parse_voc_split"]

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
_SPLIT_PART = re.compile(r"^([A-Za-z0-9]+)_([A-Za-z0-9-]+)$")


def parse_voc_split(split: str) -> list[tuple[str, str]]:
    """``"2007_trainval+2012_trainval"`` -> ``[("2007", "trainval"), ("2012", "trainval")]``."""
    parts = [_SPLIT_PART.match(part.strip()) for part in split.split("+")]
    if not split or not all(parts):
        raise DatasetError(
            f"bad VOC split {split!r}; expected YEAR_SPLIT joined by '+', e.g. '2007_test' or "
            "'2007_trainval+2012_trainval'"
        )
    return [(match.group(1), match.group(2)) for match in parts]


class VOCDetection(DetectionDataset):
    """PASCAL VOC: the devkit's ``ROOT/VOC{year}/{Annotations, JPEGImages, ImageSets/Main}``, or one
    VOC-format folder ``ROOT/{Annotations, JPEGImages, ImageSets/Main}`` (``layout="folder"``).

    Pixel convention: VOC boxes are 1-based and inclusive; ``(xmin, ymin, xmax, ymax)`` becomes
    ``(xmin - 1, ymin - 1, xmax, ymax)`` in the package's 0-based continuous coordinates, so a box
    over pixel columns 1..10 (VOC) has ``x1 = 0, x2 = 10``. Coordinates are parsed as floats and
    clipped to the image, so a malformed ``xmin = 0`` gives 0, never an underflow. Only the
    top-level ``<object>`` elements are objects (``<part>`` sub-elements are ignored); a missing
    ``<difficult>`` means 0; ``<truncated>`` is ignored. The XML files are parsed once, here.

    The image id is the devkit's: the name listed in ``ImageSets/Main/<split>.txt`` (the folder layout
    without ``ImageSets``: the XML file's stem). Its image is ``JPEGImages/<id>.jpg`` as in the devkit, else
    ``<id>`` with another image extension, else the XML's ``<filename>`` (relabelled data often carries a stale
    one, so it comes last); :meth:`image_name`, and so the result files, always give the id.

    Args:
        root: the ``VOCdevkit`` folder, or the VOC-format folder.
        split: devkit: ``YEAR_SPLIT`` pairs joined by ``+``, e.g. ``"2007_trainval+2012_trainval"``;
            folder: the name of ``ImageSets/Main/{split}.txt``, ignored when the folder has no
            ``ImageSets/Main`` (then every XML file is used, with a warning).
        layout: ``"devkit"`` or ``"folder"``.
        classes: class names in label order (default: the 20 VOC classes). An object with another
            name is an error naming the XML file.
        use_difficult: make ``difficult`` objects training targets (they stay flagged).
        transforms, keep_empty, on_bad_image: see :class:`DetectionDataset`.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "2007_trainval",
        *,
        layout: Literal["devkit", "folder"] = "devkit",
        classes: Sequence[str] = VOC_CLASSES,
        use_difficult: bool = False,
        transforms: DetectionAugmentation | None = None,
        keep_empty: bool = True,
        on_bad_image: BadImagePolicy = "raise",
    ) -> None:
        if len(set(classes)) != len(classes) or not classes:
            raise ValueError(f"classes must be distinct names, got {list(classes)}")
        self.root = Path(root)
        class_to_label = {name: label for label, name in enumerate(classes, start=1)}
        if layout == "devkit":
            folders = [(self.root / f"VOC{year}", image_set) for year, image_set in parse_voc_split(split)]
            image_sets = [(folder, _read_image_set(folder, image_set)) for folder, image_set in folders]
        elif layout == "folder":
            image_sets = [(self.root, _folder_image_ids(self.root, split))]
        else:
            raise ValueError(f"layout must be 'devkit' or 'folder', got {layout!r}")
        annotations = []
        for folder, names in image_sets:
            images = _ImageFolder(folder / "JPEGImages")
            annotations += [_parse_xml(folder, name, class_to_label, layout, images) for name in names]
        super().__init__(
            annotations,
            classes,
            transforms=transforms,
            keep_empty=keep_empty,
            use_difficult=use_difficult,
            on_bad_image=on_bad_image,
        )
        self._annotations = [dataclasses.replace(ann, image_id=i) for i, ann in enumerate(self._annotations)]

    def image_name(self, index: int) -> str:
        """The devkit's image id of image ``index`` (e.g. ``"000005"``), as the result files write it."""
        return self._annotations[index].image_name


def collect_voc_classes(folder: str | os.PathLike) -> tuple[str, ...]:
    """The object names of every ``folder/Annotations/*.xml``, sorted: the classes of a labelled folder."""
    folder = Path(folder)
    files = sorted((folder / "Annotations").glob("*.xml"))
    if not files:
        raise DatasetError(f"no XML files in Annotations/; expected a VOC-format folder: {VOC_FOLDER_LAYOUT}", folder)
    names = set()
    for path in files:
        for i, obj in enumerate(_read_xml(path).findall("object")):
            name = (obj.findtext("name") or "").strip()
            if not name:
                raise DatasetError("missing", path, f"object[{i}]/name")
            names.add(name)
    if not names:
        raise DatasetError(f"no objects in the {len(files)} XML files: no classes to collect", folder / "Annotations")
    return tuple(sorted(names))


def _read_image_set(folder: Path, image_set: str) -> list[str]:
    """The image ids listed in ``folder/ImageSets/Main/{image_set}.txt``."""
    path = folder / "ImageSets" / "Main" / f"{image_set}.txt"
    if not path.is_file():
        raise DatasetError(f"VOC split file not found; expected the devkit layout {VOC_LAYOUT}; {TRY_SHAPES}", path)
    with open(path, encoding="utf-8") as f:
        return [line.split()[0] for line in f if line.strip()]


def _folder_image_ids(folder: Path, split: str) -> list[str]:
    """A VOC-format folder's split: ``ImageSets/Main/{split}.txt``, or every XML file without ``ImageSets/Main``."""
    if not (folder / "Annotations").is_dir():
        raise DatasetError(f"no Annotations/ folder; expected a VOC-format folder: {VOC_FOLDER_LAYOUT}", folder)
    image_sets = folder / "ImageSets" / "Main"
    if image_sets.is_dir():
        if not (image_sets / f"{split}.txt").is_file():
            known = sorted(path.stem for path in image_sets.glob("*.txt"))
            raise DatasetError(
                f"split file not found; this folder's splits: {', '.join(known) or 'none'}", image_sets / f"{split}.txt"
            )
        return _read_image_set(folder, split)
    names = sorted(path.stem for path in (folder / "Annotations").glob("*.xml"))
    warnings.warn(
        f"{folder}: no ImageSets/Main, so split {split!r} is every XML file in Annotations/ ({len(names)} images)",
        DatasetWarning,
        stacklevel=4,
    )
    return names


def _read_xml(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as error:
        raise DatasetError(f"malformed XML: {error}", path) from None


class _ImageFolder:
    """``JPEGImages/``: the file of an image id, listing the folder only when ``<id>.jpg`` is not there."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._by_stem: dict[str, str] | None = None  # stem -> the first image file name of that stem

    def find(self, image_id: str, filename: str) -> Path:
        """``<id>.jpg``, else ``<id>`` with another image extension, else ``filename`` (the XML's
        ``<filename>``), else ``<id>.jpg`` (missing: the dataset's file check names it)."""
        devkit = self.folder / f"{image_id}.jpg"
        if devkit.is_file():
            return devkit
        if self._by_stem is None:
            self._by_stem = {}
            names = sorted(os.listdir(self.folder)) if self.folder.is_dir() else []
            for name in names:
                if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                    self._by_stem.setdefault(Path(name).stem, name)
        if image_id in self._by_stem:
            return self.folder / self._by_stem[image_id]
        named = self.folder / Path(filename).name if filename else None
        return named if named is not None and named.is_file() else devkit


def _parse_xml(
    folder: Path, image_name: str, class_to_label: Mapping[str, int], layout: str, images: _ImageFolder
) -> ImageAnnotation:
    path = folder / "Annotations" / f"{image_name}.xml"
    if not path.is_file():
        where = "the image is listed in ImageSets/Main"
        expected = f"the devkit layout {VOC_LAYOUT}" if layout == "devkit" else f"a VOC folder: {VOC_FOLDER_LAYOUT}"
        raise DatasetError(f"annotation file not found ({where}); expected {expected}", path)
    root = _read_xml(path)
    width = _number(root, "size/width", path, int)
    height = _number(root, "size/height", path, int)
    if width <= 0 or height <= 0:
        raise DatasetError(f"expected a positive image size, got {width}x{height} (WxH)", path, "size")

    objects = root.findall("object")  # direct children only: <part> elements are not objects
    boxes = np.zeros((len(objects), 4), dtype=np.float64)
    labels = np.zeros(len(objects), dtype=np.int64)
    difficult = np.zeros(len(objects), dtype=bool)
    for i, obj in enumerate(objects):
        field = f"object[{i}]"
        name = (obj.findtext("name") or "").strip()
        if name not in class_to_label:
            raise DatasetError(
                f"unknown class name {name!r}; expected one of {list(class_to_label)}", path, f"{field}/name"
            )
        labels[i] = class_to_label[name]
        difficult[i] = bool(_number(obj, "difficult", path, int, default=0, field_prefix=field))
        xmin, ymin, xmax, ymax = (
            _number(obj, f"bndbox/{key}", path, float, field_prefix=field) for key in ("xmin", "ymin", "xmax", "ymax")
        )
        boxes[i] = (xmin - 1, ymin - 1, xmax, ymax)

    clipped, keep = clip_boxes(boxes, height, width)
    if not keep.all():
        warnings.warn(
            f"{path}: dropped {int((~keep).sum())} boxes with no area inside the {width}x{height} image",
            DatasetWarning,
            stacklevel=4,
        )
    return ImageAnnotation(
        file_name=str(images.find(image_name, (root.findtext("filename") or "").strip())),
        image_id=-1,  # VOC has no ids: VOCDetection sets the dataset position
        height=height,
        width=width,
        boxes=clipped[keep],
        labels=labels[keep],
        difficult=difficult[keep],
        iscrowd=np.zeros(int(keep.sum()), dtype=bool),
        image_name=image_name,
    )


def _number(
    element: ET.Element,
    tag: str,
    path: Path,
    kind: type[int] | type[float],
    *,
    default: int | None = None,
    field_prefix: str = "",
) -> int | float:
    """The number in ``element``'s sub-element ``tag``; integers written as ``"375.0"`` are accepted."""
    field = f"{field_prefix}/{tag}" if field_prefix else tag
    text = element.findtext(tag)
    if text is None or not text.strip():
        if default is not None:
            return default
        raise DatasetError("missing", path, field)
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(f"expected a number, got {text.strip()!r}", path, field) from None
    if kind is int:
        if not value.is_integer():
            raise DatasetError(f"expected an integer, got {text.strip()!r}", path, field)
        return int(value)
    return value
