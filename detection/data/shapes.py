"""A generated detection dataset ("shapes"), written as a real COCO json tree and a real VOCdevkit.

Each image has a plain, mildly noisy background and 0..4 filled shapes (rectangle, ellipse,
triangle) of random colour, 15-45% of the image's short side, overlapping a little. Boxes are the
tight extents of the visible pixels. Image ``i`` of a split depends only on the seed, the split,
``i`` and the image size, not on how many images are generated.

Layout under ``out_dir``::

    shapes.json                                   # what was generated (marks a complete dataset)
    coco/annotations/instances_{train,val}.json
    coco/{train,val}/{split}_{i:06d}.jpg
    VOCdevkit/VOCshapes/{Annotations,JPEGImages,ImageSets/Main/{train,val,trainval}.txt}
"""

import json
import logging
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..files import current_umask
from .errors import DatasetError

__all__ = [
    "SHAPES_CLASSES",
    "SHAPES_SPLITS",
    "ShapesOptions",
    "generate_shapes_dataset",
    "ensure_shapes_dataset",
    "replace_shapes_dataset",
]

_logger = logging.getLogger(__name__)

SHAPES_CLASSES = ("rectangle", "ellipse", "triangle")
SHAPES_MARKER = "shapes.json"
SHAPES_VOC_YEAR = "shapes"
SHAPES_SPLITS = ("train", "val")
_MAX_OVERLAP = 0.2  # of the smaller box's area
_MAX_OBJECTS = 4


@dataclass(frozen=True)
class ShapesOptions:
    """What :func:`generate_shapes_dataset` draws. ``image_size`` is ``(height, width)``."""

    num_train: int = 600
    num_val: int = 100
    seed: int = 0
    image_size: tuple[int, int] = (256, 320)
    empty_fraction: float = 0.1
    formats: tuple[str, ...] = ("coco", "voc")

    def __post_init__(self) -> None:
        if self.num_train < 0 or self.num_val < 0:
            raise ValueError(f"image counts must be >= 0, got train={self.num_train}, val={self.num_val}")
        if min(self.image_size) < 32:
            raise ValueError(f"image_size must be at least 32x32, got {self.image_size}")
        if not 0.0 <= self.empty_fraction <= 1.0:
            raise ValueError(f"empty_fraction must be in [0, 1], got {self.empty_fraction}")
        unknown = set(self.formats) - {"coco", "voc"}
        if unknown or not self.formats:
            raise ValueError(f"formats must be a non-empty subset of ('coco', 'voc'), got {self.formats}")


def generate_shapes_dataset(out_dir: str | os.PathLike, options: ShapesOptions | None = None) -> Path:
    """Draws the shapes dataset into ``out_dir`` (created if needed) and returns it as a ``Path``."""
    options = options if options is not None else ShapesOptions()
    out = Path(out_dir)
    writers = []
    if "coco" in options.formats:
        writers.append(_CocoWriter(out / "coco"))
    if "voc" in options.formats:
        writers.append(_VocWriter(out / "VOCdevkit" / f"VOC{SHAPES_VOC_YEAR}"))
    for split_index, (split, count) in enumerate(zip(SHAPES_SPLITS, (options.num_train, options.num_val))):
        for writer in writers:
            writer.begin_split(split)
        for i in range(count):
            rng = np.random.default_rng([options.seed, split_index, i])
            image, boxes, labels = _draw_image(rng, options.image_size, options.empty_fraction)
            encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
            for writer in writers:
                writer.add(f"{split}_{i:06d}", encoded.tobytes(), image.shape[:2], boxes, labels)
        for writer in writers:
            writer.end_split()
    (out / SHAPES_MARKER).write_text(json.dumps(asdict(options), indent=2) + "\n", encoding="utf-8")
    return out


def ensure_shapes_dataset(root: str | os.PathLike, options: ShapesOptions | None = None) -> Path:
    """The shapes dataset at ``root``, generated there first if ``root`` is missing or empty.

    An existing dataset is used as it is (whatever its counts), provided it has the COCO format.
    Generation goes to a temporary sibling folder renamed into place, so concurrent processes
    (e.g. distributed ranks) and interrupted runs never leave a half-written dataset.
    """
    root = Path(root)
    marker = root / SHAPES_MARKER
    if not marker.is_file():
        _logger.info("generating the shapes dataset into %s (first use)", root)
        _check_replaceable(root)
        tmp = _generate_beside(root, options)
        try:
            try:
                tmp.rename(root)
            except OSError:
                if not marker.is_file():  # not another process that won the race: a real error
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    formats = json.loads(marker.read_text(encoding="utf-8")).get("formats", [])
    if "coco" not in formats:
        raise DatasetError(
            f"this shapes dataset has no COCO format (it has {formats}); regenerate it with "
            "tools/make_shapes_dataset.py --format both",
            root,
        )
    return root


