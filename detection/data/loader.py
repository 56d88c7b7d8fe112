"""The iterable that training and evaluation consume: batches from a DataLoader, skipped images counted."""

import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from .errors import DatasetWarning

__all__ = ["DetectionDataLoader"]

Batch = tuple[list[torch.Tensor], list[dict[str, Any]]]


class DetectionDataLoader:
    """Yields ``(images, targets)`` batches of a :class:`~torch.utils.data.DataLoader`.

    Images that the dataset skipped as unreadable (``on_bad_image="skip"``) are missing from their
    batch and counted in :attr:`num_skipped`; a batch left with no image is not yielded. When the
    batches run out (evaluation), one warning reports the count.

    Attributes:
        dataset: the dataset.
        batch_sampler: the batches of dataset keys, in order (re-iterable, deterministic).
        data_loader: the underlying DataLoader.
        num_skipped: images skipped so far in the current iteration.
    """

    def __init__(self, data_loader: DataLoader, batch_sampler: Iterable[list[Any]]) -> None:
        self.data_loader = data_loader
        self.dataset = data_loader.dataset
        self.batch_sampler = batch_sampler
        self.num_skipped = 0

    def __iter__(self) -> Iterator[Batch]:
        self.num_skipped = 0
        # The DataLoader consumes its own iterator over the same deterministic batch sampler, so this
        # second one tells how many images each batch asked for.
        for keys, (images, targets) in zip(self.batch_sampler, self.data_loader):
            self.num_skipped += len(keys) - len(images)
            if images:
                yield images, targets
        if self.num_skipped:
            warnings.warn(f"{self.num_skipped} unreadable images were skipped", DatasetWarning, stacklevel=2)

    def __len__(self) -> int:
        """Number of batches (evaluation loaders only; a training loader is endless)."""
        return len(self.batch_sampler)
