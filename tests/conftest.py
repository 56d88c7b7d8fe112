"""Fixtures shared by the test modules."""

from pathlib import Path

import pytest
import torch
from detectron2_helpers import make_detectron2_r101, make_msra_resnet50
from torchvision.models import resnet

from detection.data import ShapesOptions, generate_shapes_dataset

TINY_SHAPES = ShapesOptions(num_train=8, num_val=4, seed=0, image_size=(128, 160))


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny generated shapes dataset (8 train + 4 val images of 128x160 px) in both formats.

    Use it as ``build_dataset("shapes", split, root=shapes_root, train=...)``; the VOC tree is
    ``shapes_root / "VOCdevkit"`` with splits ``shapes_train`` and ``shapes_val``.
    """
    return generate_shapes_dataset(tmp_path_factory.mktemp("shapes"), TINY_SHAPES)


@pytest.fixture(scope="session")
def msra_resnet50(tmp_path_factory: pytest.TempPathFactory) -> tuple[resnet.ResNet, Path]:
    """A random ResNet-50 'as MSRA' and its caffe2 file ``R-50.pkl`` (detectron2's ``ImageNetPretrained/MSRA``)."""
    path = tmp_path_factory.mktemp("msra") / "R-50.pkl"
    return make_msra_resnet50(path), path


@pytest.fixture(scope="session")
def detectron2_r101(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, torch.Tensor], Path]:
    """A random R101-C4 in detectron2's files (``model_final.pkl``, ``model.pth``, about 200 MB each, built in
    about 20 s) and its detections on the round-trip image; see ``detectron2_helpers.make_detectron2_r101``."""
    folder = tmp_path_factory.mktemp("detectron2")
    return make_detectron2_r101(folder), folder
