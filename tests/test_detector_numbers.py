"""Pinned numbers of a tiny detector: a change to the detector, its poolers or heads that moves its losses
or detections fails here at once.

The weights come from a seeded generator with a fixed rule per tensor, not from torch's or
torchvision's init functions, so that only the computation is pinned. The expected values were
generated on CPU with one thread (torch 2.14.1, torchvision 0.29.1). When a change is meant to move
them, print the new ones with ``python tests/test_detector_numbers.py`` and say why in the commit.
"""

import math

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from detection import build_detector

OPTIONS = {
    "min_size": 64,
    "max_size": 96,
    "anchor_sizes": (16, 32, 64),
    "rpn_pre_nms_top_n_train": 100,
    "rpn_post_nms_top_n_train": 40,
    "rpn_pre_nms_top_n_test": 50,
    "rpn_post_nms_top_n_test": 20,
    "rpn_batch_size_per_image": 32,
    "box_batch_size_per_image": 16,
    "box_score_thresh": 0.0,
    "box_detections_per_img": 5,
}

EXPECTED_LOSSES = {
    "loss_classifier": 1.044819,
    "loss_box_reg": 0.320248,
    "loss_objectness": 0.688739,
    "loss_rpn_box_reg": 0.141369,
}
EXPECTED_DETECTIONS = {
    "boxes": [
        [42.2304, 0.0, 63.3220, 64.0],
        [32.3815, 0.0, 48.4679, 44.9021],
        [63.4973, 0.0, 64.1372, 64.0],
        [61.1939, 0.0, 67.5745, 64.0],
        [20.0804, 56.9765, 58.1423, 64.0],
    ],
    "labels": [2, 2, 2, 2, 2],
    "scores": [0.961178, 0.954582, 0.951319, 0.950485, 0.942091],
}


def seeded_detector() -> nn.Module:
    """ResNet-18 C4 for 2 classes, trainable BatchNorm, with weights from ``deterministic_weights``."""
    model = build_detector("resnet18", num_classes=3, **OPTIONS)
    deterministic_weights(model)
    return model


@torch.no_grad()
def deterministic_weights(model: nn.Module, seed: int = 0) -> None:
    """Every float tensor, module by module, from one seeded generator: for norm layers ``1 + 0.1 |N|``
    scales and variances and ``0.1 N`` shifts and means; elsewhere weights of variance 1 / fan-in, ``0.1 N`` biases."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        is_norm = isinstance(module, (nn.BatchNorm2d, FrozenBatchNorm2d))
        tensors = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
        for name, tensor in tensors:
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float64)
            if is_norm:
                values = 1 + 0.1 * noise.abs() if name in ("weight", "running_var") else 0.1 * noise
            elif tensor.dim() > 1:
                values = noise / math.sqrt(tensor.numel() // tensor.shape[0])
            else:
                values = 0.1 * noise
            tensor.copy_(values)


def inputs() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    generator = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 64, 96, generator=generator), torch.rand(3, 64, 96, generator=generator)]
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 50.0, 40.0], [30.0, 20.0, 90.0, 60.0]]), "labels": torch.tensor([1, 2])},
        {"boxes": torch.tensor([[4.0, 8.0, 40.0, 56.0]]), "labels": torch.tensor([2])},
    ]
    return images, targets


def compute() -> tuple[dict[str, float], dict[str, list]]:
    """The first image's detections (eval mode) and the model's losses (train mode, sampling seeded)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one reduction order
    try:
        model = seeded_detector()
        images, targets = inputs()
        with torch.no_grad():
            detections = model.eval()(images)[0]
            torch.manual_seed(0)  # the RPN's and RoI heads' sampling of anchors and proposals
            losses = model.train()(images, targets)
    finally:
        torch.set_num_threads(threads)
    return (
        {name: float(value) for name, value in losses.items()},
        {key: value.tolist() for key, value in detections.items()},
    )


@pytest.fixture(scope="module")
def numbers() -> tuple[dict[str, float], dict[str, list]]:
    return compute()


def test_training_losses_are_pinned(numbers):
    losses, _ = numbers
    assert losses == pytest.approx(EXPECTED_LOSSES, rel=1e-4, abs=1e-6)


def test_detections_are_pinned(numbers):
    _, detections = numbers
    assert detections["labels"] == EXPECTED_DETECTIONS["labels"]
    assert detections["scores"] == pytest.approx(EXPECTED_DETECTIONS["scores"], rel=1e-4)
    for actual, expected in zip(detections["boxes"], EXPECTED_DETECTIONS["boxes"]):
        assert actual == pytest.approx(expected, rel=1e-4, abs=1e-3)


if __name__ == "__main__":
    losses, detections = compute()
    print("EXPECTED_LOSSES =", {name: round(value, 6) for name, value in losses.items()})
    print("EXPECTED_DETECTIONS =", detections)