def replace_shapes_dataset(root: str | os.PathLike, options: ShapesOptions | None = None) -> Path:
    """Generates the shapes dataset at ``root``, replacing a shapes dataset there as a whole.

    The new dataset is generated beside ``root`` and swapped in by two renames, so ``root`` never
    mixes files of two generations (no stale images of a larger earlier dataset) and an interrupted
    run leaves the earlier dataset in place. A non-empty ``root`` that is not a generated shapes
    dataset is refused, never deleted.
    """
    root = Path(root)
    _check_replaceable(root)
    tmp = _generate_beside(root, options)
    previous = None
    try:
        if root.exists():
            previous = Path(tempfile.mkdtemp(prefix=f".{root.name}-old-", dir=root.parent))
            root.rename(previous / root.name)
        tmp.rename(root)
    except BaseException:
        if previous is not None and not root.exists():
            (previous / root.name).rename(root)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
    return root


def _check_replaceable(root: Path) -> None:
    """``root`` is missing, empty or a generated shapes dataset; anything else is not ours to replace."""
    if root.is_dir() and not (root / SHAPES_MARKER).is_file() and any(root.iterdir()):
        raise DatasetError(
            f"not a generated shapes dataset (no {SHAPES_MARKER}) and not empty, so it is left untouched; "
            "choose an empty or new folder",
            root,
        )
    if root.exists() and not root.is_dir():
        raise DatasetError("is a file; expected a folder for the shapes dataset", root)


