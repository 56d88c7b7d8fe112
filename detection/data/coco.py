"""MS COCO-format detection datasets (``instances_{split}.json`` + an image folder)."""

import contextlib
import io
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO

from .annotations import ImageAnnotation, clip_boxes
from .dataset import BadImagePolicy, DetectionDataset
from .errors import DatasetError, DatasetWarning
from .transforms import DetectionAugmentation

__all__ = ["CocoDetection"]

_NUMBER = (int, float)


class CocoDetection(DetectionDataset):
    """A COCO-format dataset: ground truth from pycocotools, images decoded on access.

    Category ids (which have gaps: 1..90 for COCO's 80 classes) map to contiguous labels ``1..K``
    in increasing id order, or in the order of ``classes``; ``label_to_category_id`` maps back for
    writing results. COCO's ``[x, y, w, h]`` becomes ``(x, y, x + w, y + h)``, clipped to the image;
    boxes with no area left are dropped (one :class:`DatasetWarning` for the whole file). Building
    the dataset reads the json only, never an image.

    Args:
        image_dir: folder of the images (``file_name`` is relative to it).
        annotation_file: the ``instances_*.json``.
        classes: optional category names in label order (default: all categories by id). An
            annotation whose category is not among them is an error.
        transforms, keep_empty, on_bad_image: see :class:`DetectionDataset`.

    Attributes:
        coco: the ``pycocotools.coco.COCO`` object, built once.
        category_id_to_label, label_to_category_id: the two directions of the class mapping.
    """

    def __init__(
        self,
        image_dir: str | os.PathLike,
        annotation_file: str | os.PathLike,
        *,
        classes: Sequence[str] | None = None,
        transforms: DetectionAugmentation | None = None,
        keep_empty: bool = True,
        on_bad_image: BadImagePolicy = "raise",
    ) -> None:
        self.image_dir = Path(image_dir)
        self.annotation_file = Path(annotation_file)
        if not self.annotation_file.is_file():
            raise DatasetError("COCO annotation file not found", self.annotation_file)
        if not self.image_dir.is_dir():
            raise DatasetError(
                f"COCO image folder not found (the images of {self.annotation_file.name}, which its file_name "
                "entries are relative to)",
                self.image_dir,
            )
        data = _load_json(self.annotation_file)
        images = _validated_images(_top_level_list(data, "images", self.annotation_file), self.annotation_file)
        raw_annotations = _top_level_list(data, "annotations", self.annotation_file)
        categories = _validated_categories(
            _top_level_list(data, "categories", self.annotation_file), self.annotation_file
        )
        self.category_id_to_label = _category_labels(categories, classes, self.annotation_file)
        self.label_to_category_id = {label: cat_id for cat_id, label in self.category_id_to_label.items()}
        id_to_name = {cat["id"]: cat["name"] for cat in categories}
        class_names = [id_to_name[self.label_to_category_id[k]] for k in range(1, len(self.label_to_category_id) + 1)]

        annotations = self._convert(images, raw_annotations, id_to_name)  # also validates them
        self.coco = COCO()
        self.coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress lines
            self.coco.createIndex()
        super().__init__(
            annotations, class_names, transforms=transforms, keep_empty=keep_empty, on_bad_image=on_bad_image
        )

    def _convert(
        self, images: list[dict[str, Any]], annotations: list[Any], id_to_name: dict[int, str]
    ) -> list[ImageAnnotation]:
        """All annotations to per-image arrays, vectorised (train2017 has 860k boxes)."""
        position = {image["id"]: i for i, image in enumerate(images)}
        rows = np.empty((len(annotations), 7), dtype=np.float64)  # image position, label, crowd, x, y, w, h
        for i, ann in enumerate(annotations):
            try:
                if "id" not in ann:  # pycocotools' index needs it
                    raise KeyError("id")
                label = self.category_id_to_label[ann["category_id"]]
                x, y, w, h = ann["bbox"]
                if type(x) not in _NUMBER or type(y) not in _NUMBER or type(w) not in _NUMBER or type(h) not in _NUMBER:
                    raise TypeError
                rows[i] = (position[ann["image_id"]], label, bool(ann.get("iscrowd", 0)), x, y, w, h)
            except (KeyError, TypeError, ValueError):
                raise self._annotation_error(i, ann, position, id_to_name) from None

        rows = rows[np.argsort(rows[:, 0], kind="stable")]
        image_position = rows[:, 0].astype(np.int64)
        heights = np.array([image["height"] for image in images], dtype=np.int64)[image_position]
        widths = np.array([image["width"] for image in images], dtype=np.int64)[image_position]
        xyxy = np.concatenate([rows[:, 3:5], rows[:, 3:5] + rows[:, 5:7]], axis=1)
        boxes, keep = clip_boxes(xyxy, heights, widths)
        self._warn_dropped(image_position[~keep], images)

        rows, boxes = rows[keep], boxes[keep]
        starts = np.searchsorted(rows[:, 0], np.arange(len(images) + 1))
        labels = rows[:, 1].astype(np.int64)
        crowd = rows[:, 2].astype(bool)
        image_dir = os.path.join(self.image_dir, "")
        result = []
        for i, image in enumerate(images):
            chunk = slice(starts[i], starts[i + 1])
            result.append(
                ImageAnnotation(
                    file_name=image_dir + image["file_name"],
                    image_id=image["id"],
                    height=image["height"],
                    width=image["width"],
                    boxes=boxes[chunk].copy(),
                    labels=labels[chunk].copy(),
                    difficult=np.zeros(chunk.stop - chunk.start, dtype=bool),
                    iscrowd=crowd[chunk].copy(),
                )
            )
        return result

    def _annotation_error(self, i: int, ann: Any, position: dict[int, int], id_to_name: dict[int, str]) -> DatasetError:
        field = f"annotations[{i}]"
        if not isinstance(ann, dict):
            return DatasetError(f"expected an object, got {type(ann).__name__}", self.annotation_file, field)
        for key in ("id", "image_id", "category_id", "bbox"):
            if key not in ann:
                return DatasetError("missing", self.annotation_file, f"{field}.{key}")
        if not isinstance(ann["image_id"], int) or ann["image_id"] not in position:
            return DatasetError(
                f"image id {_short(ann['image_id'])} is not in 'images'", self.annotation_file, f"{field}.image_id"
            )
        category = ann["category_id"]
        if not isinstance(category, int) or category not in id_to_name:
            return DatasetError(
                f"category id {_short(category)} is not in 'categories'", self.annotation_file, f"{field}.category_id"
            )
        if category not in self.category_id_to_label:
            names = [id_to_name[cat_id] for cat_id in self.category_id_to_label]
            return DatasetError(
                f"category {id_to_name[category]!r} (id {category}) is not one of the classes {names}",
                self.annotation_file,
                f"{field}.category_id",
            )
        return DatasetError(
            f"expected [x, y, width, height] (4 numbers), got {_short(ann['bbox'])}",
            self.annotation_file,
            f"{field}.bbox",
        )

    def _warn_dropped(self, image_positions: np.ndarray, images: list[dict[str, Any]]) -> None:
        if image_positions.size == 0:
            return
        affected = np.unique(image_positions)
        names = ", ".join(images[p]["file_name"] for p in affected[:5])
        more = f" and {affected.size - 5} more" if affected.size > 5 else ""
        warnings.warn(
            f"{self.annotation_file}: dropped {image_positions.size} boxes with no area inside the "
            f"image (after converting xywh to xyxy and clipping) in {affected.size} images: {names}{more}",
            DatasetWarning,
            stacklevel=3,
        )


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as error:
        raise DatasetError(f"malformed JSON: {error}", path) from None
    except UnicodeDecodeError as error:
        raise DatasetError(f"not UTF-8 text: {error}", path) from None


