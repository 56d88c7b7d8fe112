"""The behaviour every detection dataset shares, over a list of :class:`ImageAnnotation`."""

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from .annotations import ImageAnnotation
from .errors import DatasetWarning, ImageReadError
from .images import missing_or_empty_files, read_image
from .transforms import DetectionAugmentation

__all__ = ["DetectionDataset", "BadImagePolicy"]

BadImagePolicy = Literal["raise", "skip"]
_LISTED_PROBLEMS = 3  # bad files named in check_image_files' message


class DetectionDataset(Dataset):
    """Images with boxes, decoded on access; the ground truth is parsed once, up front.

    ``dataset[index]`` or ``dataset[(index, seed)]`` returns ``(image, target)``:

    - ``image``: ``float32 [3, H, W]`` RGB in ``[0, 1]`` at the original (or cropped) resolution;
    - ``target``: ``boxes`` ``float32 [N, 4]`` xyxy, ``labels`` ``int64 [N]`` in ``1..K``,
      ``index`` (position in this dataset) and ``image_id``. Crowd boxes are never targets;
      ``difficult`` boxes are not unless ``use_difficult``.

    With ``transforms``, the seeded form makes the augmentation a function of ``(index, seed)``
    only; without a seed one is drawn from torch's generator. With ``on_bad_image="skip"`` an
    unreadable image returns ``None`` (with a :class:`DatasetWarning`) instead of raising.

    Args:
        annotations: ground truth of every image, in dataset order.
        class_names: the K foreground class names; label ``k`` is ``class_names[k - 1]``.
        transforms: training augmentation, or None.
        keep_empty: keep images without training targets (False: drop them, for training).
        use_difficult: make ``difficult`` boxes training targets.
        on_bad_image: ``"raise"`` an :class:`ImageReadError`, or ``"skip"`` the image.
    """

    def __init__(
        self,
        annotations: Sequence[ImageAnnotation],
        class_names: Sequence[str],
        *,
        transforms: DetectionAugmentation | None = None,
        keep_empty: bool = True,
        use_difficult: bool = False,
        on_bad_image: BadImagePolicy = "raise",
    ) -> None:
        if on_bad_image not in ("raise", "skip"):
            raise ValueError(f"on_bad_image must be 'raise' or 'skip', got {on_bad_image!r}")
        self.class_names = tuple(class_names)
        self.transforms = transforms
        self.use_difficult = use_difficult
        self.on_bad_image = on_bad_image
        self._annotations = [ann for ann in annotations if keep_empty or ann.training_mask(use_difficult).any()]

    def __len__(self) -> int:
        return len(self._annotations)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, dict[str, Any]] | None:
        index, seed = key if isinstance(key, tuple) else (key, None)
        index = range(len(self))[index]
        ann = self._annotations[index]
        try:
            image = self._read_image(ann)
        except ImageReadError as error:
            if self.on_bad_image == "raise":
                raise
            warnings.warn(f"skipping unreadable image: {error}", DatasetWarning, stacklevel=2)
            return None
        keep = ann.training_mask(self.use_difficult)
        boxes, labels = ann.boxes[keep], ann.labels[keep]
        if self.transforms is not None:
            if seed is None:
                seed = int(torch.randint(2**31, ()).item())
            image, boxes, labels = self.transforms(image, boxes, labels, seed)
        target = {
            "boxes": torch.from_numpy(boxes.astype(np.float32, copy=False)).reshape(-1, 4),
            "labels": torch.from_numpy(labels.astype(np.int64, copy=False)).reshape(-1),
            "index": index,
            "image_id": ann.image_id,
        }
        tensor = torch.from_numpy(image).permute(2, 0, 1).contiguous().to(torch.float32).div_(255.0)
        return tensor, target

    def check_image_files(self) -> None:
        """Checks up front that every image file of the dataset exists and is not empty.

        One ``stat`` per file, no decoding (about a second for COCO's 118k images on a local disk,
        see docs/datasets.md), so that a missing image stops a run at its start, not hours in.

        Raises:
            ImageReadError: with ``on_bad_image="raise"``: one line naming the first bad files and
                their count. With ``"skip"`` the same line is a :class:`DatasetWarning` instead and
                those images are skipped when read.
        """
        problems = missing_or_empty_files(ann.file_name for ann in self._annotations)
        if not problems:
            return
        first, reason = problems[0]
        examples = ", ".join(f"{path} ({reason})" for path, reason in problems[1:_LISTED_PROBLEMS])
        more = f"; also {examples}" if examples else ""
        if len(problems) > _LISTED_PROBLEMS:
            more += f" and {len(problems) - _LISTED_PROBLEMS} more"
        message = (
            f"image file {reason} ({len(problems)} of the {len(self)} image files of this dataset are missing "
            f"or empty{more})"
        )
        if self.on_bad_image == "raise":
            raise ImageReadError(message + "; restore them, or set data.on_bad_image=skip to leave them out", first)
        warnings.warn(f"{first}: {message}; they will be skipped", DatasetWarning, stacklevel=2)

    def get_annotation(self, index: int) -> dict[str, Any]:
        """Ground truth of image ``index`` without decoding it.

        Returns:
            dict with read-only numpy ``boxes`` ``float32 [M, 4]`` (every object, crowd and difficult
            included), ``labels`` ``int64 [M]``, ``difficult`` ``bool [M]``, ``iscrowd`` ``bool [M]``,
            and ``height``, ``width``, ``file_name``, ``image_id``.
        """
        ann = self._annotations[index]
        return {
            "boxes": ann.boxes,
            "labels": ann.labels,
            "difficult": ann.difficult,
            "iscrowd": ann.iscrowd,
            "height": ann.height,
            "width": ann.width,
            "file_name": ann.file_name,
            "image_id": ann.image_id,
        }

    def get_image_size(self, index: int) -> tuple[int, int]:
        """``(height, width)`` of image ``index`` from the annotation, without decoding it."""
        ann = self._annotations[index]
        return ann.height, ann.width

    def _read_image(self, ann: ImageAnnotation) -> np.ndarray:
        image = read_image(ann.file_name)
        if image.shape[:2] != (ann.height, ann.width):
            raise ImageReadError(
                f"decoded image is {image.shape[0]}x{image.shape[1]} (HxW) but the annotation "
                f"says {ann.height}x{ann.width}",
                ann.file_name,
            )
        return image

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, {len(self.class_names)} classes)"
