"""ResNet in the C4 layout of He et al. 2016 (appendix A): conv1..conv4 shared, conv5 per RoI.

The trunk is conv1, bn1, relu, maxpool, layer1..layer3 of a torchvision ResNet (stride 16); the head
is layer4, whose first block has stride 2 (a 14x14 RoI becomes 7x7), then global average pooling.
Attribute names match torchvision's ResNet, so state dict keys carry over unchanged.
"""

from collections.abc import Callable
from functools import partial
from typing import Literal

import torch
from torch import Tensor, nn
from torchvision.models import WeightsEnum, resnet

from .freezing import freeze_batchnorm, freeze_lower_stages, resolve_trainable_stages
from .registry import register_backbone
from .spec import TORCHVISION_PIXELS, BackboneSpec, PoolerSpec
from .weights import WeightsArg, is_pretrained, load_weights, read_weights

RES5_POOL_SIZE = 14
GROUP_NORM_GROUPS = 32  # detectron2's and Wu & He's (2018) default
Norm = Literal["bn", "frozen_bn", "gn"]
# Stages in the order torchvision's ``trainable_layers`` counts them (from the input).
RESNET_STAGES = (
    ("trunk.conv1", "trunk.bn1"),
    ("trunk.layer1",),
    ("trunk.layer2",),
    ("trunk.layer3",),
    ("head.layer4",),
)


class ResNetC4Trunk(nn.Module):
    """conv1..conv4 of a ResNet: ``[B, 3, H, W]`` -> ``[B, C4, H/16, W/16]`` (C4 = 1024 or 256)."""

    def __init__(self, model: resnet.ResNet) -> None:
        super().__init__()
        self.conv1 = model.conv1
        self.bn1 = model.bn1
        self.relu = model.relu
        self.maxpool = model.maxpool
        self.layer1 = model.layer1
        self.layer2 = model.layer2
        self.layer3 = model.layer3
        self.out_channels = _stage_channels(model.layer3)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer3(self.layer2(self.layer1(x)))


class Res5RoIHead(nn.Module):
    """conv5 run per RoI: ``[N, C4, 14, 14]`` -> layer4 -> ``[N, C5, 7, 7]`` -> mean -> ``[N, C5]``."""

    def __init__(self, layer4: nn.Sequential) -> None:
        super().__init__()
        self.layer4 = layer4
        self.out_channels = _stage_channels(layer4)

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.layer4(x), 1), 1)


def build_resnet_c4(
    constructor: Callable[..., resnet.ResNet],
    imagenet: WeightsEnum,
    weights: WeightsArg = None,
    trainable_layers: int | None = None,
    norm: Norm | None = None,
    aligned: bool = True,
    sampling_ratio: int = 0,
    stride_in_1x1: bool | None = None,
    zero_init_residual: bool = False,
) -> BackboneSpec:
    """Builds a C4 backbone from a torchvision ResNet constructor.

    Args:
        constructor: e.g. ``torchvision.models.resnet101``.
        imagenet: the weights enum loaded for ``weights="imagenet"``.
        weights: ``None``, ``"imagenet"``, a path to a torchvision ResNet state dict, or an MSRA caffe2
            file (detectron2's ``ImageNetPretrained/MSRA/R-50.pkl``, ``R-101.pkl``), which switches on
            ``stride_in_1x1`` and the MSRA input normalisation (``BackboneSpec.pixels``).
        trainable_layers: torchvision's meaning, counted from the top among
            (conv1, layer1, layer2, layer3, layer4); default 3 with weights (stem and res2 frozen, as
            the paper and detectron2's ``FREEZE_AT=2``), 5 without.
        norm: ``"frozen_bn"`` (``FrozenBatchNorm2d``, the default with weights), ``"bn"`` (trainable
            BatchNorm, the default without: a frozen BatchNorm at its random init is an identity and
            cannot train a deep net from scratch) or ``"gn"`` (GroupNorm with 32 groups, which trains
            from scratch with small batches far better than BatchNorm: Wu & He 2018; He et al.,
            "Rethinking ImageNet Pre-training", 2019). torchvision has no GroupNorm ImageNet weights.
        aligned: RoIAlign half-pixel correction (detectron2's default ``True``).
        sampling_ratio: RoIAlign samples per bin side (0: adaptive, detectron2's default).
        stride_in_1x1: put the stride 2 of the first block of res3, res4 and res5 in its 1x1 ``conv1``
            instead of the 3x3 ``conv2`` (detectron2's ``RESNETS.STRIDE_IN_1X1``: the MSRA weights were
            trained that way; torchvision's were not). ``None``: true for MSRA weights, else false.
            Bottleneck ResNets (50, 101, 152) only.
        zero_init_residual: start the scale of each residual block's last norm layer at 0, so that every
            block starts as the identity (Goyal et al. 2017; mmdetection's ResNet default). Only matters
            without weights: it lets a deep ResNet trained from scratch take a high learning rate early.
    """
    pretrained = is_pretrained(weights)
    norm = norm or ("frozen_bn" if pretrained else "bn")
    if norm not in ("bn", "frozen_bn", "gn"):
        raise ValueError(f"norm must be 'bn', 'frozen_bn' or 'gn', got {norm!r}")
    if norm == "gn" and weights == "imagenet":
        raise ValueError("norm='gn' has no torchvision ImageNet weights; use weights=None or a GroupNorm state dict")
    loaded = read_weights(weights, imagenet)
    msra = loaded is not None and loaded.msra
    if stride_in_1x1 is None:
        stride_in_1x1 = msra
    elif msra and not stride_in_1x1:
        raise ValueError(f"{loaded.source}: MSRA weights were trained with stride_in_1x1=True")
    norm_layer = partial(nn.GroupNorm, GROUP_NORM_GROUPS) if norm == "gn" else None
    model = constructor(weights=None, norm_layer=norm_layer, zero_init_residual=zero_init_residual)
    if stride_in_1x1:
        move_stride_to_1x1(model)
    load_weights(model, loaded, unused_prefixes=("fc.",))
    trunk, head = ResNetC4Trunk(model), Res5RoIHead(model.layer4)
    if norm == "frozen_bn":
        freeze_batchnorm(trunk)
        freeze_batchnorm(head)
    trainable_stages = resolve_trainable_stages(trainable_layers, pretrained, len(RESNET_STAGES), pretrained_default=3)
    freeze_lower_stages(nn.ModuleDict({"trunk": trunk, "head": head}), RESNET_STAGES, trainable_stages)
    pooler = PoolerSpec(
        "roi_align", RES5_POOL_SIZE, spatial_scale=1.0 / 16, sampling_ratio=sampling_ratio, aligned=aligned
    )
    pixels = loaded.pixels if loaded is not None else TORCHVISION_PIXELS
    return BackboneSpec(trunk, trunk.out_channels, head, head.out_channels, pooler, pixels)


