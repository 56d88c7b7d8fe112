"""Batched inference over image files: read, detect, report the files that cannot be read."""

import contextlib
import glob
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.errors import ImageReadError
from ..data.images import IMAGE_EXTENSIONS, read_image
from ..errors import UserError
from ..modeling.outputs import Detections, detections_to_numpy, eval_mode
from ..precision import InferencePrecision, autocast_for


@dataclass
class ImageDetections:
    """Detections of one image, in its original pixels.

    ``image``: ``uint8`` ``[H, W, 3]`` RGB as read; ``boxes``: float32 ``[n, 4]`` xyxy;
    ``scores``: float32 ``[n]``; ``labels``: int64 ``[n]`` in ``1..K``.
    """

    path: Path
    image: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


@dataclass
class ReadFailure:
    """A file that could not be decoded, and why (one line)."""

    path: Path
    error: str


def find_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """The image files that ``inputs`` name, in order, each once.

    Each input is a file (taken whatever its extension), a folder (its files with an image extension,
    sorted, not recursive) or a glob pattern (its matches with an image extension; ``**`` recurses).

    Raises:
        UserError: an input is neither an existing file or folder nor a pattern that matches a file,
            or is a folder without image files.
    """
    found: dict[Path, None] = {}
    for item in inputs:
        path = Path(item)
        if path.is_file():
            candidates = [path]
        elif path.is_dir():
            candidates = sorted(p for p in path.iterdir() if p.is_file() and _is_image_name(p))
            if not candidates:
                raise UserError(
                    f"{item}: folder without image files (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}; "
                    "subfolders are not searched, use a pattern such as 'folder/**/*.jpg')"
                )
        else:
            candidates = sorted(
                Path(p)
                for p in glob.glob(os.fspath(item), recursive=True)
                if os.path.isfile(p) and _is_image_name(Path(p))
            )
            if not candidates:
                raise UserError(f"{item}: no such image file or folder, and no image matches it as a pattern")
        found.update(dict.fromkeys(candidates))
    return list(found)


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


class Predictor:
    """Runs a torchvision detector on batches of images given as files or arrays.

    The model is moved to ``device``; its mode and score threshold are changed only while it predicts.

    Args:
        model: a detector that takes a list of ``[3, H, W]`` float images in ``[0, 1]`` and returns,
            per image, ``boxes`` in that image's pixels, ``scores`` and ``labels`` (torchvision's
            ``FasterRCNN`` in eval mode: it resizes internally and maps boxes back).
        device: where the model runs.
        batch_size: images per forward pass.
        score_thresh: keep detections scoring at least this; None keeps the model's own threshold.
            Applied as the RoI heads' threshold, so that it also works below the model's default.
        precision: the autocast the model runs under (:func:`detection.precision.resolve_precision`);
            None: float32. The detections are float32 either way.
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "cpu",
        batch_size: int = 1,
        score_thresh: float | None = None,
        precision: InferencePrecision | None = None,
    ) -> None:
        if batch_size < 1:
            raise UserError(f"batch size must be >= 1, got {batch_size}")
        if score_thresh is not None and not 0.0 <= score_thresh <= 1.0:
            raise UserError(f"score threshold must be in [0, 1], got {score_thresh}")
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.batch_size = batch_size
        self.score_thresh = score_thresh
        self.precision = precision

    @torch.inference_mode()
    def predict_arrays(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detections for ``uint8`` ``[H, W, 3]`` RGB arrays, run as one batch.

        Returns:
            Per image, ``boxes`` float32 ``[n, 4]`` xyxy in the array's pixels, ``scores`` float32 ``[n]``,
            ``labels`` int64 ``[n]``, by descending score.
        """
        tensors = [torch.from_numpy(image).to(self.device).permute(2, 0, 1).float().div_(255.0) for image in images]
        with eval_mode(self.model), self._score_threshold(), autocast_for(self.precision):
            outputs = self.model(tensors)
        return [detections_to_numpy(output) for output in outputs]

    @contextlib.contextmanager
    def _score_threshold(self) -> Iterator[None]:
        if self.score_thresh is None:
            yield
            return
        roi_heads = self.model.roi_heads
        default, roi_heads.score_thresh = roi_heads.score_thresh, self.score_thresh
        try:
            yield
        finally:
            roi_heads.score_thresh = default

    def predict_files(self, paths: Iterable[Path]) -> Iterator[ImageDetections | ReadFailure]:
        """One result per path, in order: its detections, or a :class:`ReadFailure` if it cannot be read.

        Images are decoded one by one and run up to ``batch_size`` at a time, consecutive images of one size
        together: a batch pads its smaller images to the largest, which changes a detector's features near
        their borders, so an image's detections would depend on its neighbours (detectron2's predictor runs
        one image at a time).
        """
        pending: list[tuple[Path, np.ndarray | ReadFailure]] = []
        for path in paths:
            try:
                item: np.ndarray | ReadFailure = read_image(path)
            except ImageReadError as error:
                item = ReadFailure(path, str(error))
            sizes = {image.shape for _, image in pending if isinstance(image, np.ndarray)}
            if isinstance(item, np.ndarray) and sizes and item.shape not in sizes:
                yield from self._flush(pending)
                pending = []
            pending.append((path, item))
            if sum(isinstance(image, np.ndarray) for _, image in pending) == self.batch_size:
                yield from self._flush(pending)
                pending = []
        yield from self._flush(pending)

    def _flush(self, pending: list[tuple[Path, np.ndarray | ReadFailure]]) -> Iterator[ImageDetections | ReadFailure]:
        images = [item for _, item in pending if isinstance(item, np.ndarray)]
        outputs = iter(self.predict_arrays(images) if images else [])
        for path, item in pending:
            if isinstance(item, ReadFailure):
                yield item
            else:
                yield ImageDetections(path, item, **next(outputs))
