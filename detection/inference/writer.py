"""Inference results on disk: one drawn picture per image, one JSON file for the whole run."""

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..files import write_json
from .drawing import draw_detections, write_picture
from .predictor import ImageDetections, ReadFailure

DETECTIONS_FILE = "detections.json"


class PredictionWriter:
    """Collects the results of a run into ``output_dir``.

    ``add`` writes ``<image stem>.jpg`` with the detections drawn (``_1``, ``_2``... when two inputs
    share a stem); ``close`` writes ``detections.json``::

        {"class_names": [...], ..., "images": [{"file", "height", "width", "boxes": [[x1, y1, x2, y2], ...],
         "scores", "labels", "classes", "picture"}], "failed": [{"file", "error"}]}

    Boxes are xyxy in the original image's pixels; ``labels`` are in ``1..K`` and ``classes`` their names.

    Args:
        metadata: extra top-level fields of the JSON (checkpoint, threshold, ...).
    """

    def __init__(self, output_dir: str | os.PathLike, class_names: Sequence[str], metadata: dict[str, Any]) -> None:
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.class_names = list(class_names)
        self.metadata = metadata
        self.images: list[dict[str, Any]] = []
        self.failed: list[dict[str, str]] = []
        self._taken: set[str] = set()

    def add(self, result: ImageDetections) -> Path:
        """Draws and saves the picture of ``result``; returns its path."""
        picture = self.output_dir / self._unique_name(result.path.stem)
        write_picture(
            picture, draw_detections(result.image, result.boxes, result.labels, self.class_names, result.scores)
        )
        height, width = result.image.shape[:2]
        self.images.append(
            {
                "file": os.fspath(result.path),
                "height": height,
                "width": width,
                "boxes": [[round(float(v), 2) for v in box] for box in result.boxes],
                "scores": [round(float(s), 4) for s in result.scores],
                "labels": [int(label) for label in result.labels],
                "classes": [self.class_names[int(label) - 1] for label in result.labels],
                "picture": picture.name,
            }
        )
        return picture

    def add_failure(self, failure: ReadFailure) -> None:
        self.failed.append({"file": os.fspath(failure.path), "error": failure.error})

    def close(self) -> Path:
        """Writes the JSON file and returns its path."""
        path = self.output_dir / DETECTIONS_FILE
        content = {**self.metadata, "class_names": self.class_names, "images": self.images, "failed": self.failed}
        write_json(path, content, indent=1)
        return path

    def _unique_name(self, stem: str) -> str:
        name, counter = f"{stem}.jpg", 0
        while name in self._taken:
            counter += 1
            name = f"{stem}_{counter}.jpg"
        self._taken.add(name)
        return name
