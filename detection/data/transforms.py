"""Training augmentation (albumentations) that keeps boxes and labels consistent.

Resizing and normalisation are not here: the model's ``GeneralizedRCNNTransform`` does both (and
multi-scale training is its ``min_size`` tuple), so a crop below is a zoom-in, not a resize.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np

# albumentations asks PyPI for a newer version on import; this package must work offline.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A  # noqa: E402

__all__ = ["AugmentationOptions", "DetectionAugmentation"]


@dataclass(frozen=True)
class AugmentationOptions:
    """What training augmentation does; the default is the paper's: horizontal flip only.

    Attributes:
        horizontal_flip: probability of a horizontal flip.
        color_jitter: probability of a photometric jitter with the four strengths below.
        brightness, contrast, saturation: jitter factors are drawn from ``[1 - s, 1 + s]``.
        hue: hue shift drawn from ``[-hue, hue]`` (fraction of the hue circle, at most 0.5).
        crop: probability of cropping a random margin from each border (a zoom-in).
        crop_max_fraction: the most of the width (height) cropped from each side, below 0.5.
        crop_min_visibility: a cropped box keeping less than this fraction of its area is dropped.
    """

    horizontal_flip: float = 0.5
    color_jitter: float = 0.0
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02
    crop: float = 0.0
    crop_max_fraction: float = 0.25
    crop_min_visibility: float = 0.3

    def __post_init__(self) -> None:
        for name in ("horizontal_flip", "color_jitter", "crop", "crop_min_visibility"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"AugmentationOptions.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"AugmentationOptions.{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"AugmentationOptions.hue must be in [0, 0.5], got {self.hue}")
        if not 0.0 <= self.crop_max_fraction < 0.5:
            raise ValueError(f"AugmentationOptions.crop_max_fraction must be in [0, 0.5), got {self.crop_max_fraction}")


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
