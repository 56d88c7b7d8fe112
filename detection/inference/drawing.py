"""Drawing detections (or ground-truth boxes) on an image with OpenCV."""

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

# Colours that stay distinguishable on photographs (Tableau 10, RGB); label k takes entry (k - 1) mod 10.
PALETTE = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def label_colour(label: int) -> tuple[int, int, int]:
    """The RGB colour of foreground label ``label`` (1..K)."""
    return PALETTE[(int(label) - 1) % len(PALETTE)]


def contrasting_colour(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black for a light ``colour``, white for a dark one (by luma, ITU-R BT.601): the edge drawn around
    the class colour, so that a box stays visible on a background of its own colour, and the caption's text."""
    red, green, blue = colour
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > 140 else (255, 255, 255)


def draw_detections(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    scores: np.ndarray | None = None,
) -> np.ndarray:
    """Draws boxes with their class name (and score) on a copy of ``image``.

    Args:
        image: ``uint8`` ``[H, W, 3]`` RGB.
        boxes: ``[n, 4]`` xyxy in the image's pixels (numpy array or CPU tensor).
        labels: ``[n]`` in ``1..K``; label ``k`` is named ``class_names[k - 1]``.
        class_names: the K foreground class names.
        scores: ``[n]`` confidences, or None for ground truth (names only).

    Returns:
        A new ``uint8`` ``[H, W, 3]`` RGB array; ``image`` is left untouched. The most confident
        boxes are drawn last, on top, so their captions stay readable.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if len(labels) != len(boxes) or (scores is not None and len(scores) != len(boxes)):
        raise ValueError(f"boxes ({len(boxes)}), labels ({len(labels)}) and scores must have the same length")
    captions = [class_name(label, class_names) for label in labels]
    if scores is not None:
        captions = [f"{caption} {score:.2f}" for caption, score in zip(captions, scores)]
    order = np.argsort(scores, kind="stable") if scores is not None else np.arange(len(labels))
    return draw_boxes(image, boxes[order], [captions[i] for i in order], [label_colour(labels[i]) for i in order])


def draw_annotation(image: np.ndarray, annotation: dict[str, Any], class_names: Sequence[str]) -> np.ndarray:
    """Draws a dataset's ground truth (``get_annotation``'s dict: ``boxes``, ``labels`` and optional
    ``difficult`` / ``iscrowd`` flags, which are named in the caption) on a copy of ``image``."""
    labels = np.asarray(annotation["labels"], dtype=np.int64).reshape(-1)
    flags = {
        name: np.asarray(annotation.get(name, np.zeros(len(labels), bool)), dtype=bool).reshape(-1)
        for name in ("difficult", "iscrowd")
    }
    captions = [
        class_name(label, class_names) + "".join(f" ({name})" for name in flags if flags[name][i])
        for i, label in enumerate(labels)
    ]
    return draw_boxes(image, annotation["boxes"], captions, [label_colour(label) for label in labels])


def class_name(label: int, class_names: Sequence[str]) -> str:
    """``class_names[label - 1]``, or ``"class <label>"`` outside ``1..K``."""
    return class_names[label - 1] if 1 <= label <= len(class_names) else f"class {label}"


def draw_boxes(
    image: np.ndarray, boxes: np.ndarray, captions: Sequence[str], colours: Sequence[tuple[int, int, int]]
) -> np.ndarray:
    """Draws ``boxes`` ``[n, 4]`` xyxy, in order, each with its caption and RGB colour, on a copy of
    ``image`` (``uint8`` ``[H, W, 3]``); line width and font scale follow the image size.

    Each outline is the colour, at least 2 px wide, between two 1 px lines of its contrasting colour;
    the caption is written on a strip filled with the colour."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 [H, W, 3] RGB image, got {image.dtype} {list(image.shape)}")
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if not len(boxes) == len(captions) == len(colours):
        raise ValueError(
            f"boxes ({len(boxes)}), captions ({len(captions)}) and colours ({len(colours)}) must have the same length"
        )
    canvas = np.ascontiguousarray(image).copy()
    height, width = canvas.shape[:2]
    thickness = max(2, round(min(height, width) / 200))
    font_scale = max(0.35, min(height, width) / 1000)
    for box, caption, colour in zip(boxes, captions, colours):
        _draw_box(canvas, box, caption, colour, thickness, font_scale)
    return canvas


def write_picture(path: str | os.PathLike, image: np.ndarray) -> None:
    """Saves an RGB ``uint8`` ``[H, W, 3]`` image; the format follows the extension (e.g. ``.jpg``)."""
    ok, encoded = cv2.imencode(Path(path).suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"{path}: OpenCV cannot encode pictures of this type")
    encoded.tofile(os.fspath(path))  # unlike cv2.imwrite, works with any path encoding


def _draw_box(
    canvas: np.ndarray, box: np.ndarray, text: str, colour: tuple[int, int, int], thickness: int, font_scale: float
) -> None:
    """One outlined rectangle and its caption on a filled strip above it (inside the image when at the top edge)."""
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    edge = contrasting_colour(colour)
    cv2.rectangle(canvas, (x1, y1), (x2, y2), edge, thickness + 2)
    cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
    (text_width, text_height), baseline = cv2.getTextSize(text, FONT, font_scale, 1)
    strip_height = text_height + baseline + 2
    top = y1 - strip_height if y1 - strip_height >= 0 else y1
    cv2.rectangle(canvas, (x1, top), (x1 + text_width + 2, top + strip_height), colour, cv2.FILLED)
    cv2.rectangle(canvas, (x1, top), (x1 + text_width + 2, top + strip_height), edge, 1)
    cv2.putText(canvas, text, (x1 + 1, top + text_height + 1), FONT, font_scale, edge, 1, lineType=cv2.LINE_AA)
