"""Index samplers: the infinite training stream, aspect-ratio grouping, seeded keys, inference shards."""

import bisect
import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = [
    "InferenceSampler",
    "GroupedBatchSampler",
    "SeededBatchSampler",
    "TrainingSampler",
    "aspect_ratio_group_ids",
]


class _HasImageSizes(Protocol):
    def __len__(self) -> int: ...

    def get_image_size(self, index: int) -> tuple[int, int]: ...


def _check_shard(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")


class TrainingSampler(Sampler[int]):
    """Endless dataset indices: one random permutation after another, drawn from ``seed``.

    Every rank draws the same stream and keeps every ``world_size``-th index from position
    ``rank``, so the ranks see disjoint shards of each pass (as detectron2's ``TrainingSampler``).
    """

    def __init__(self, size: int, *, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if size <= 0:
            raise ValueError(f"TrainingSampler needs a non-empty dataset, got size={size}")
        _check_shard(rank, world_size)
        self.size = size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(self._global_stream(), self.rank, None, self.world_size)

    def _global_stream(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        while True:
            yield from torch.randperm(self.size, generator=generator).tolist()


class GroupedBatchSampler:
    """Batches of ``batch_size`` indices that all share a group id, from an endless index stream.

    As torchvision's detection references: each index goes to its group's buffer and a batch is
    emitted as soon as a buffer is full, so batches keep the stream's order approximately. The
    stream must be endless (:class:`TrainingSampler`); there are no partial batches.

    Args:
        sampler: the index stream.
        group_ids: ``group_ids[index]`` for every dataset index.
        batch_size: indices per batch.
    """

    def __init__(self, sampler: Iterable[int], group_ids: Sequence[int], batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sampler = sampler
        self.group_ids = group_ids
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[list[int]]:
        buffers: dict[int, list[int]] = defaultdict(list)
        for index in self.sampler:
            buffer = buffers[self.group_ids[index]]
            buffer.append(index)
            if len(buffer) == self.batch_size:
                yield buffer.copy()
                buffer.clear()


class SeededBatchSampler:
    """Turns batches of indices into batches of ``(index, sample_seed)`` dataset keys, from ``start``.

    The seed of slot ``j`` of batch ``b`` is a hash of ``(seed, rank, b, j)``: it does not depend on
    the number of data-loader workers nor on where iteration started, so skipping the first
    ``start`` batches (indices only, nothing decoded) resumes a run exactly.
    """

    def __init__(self, batches: Iterable[list[int]], *, seed: int, rank: int = 0, start: int = 0) -> None:
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self.batches = batches
        self.seed = seed
        self.rank = rank
        self.start = start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for number, batch in enumerate(itertools.islice(self.batches, self.start, None), start=self.start):
            yield [(index, self.sample_seed(number, slot)) for slot, index in enumerate(batch)]

    def sample_seed(self, batch_number: int, slot: int) -> int:
        """The augmentation seed of ``slot`` in batch ``batch_number`` (a 32-bit integer)."""
        return int(np.random.SeedSequence([self.seed, self.rank, batch_number, slot]).generate_state(1)[0])


class InferenceSampler(Sampler[int]):
    """This rank's contiguous, ordered share of ``range(size)``; the shards cover it exactly once."""

    def __init__(self, size: int, *, rank: int = 0, world_size: int = 1) -> None:
        _check_shard(rank, world_size)
        shard_sizes = [size // world_size + int(r < size % world_size) for r in range(world_size)]
        begin = sum(shard_sizes[:rank])
        self.indices = range(begin, begin + shard_sizes[rank])

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def aspect_ratio_group_ids(dataset: _HasImageSizes, group_factor: int = 3) -> list[int]:
    """Aspect-ratio bin of every image (width / height), as torchvision's detection references.

    ``group_factor = k`` uses the ``2k + 1`` bin edges ``2 ** linspace(-1, 1, 2k + 1)``; ``0`` splits
    at 1 only (portrait / landscape). Sizes come from :meth:`get_image_size`; nothing is decoded.
    """
    edges = (2.0 ** np.linspace(-1, 1, 2 * group_factor + 1)).tolist() if group_factor > 0 else [1.0]
    ids = []
    for index in range(len(dataset)):
        height, width = dataset.get_image_size(index)
        ids.append(bisect.bisect_right(edges, width / height))
    return ids