def _generate_beside(root: Path, options: ShapesOptions | None) -> Path:
    """The dataset generated into a new hidden sibling of ``root``, readable as the umask allows."""
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes it private (0700); a shared dataset is not
        generate_shapes_dataset(tmp, options)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _draw_image(
    rng: np.random.Generator, image_size: tuple[int, int], empty_fraction: float = 0.1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image.

    Returns:
        ``uint8 [H, W, 3]`` BGR image, ``int64 [N, 4]`` xyxy boxes (0-based, exclusive ends: the
        visible pixels of object ``k`` span columns ``x1..x2-1``) and ``int64 [N]`` labels in 1..3.
    """
    height, width = image_size
    background = rng.integers(0, 256, size=3)
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = background
    instance_map = np.zeros((height, width), dtype=np.int32)
    placed: list[tuple[int, int, int, int]] = []
    labels: list[int] = []
    num_objects = 0 if rng.random() < empty_fraction else int(rng.integers(1, _MAX_OBJECTS + 1))
    short_side = min(height, width)
    for _ in range(num_objects * 10):  # rejection sampling of positions with little overlap
        if len(placed) == num_objects:
            break
        w, h = (int(rng.uniform(0.15, 0.45) * short_side) for _ in range(2))
        x1, y1 = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        box = (x1, y1, x1 + w, y1 + h)
        if any(_overlap(box, other) > _MAX_OVERLAP for other in placed):
            continue
        label = int(rng.integers(1, len(SHAPES_CLASSES) + 1))
        mask = np.zeros((height, width), dtype=np.uint8)
        _draw_shape(mask, label, box, rng)
        image[mask > 0] = _contrasting_colour(rng, background)
        instance_map[mask > 0] = len(placed) + 1
        placed.append(box)
        labels.append(label)

    noise = rng.normal(0.0, 6.0, size=image.shape)
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    boxes = np.zeros((len(placed), 4), dtype=np.int64)
    for k in range(len(placed)):
        ys, xs = np.nonzero(instance_map == k + 1)
        boxes[k] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return image, boxes, np.asarray(labels, dtype=np.int64)


def _draw_shape(mask: np.ndarray, label: int, box: tuple[int, int, int, int], rng: np.random.Generator) -> None:
    """Fills shape ``label`` spanning ``box`` (exclusive ends) into ``mask``."""
    x1, y1, x2, y2 = box
    right, bottom = x2 - 1, y2 - 1
    name = SHAPES_CLASSES[label - 1]
    if name == "rectangle":
        cv2.rectangle(mask, (x1, y1), (right, bottom), 255, thickness=-1)
    elif name == "ellipse":
        axes = ((right - x1) // 2, (bottom - y1) // 2)
        cv2.ellipse(mask, (x1 + axes[0], y1 + axes[1]), axes, 0, 0, 360, 255, thickness=-1)
    else:  # a triangle with one side on a box edge and the opposite vertex on the other edge
        side = int(rng.integers(4))
        if side < 2:
            apex_x = int(rng.integers(x1, right + 1))
            base_y, apex_y = (bottom, y1) if side == 0 else (y1, bottom)
            points = [(x1, base_y), (right, base_y), (apex_x, apex_y)]
        else:
            apex_y = int(rng.integers(y1, bottom + 1))
            base_x, apex_x = (x1, right) if side == 2 else (right, x1)
            points = [(base_x, y1), (base_x, bottom), (apex_x, apex_y)]
        cv2.fillPoly(mask, [np.array(points, dtype=np.int32)], 255)


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> tuple[int, int, int]:
    """A random colour whose mean absolute difference from ``background`` is at least 60 levels."""
    while True:
        colour = rng.integers(0, 256, size=3)
        if np.abs(colour - background).mean() >= 60:
            return tuple(int(c) for c in colour)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection area over the smaller box's area."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller


class _CocoWriter:
    """``root/annotations/instances_{split}.json`` and ``root/{split}/*.jpg``; category ids 1..3."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def begin_split(self, split: str) -> None:
        self.split = split
        (self.root / split).mkdir(parents=True, exist_ok=True)
        self.images: list[dict] = []
        self.annotations: list[dict] = []

    def add(self, stem: str, jpeg: bytes, size: tuple[int, int], boxes: np.ndarray, labels: np.ndarray) -> None:
        file_name = f"{stem}.jpg"
        (self.root / self.split / file_name).write_bytes(jpeg)
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": file_name, "height": size[0], "width": size[1]})
        for (x1, y1, x2, y2), label in zip(boxes.tolist(), labels.tolist()):
            self.annotations.append(
                {
                    "id": len(self.annotations) + 1,
                    "image_id": image_id,
                    "category_id": label,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )

    def end_split(self) -> None:
        data = {
            "info": {"description": "generated shapes dataset (detection.data.shapes)"},
            "licenses": [],
            "images": self.images,
            "annotations": self.annotations,
            "categories": [
                {"id": label, "name": name, "supercategory": "shape"}
                for label, name in enumerate(SHAPES_CLASSES, start=1)
            ],
        }
        path = self.root / "annotations" / f"instances_{self.split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data), encoding="utf-8")


class _VocWriter:
    """``VOC{year}/Annotations/*.xml``, ``JPEGImages/*.jpg``, ``ImageSets/Main/{split}.txt``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        self.all_names: list[str] = []

    def begin_split(self, split: str) -> None:
        self.split = split
        self.names: list[str] = []

    def add(self, stem: str, jpeg: bytes, size: tuple[int, int], boxes: np.ndarray, labels: np.ndarray) -> None:
        (self.root / "JPEGImages" / f"{stem}.jpg").write_bytes(jpeg)
        annotation = ET.Element("annotation")
        ET.SubElement(annotation, "folder").text = self.root.name
        ET.SubElement(annotation, "filename").text = f"{stem}.jpg"
        size_element = ET.SubElement(annotation, "size")
        for tag, value in (("width", size[1]), ("height", size[0]), ("depth", 3)):
            ET.SubElement(size_element, tag).text = str(value)
        ET.SubElement(annotation, "segmented").text = "0"
        for (x1, y1, x2, y2), label in zip(boxes.tolist(), labels.tolist()):
            obj = ET.SubElement(annotation, "object")
            ET.SubElement(obj, "name").text = SHAPES_CLASSES[label - 1]
            ET.SubElement(obj, "pose").text = "Unspecified"
            ET.SubElement(obj, "truncated").text = "0"
            ET.SubElement(obj, "difficult").text = "0"
            bndbox = ET.SubElement(obj, "bndbox")
            # VOC is 1-based inclusive: pixel columns x1..x2-1 (0-based) are xmin=x1+1, xmax=x2.
            for tag, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
                ET.SubElement(bndbox, tag).text = str(value)
        ET.indent(annotation)
        ET.ElementTree(annotation).write(self.root / "Annotations" / f"{stem}.xml", encoding="utf-8")
        self.names.append(stem)

    def end_split(self) -> None:
        self.all_names += self.names
        main = self.root / "ImageSets" / "Main"
        (main / f"{self.split}.txt").write_text("".join(f"{name}\n" for name in self.names), encoding="utf-8")
        (main / "trainval.txt").write_text("".join(f"{name}\n" for name in self.all_names), encoding="utf-8")
