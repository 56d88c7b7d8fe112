"""BatchNorm folding and channels_last: same detections, BatchNorm gone, the original model untouched."""

import pytest
import torch
from inference_helpers import TINY_MODEL, randomize_batchnorm
from torch import nn
from torchvision.models.detection import fasterrcnn_resnet50_fpn
from torchvision.ops import FrozenBatchNorm2d

from detection import build_detector
from detection.modeling.fusion import fold_batchnorm, optimize_for_inference

BATCHNORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)
TINY_OPTIONS = {key: value for key, value in TINY_MODEL.items() if key != "backbone"}


def detect(model: nn.Module, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    with torch.inference_mode():
        return model(images)


def assert_same_detections(expected: list[dict[str, torch.Tensor]], actual: list[dict[str, torch.Tensor]]) -> None:
    assert len(expected) == len(actual)
    for a, b in zip(expected, actual):
        assert len(a["boxes"]) > 0
        torch.testing.assert_close(b["labels"], a["labels"])
        torch.testing.assert_close(b["boxes"], a["boxes"], atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(b["scores"], a["scores"], atol=1e-5, rtol=1e-4)


def count(model: nn.Module, kinds: tuple[type, ...]) -> int:
    return sum(isinstance(m, kinds) for m in model.modules())


@pytest.mark.parametrize("norm", ["bn", "frozen_bn"], ids=["eval_batchnorm", "frozen_batchnorm"])
def test_folded_resnet_c4_gives_the_same_detections(norm):
    torch.manual_seed(0)
    model = randomize_batchnorm(build_detector("resnet18", 3, backbone_kwargs={"norm": norm}, **TINY_OPTIONS)).eval()
    images = [torch.rand(3, 70, 110), torch.rand(3, 64, 64)]
    expected = detect(model, images)
    folded = optimize_for_inference(model, fold_bn=True)
    assert count(model, BATCHNORMS) == 20  # the original keeps its BatchNorm
    assert count(folded, BATCHNORMS) == 0
    assert_same_detections(expected, detect(folded, images))


def test_folded_channels_last_model_gives_the_same_detections_and_stays_scriptable():
    torch.manual_seed(0)
    model = randomize_batchnorm(build_detector("resnet18", 3, **TINY_OPTIONS)).eval()
    images = [torch.rand(3, 80, 96)]
    optimized = optimize_for_inference(model, fold_bn=True, channels_last=True)
    assert optimized.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert_same_detections(detect(model, images), detect(optimized, images))
    _, scripted = torch.jit.script(optimized)(images)
    assert_same_detections(detect(model, images), scripted)


def test_torchvision_fpn_reference_folds_too():
    torch.manual_seed(0)
    model = fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=3, min_size=64, max_size=96, box_score_thresh=0.0
    )
    model = randomize_batchnorm(model).eval()
    images = [torch.rand(3, 64, 96)]
    folded = optimize_for_inference(model)
    assert count(folded, BATCHNORMS) == 0
    assert_same_detections(detect(model, images), detect(folded, images))


class SharedConvOutput(nn.Module):
    """conv -> bn, but the conv's output is also used directly: folding would change that branch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y + self.bn2(self.conv2(y))


def test_only_batchnorms_that_alone_consume_a_conv_are_folded():
    module = randomize_batchnorm(SharedConvOutput()).eval()
    x = torch.rand(2, 3, 8, 8)
    expected = module(x)
    assert fold_batchnorm(module) == 1
    assert isinstance(module.bn, nn.BatchNorm2d) and isinstance(module.bn2, nn.Identity)
    assert module.conv2.bias is not None  # a bias-free conv gains the BatchNorm's shift
    torch.testing.assert_close(module(x), expected)


def test_batchnorm_in_training_mode_is_not_folded():
    module = randomize_batchnorm(SharedConvOutput()).train()
    assert fold_batchnorm(module) == 0
