"""Training augmentation (albumentations) that keeps boxes and labels consistent.

Resizing and normalisation are not here: the model's ``GeneralizedRCNNTransform`` does both (and
multi-scale training is its ``min_size`` tuple), so a crop below is a zoom-in, not a resize.
"""

import os
import random
from types import ModuleType

import numpy as np

from ..config import AugmentationOptions

__all__ = ["AugmentationOptions", "DetectionAugmentation"]


class DetectionAugmentation:
    """Applies :class:`AugmentationOptions` to an image and its boxes, reproducibly from a seed.

    ``__call__(image, boxes, labels, seed)`` takes ``uint8 [H, W, 3]`` RGB, ``float32 [N, 4]`` xyxy
    boxes and ``int64 [N]`` labels and returns the same three, augmented (the image size may change
    with a crop). Boxes that an augmentation removes are dropped with their labels; ``N`` may become
    0, which is a valid negative sample.
    """

    def __init__(self, options: AugmentationOptions | None = None) -> None:
        self.options = options if options is not None else AugmentationOptions()
        opts = self.options
        A = _albumentations()
        transforms = []
        if opts.crop > 0:
            side = opts.crop_max_fraction
            transforms.append(A.RandomCropFromBorders(side, side, side, side, p=opts.crop))
        if opts.horizontal_flip > 0:
            transforms.append(A.HorizontalFlip(p=opts.horizontal_flip))
        if opts.color_jitter > 0:
            transforms.append(
                A.ColorJitter(
                    brightness=(1 - opts.brightness, 1 + opts.brightness),
                    contrast=(1 - opts.contrast, 1 + opts.contrast),
                    saturation=(1 - opts.saturation, 1 + opts.saturation),
                    hue=(-opts.hue, opts.hue),
                    p=opts.color_jitter,
                )
            )
        self._compose = A.Compose(
            transforms,
            bbox_params=A.BboxParams(
                format="pascal_voc",  # albumentations' pascal_voc is absolute xyxy, no +1: our convention
                label_fields=["labels"],
                min_visibility=opts.crop_min_visibility,
                clip=True,
            ),
        )

    def __call__(
        self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, seed: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # One shared generator for the whole pipeline: Compose.set_random_seed would give every
        # transform its own generator with the same seed, so their random draws would be equal.
        self._compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
        out = self._compose(image=image, bboxes=boxes.reshape(-1, 4), labels=labels.reshape(-1))
        boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
        labels = np.asarray(out["labels"], dtype=np.int64).reshape(-1)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return out["image"], boxes[keep], labels[keep]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options})"


def _albumentations() -> ModuleType:
    """albumentations, imported without its update check: on import it asks PyPI for a newer version,
    and this package must work offline."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations

    return albumentations
