"""The iterable that training and evaluation consume: batches from a DataLoader, skipped images counted,
and a user error of the dataset raised as itself whatever the number of workers."""

import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import UserError
from .collate import collate_detection
from .errors import DatasetWarning

__all__ = ["DetectionDataLoader"]

Batch = tuple[list[torch.Tensor], list[dict[str, Any]]]


class DetectionDataLoader:
    """Yields ``(images, targets)`` batches of ``dataset`` through a :class:`~torch.utils.data.DataLoader`.

    Images that the dataset skipped as unreadable (``on_bad_image="skip"``) are missing from their
    batch and counted in :attr:`num_skipped`; a batch left with no image is not yielded. When the
    batches run out (evaluation), one warning reports the count.

    A :class:`~detection.errors.UserError` that reading a sample raises (an unreadable image with
    ``on_bad_image="raise"``) is raised here as itself, with its one-line message, also when a worker
    process read the sample (a DataLoader would wrap it in a message holding the worker's traceback).

    Args:
        dataset: the dataset; ``dataset[key]`` for each key of the batches.
        batch_sampler: the batches of dataset keys, in order (re-iterable, deterministic).
        num_workers: DataLoader worker processes (0: read in this process).

    Attributes:
        dataset, batch_sampler: as given.
        data_loader: the underlying DataLoader.
        num_skipped: images skipped so far in the current iteration.
    """

    def __init__(self, dataset: Dataset, batch_sampler: Iterable[list[Any]], *, num_workers: int) -> None:
        self.dataset = dataset
        self.batch_sampler = batch_sampler
        self.data_loader = DataLoader(
            _UserErrorsAsSamples(dataset),
            batch_sampler=batch_sampler,
            num_workers=num_workers,
            collate_fn=_collate_or_failure,
        )
        self.num_skipped = 0

    def __iter__(self) -> Iterator[Batch]:
        self.num_skipped = 0
        # The DataLoader consumes its own iterator over the same deterministic batch sampler, so this
        # second one tells how many images each batch asked for.
        for keys, batch in zip(self.batch_sampler, self.data_loader):
            if isinstance(batch, _FailedSample):
                raise batch.error
            images, targets = batch
            self.num_skipped += len(keys) - len(images)
            if images:
                yield images, targets
        if self.num_skipped:
            warnings.warn(f"{self.num_skipped} unreadable images were skipped", DatasetWarning, stacklevel=2)

    def __len__(self) -> int:
        """Number of batches (evaluation loaders only; a training loader is endless)."""
        return len(self.batch_sampler)


class _FailedSample:
    """A sample whose reading raised a user error: the error travels to the main process as data."""

    def __init__(self, error: UserError) -> None:
        self.error = error


class _UserErrorsAsSamples(Dataset):
    """``dataset`` for the DataLoader, with a :class:`UserError` returned as a :class:`_FailedSample`."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Any) -> Any:
        try:
            return self.dataset[key]
        except UserError as error:
            return _FailedSample(error)


def _collate_or_failure(samples: Sequence[Any]) -> Batch | _FailedSample:
    """The batch of :func:`collate_detection`, or the first failed sample in it."""
    failed = next((sample for sample in samples if isinstance(sample, _FailedSample)), None)
    return failed if failed is not None else collate_detection(samples)
