"""Per-image ground truth in the package's box convention, and the box clean-up shared by readers."""

from dataclasses import dataclass

import numpy as np

__all__ = ["ImageAnnotation", "clip_boxes"]


@dataclass(frozen=True)
class ImageAnnotation:
    """Ground truth of one image.

    Boxes are ``xyxy`` in absolute, 0-based, continuous pixel coordinates, already clipped to the
    image, with zero-area boxes removed. The arrays are read-only.

    Attributes:
        file_name: path of the image file.
        image_id: the COCO image id (VOC: the position in the dataset).
        height, width: image size from the annotation, in pixels.
        boxes: ``float32 [M, 4]``.
        labels: ``int64 [M]`` in ``1..K``.
        difficult: ``bool [M]`` (VOC's ``difficult`` flag; always False for COCO).
        iscrowd: ``bool [M]`` (COCO's ``iscrowd``; always False for VOC).
        image_name: VOC's image id (``"000005"``: the name in ``ImageSets/Main``, which the devkit's result
            files use), whatever the image file is called; empty for COCO.
    """

    file_name: str
    image_id: int
    height: int
    width: int
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    iscrowd: np.ndarray
    image_name: str = ""

    def __post_init__(self) -> None:
        for array in (self.boxes, self.labels, self.difficult, self.iscrowd):
            array.flags.writeable = False

    def training_mask(self, use_difficult: bool = False) -> np.ndarray:
        """``bool [M]``: the boxes that are training targets (never crowd; difficult only if asked)."""
        mask = ~self.iscrowd
        if not use_difficult:
            mask &= ~self.difficult
        return mask


def clip_boxes(boxes: np.ndarray, height: int | np.ndarray, width: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clip ``xyxy`` boxes to their image and flag the ones worth keeping.

    Args:
        boxes: ``float [M, 4]``, possibly reversed, out of the image or not finite.
        height, width: the image size, one for all boxes or one per box (``[M]``).

    Returns:
        ``(clipped, keep)``: ``float32 [M, 4]`` clipped boxes and ``bool [M]``, False for boxes
        that are not finite or have zero or negative width or height after clipping.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    upper = np.stack(np.broadcast_arrays(width, height, width, height), axis=-1)
    clipped = np.clip(boxes, 0, upper).astype(np.float32)
    keep = np.isfinite(boxes).all(axis=1) & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return clipped, keep
