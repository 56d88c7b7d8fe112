"""VGG-16 as in Faster R-CNN (Ren et al. 2015; py-faster-rcnn): conv1_1..conv5_3 shared, fc6/fc7 per RoI.

The trunk is torchvision's ``vgg16().features[:30]`` (the last max-pool removed, so stride 16 and 512
channels); the head is ``classifier[:6]`` (fc6, ReLU, dropout, fc7, ReLU, dropout) on 7x7 RoIPool
output. Attribute names and indices match torchvision's VGG, so state dict keys carry over unchanged.
"""

import torch
from torch import Tensor, nn
from torchvision.models import vgg

from .freezing import freeze_lower_stages, resolve_trainable_stages
from .registry import register_backbone
from .spec import BackboneSpec, PoolerSpec
from .weights import WeightsArg, is_pretrained, load_weights, read_weights

CONV5_3_RELU_END = 30  # features[:30] ends with the ReLU after conv5_3
FC7_DROPOUT_END = 6  # classifier[:6] ends with the dropout after fc7
ROI_POOL_SIZE = 7
# Conv blocks (features indices, pools included) in the order ``trainable_layers`` counts them.
VGG16_STAGES = tuple(
    tuple(f"trunk.features.{i}" for i in range(start, end))
    for start, end in ((0, 5), (5, 10), (10, 17), (17, 24), (24, CONV5_3_RELU_END))
)


class VGG16Trunk(nn.Module):
    """conv1_1..conv5_3 with ReLUs: ``[B, 3, H, W]`` -> ``[B, 512, H/16, W/16]``."""

    def __init__(self, model: vgg.VGG) -> None:
        super().__init__()
        self.features = model.features[:CONV5_3_RELU_END]
        self.out_channels = 512

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


class VGG16FcHead(nn.Module):
    """fc6 and fc7 run per RoI: ``[N, 512, 7, 7]`` -> flatten -> ``[N, 4096]``."""

    def __init__(self, model: vgg.VGG) -> None:
        super().__init__()
        self.classifier = model.classifier[:FC7_DROPOUT_END]
        self.out_channels = 4096

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(x, 1))


@register_backbone("vgg16")
def vgg16_backbone(weights: WeightsArg = None, trainable_layers: int | None = None) -> BackboneSpec:
    """VGG-16 backbone with RoIPool 7x7.

    Args:
        weights: ``None``, ``"imagenet"`` (torchvision's ``VGG16_Weights.IMAGENET1K_V1``) or a path to a
            torchvision VGG-16 state dict.
        trainable_layers: how many of the five conv blocks, counted from conv5, are trained (fc6/fc7
            always are). Default 3 with weights (conv1 and conv2 frozen, as py-faster-rcnn), 5 without.
    """
    model = vgg.vgg16(weights=None)
    loaded = read_weights(weights, vgg.VGG16_Weights.IMAGENET1K_V1)
    if loaded is not None and loaded.msra:
        raise ValueError(f"{loaded.source}: MSRA caffe2 weights are ResNet weights, not VGG-16's")
    load_weights(model, loaded, unused_prefixes=("classifier.6.",))
    trunk, head = VGG16Trunk(model), VGG16FcHead(model)
    trainable_stages = resolve_trainable_stages(
        trainable_layers, is_pretrained(weights), len(VGG16_STAGES), pretrained_default=3
    )
    freeze_lower_stages(nn.ModuleDict({"trunk": trunk}), VGG16_STAGES, trainable_stages)
    return BackboneSpec(
        trunk,
        trunk.out_channels,
        head,
        head.out_channels,
        PoolerSpec("roi_pool", ROI_POOL_SIZE, spatial_scale=1.0 / 16),
    )