def _top_level_list(data: Any, key: str, path: Path) -> list[Any]:
    if not isinstance(data, dict):
        raise DatasetError(f"expected a JSON object at the top level, got {type(data).__name__}", path)
    if key not in data:
        raise DatasetError("missing (a COCO instances file has 'images', 'annotations' and 'categories')", path, key)
    if not isinstance(data[key], list):
        raise DatasetError(f"expected a list, got {type(data[key]).__name__}", path, key)
    return data[key]


def _validated_images(images: list[Any], path: Path) -> list[dict[str, Any]]:
    """The ``images`` entries sorted by id, each checked for ``id``, ``file_name``, ``height``, ``width``."""
    seen: set[int] = set()
    for i, image in enumerate(images):
        if not isinstance(image, dict):
            raise DatasetError(f"expected an object, got {type(image).__name__}", path, f"images[{i}]")
        for key, kind, expected in (
            ("id", int, "an integer"),
            ("file_name", str, "a string"),
            ("height", int, "a positive integer"),
            ("width", int, "a positive integer"),
        ):
            value = image.get(key)
            if not isinstance(value, kind) or (kind is int and key != "id" and value <= 0):
                raise DatasetError(f"expected {expected}, got {_short(value)}", path, f"images[{i}].{key}")
        if image["id"] in seen:
            raise DatasetError(f"duplicate image id {image['id']}", path, f"images[{i}].id")
        seen.add(image["id"])
    return sorted(images, key=lambda image: image["id"])


def _validated_categories(categories: list[Any], path: Path) -> list[dict[str, Any]]:
    seen: set[int] = set()
    for i, category in enumerate(categories):
        if not isinstance(category, dict):
            raise DatasetError(f"expected an object, got {type(category).__name__}", path, f"categories[{i}]")
        if not isinstance(category.get("id"), int):
            raise DatasetError(f"expected an integer, got {_short(category.get('id'))}", path, f"categories[{i}].id")
        if not isinstance(category.get("name"), str):
            raise DatasetError(f"expected a string, got {_short(category.get('name'))}", path, f"categories[{i}].name")
        if category["id"] in seen:
            raise DatasetError(f"duplicate category id {category['id']}", path, f"categories[{i}].id")
        seen.add(category["id"])
    if not categories:
        raise DatasetError("no categories", path, "categories")
    return categories


def _category_labels(categories: list[dict[str, Any]], classes: Sequence[str] | None, path: Path) -> dict[int, int]:
    """``{category_id: label}`` with labels ``1..K``: by increasing id, or in the order of ``classes``."""
    if classes is None:
        return {cat_id: label for label, cat_id in enumerate(sorted(cat["id"] for cat in categories), start=1)}
    by_name: dict[str, int] = {}
    for category in categories:
        if category["name"] in by_name:
            raise DatasetError(
                f"category name {category['name']!r} is used twice; cannot map classes by name", path, "categories"
            )
        by_name[category["name"]] = category["id"]
    missing = [name for name in classes if name not in by_name]
    if missing:
        raise DatasetError(
            f"classes {missing} are not categories of this file (it has {sorted(by_name)})", path, "categories"
        )
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes has duplicate names: {list(classes)}")
    return {by_name[name]: label for label, name in enumerate(classes, start=1)}


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