def move_stride_to_1x1(model: resnet.ResNet) -> None:
    """Moves the stride 2 of the downsampling blocks (first block of layer2..layer4) from the 3x3
    ``conv2`` to the 1x1 ``conv1``, in place; the shortcut keeps its stride. Same parameters, other
    sampling: the 1x1 then sees every other pixel, as in the original ResNet (MSRA, caffe)."""
    for stage in (model.layer2, model.layer3, model.layer4):
        block = stage[0]
        if not isinstance(block, resnet.Bottleneck):
            raise ValueError("stride_in_1x1 applies to Bottleneck ResNets (50, 101, 152) only")
        block.conv1.stride, block.conv2.stride = block.conv2.stride, block.conv1.stride


def _stage_channels(stage: nn.Sequential) -> int:
    last_block = stage[-1]
    last_conv = last_block.conv3 if isinstance(last_block, resnet.Bottleneck) else last_block.conv2
    return last_conv.out_channels


@register_backbone("resnet18")
def resnet18_c4(**kwargs) -> BackboneSpec:
    """ResNet-18 C4: trunk 256 channels, head 512. See :func:`build_resnet_c4` for arguments."""
    return build_resnet_c4(resnet.resnet18, resnet.ResNet18_Weights.IMAGENET1K_V1, **kwargs)


@register_backbone("resnet34")
def resnet34_c4(**kwargs) -> BackboneSpec:
    """ResNet-34 C4: trunk 256 channels, head 512. See :func:`build_resnet_c4` for arguments."""
    return build_resnet_c4(resnet.resnet34, resnet.ResNet34_Weights.IMAGENET1K_V1, **kwargs)


@register_backbone("resnet50")
def resnet50_c4(**kwargs) -> BackboneSpec:
    """ResNet-50 C4: trunk 1024 channels, head 2048. See :func:`build_resnet_c4` for arguments."""
    return build_resnet_c4(resnet.resnet50, resnet.ResNet50_Weights.IMAGENET1K_V1, **kwargs)


@register_backbone("resnet101")
def resnet101_c4(**kwargs) -> BackboneSpec:
    """ResNet-101 C4, the paper's detector: trunk 1024 channels, head 2048. See :func:`build_resnet_c4`."""
    return build_resnet_c4(resnet.resnet101, resnet.ResNet101_Weights.IMAGENET1K_V1, **kwargs)


@register_backbone("resnet152")
def resnet152_c4(**kwargs) -> BackboneSpec:
    """ResNet-152 C4: trunk 1024 channels, head 2048. See :func:`build_resnet_c4` for arguments."""
    return build_resnet_c4(resnet.resnet152, resnet.ResNet152_Weights.IMAGENET1K_V1, **kwargs)
