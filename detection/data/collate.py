"""Batch collation for detection: images of different sizes stay a list."""

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["collate_detection"]


def collate_detection(
    samples: Sequence[tuple[torch.Tensor, dict[str, Any]] | None],
) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """``[(image, target), ...]`` -> ``([image, ...], [target, ...])``; ``None`` (a skipped image) is dropped."""
    kept = [sample for sample in samples if sample is not None]
    return [image for image, _ in kept], [target for _, target in kept]
