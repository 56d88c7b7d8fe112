"""Fixtures shared by the test modules."""

from pathlib import Path

import pytest

from detection.data import ShapesOptions, generate_shapes_dataset

TINY_SHAPES = ShapesOptions(num_train=8, num_val=4, seed=0, image_size=(128, 160))


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny generated shapes dataset (8 train + 4 val images of 128x160 px) in both formats.

    Use it as ``build_dataset("shapes", split, root=shapes_root, train=...)``; the VOC tree is
    ``shapes_root / "VOCdevkit"`` with splits ``shapes_train`` and ``shapes_val``.
    """
    return generate_shapes_dataset(tmp_path_factory.mktemp("shapes"), TINY_SHAPES)
