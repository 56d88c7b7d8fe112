"""Assembles torchvision's ``FasterRCNN`` from a registered backbone (trunk, RoI pooler, per-RoI head).

Defaults follow the paper's Faster R-CNN setting (He et al. 2016, appendix A; Ren et al. 2015;
py-faster-rcnn's test config); the shipped configs override them for detectron2-style recipes.
"""

from dataclasses import asdict
from typing import Any

from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

from backbones import BackboneSpec, build_backbone

from .options import DetectorOptions
from .poolers import build_pooler


def build_detector(
    backbone: str | BackboneSpec,
    num_classes: int,
    *,
    backbone_kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> FasterRCNN:
    """Builds a torchvision ``FasterRCNN`` on a single stride-16 feature map.

    Args:
        backbone: a registered backbone name, or an already built :class:`backbones.BackboneSpec`.
        num_classes: number of classes including the background (label 0), as in torchvision.
        backbone_kwargs: arguments for the backbone builder (``weights``, ``trainable_layers``, ...);
            only with a backbone name.
        options: :class:`DetectorOptions` fields.
    """
    unknown = sorted(set(options) - set(DetectorOptions.field_names()))
    if unknown:
        raise TypeError(
            f"unknown detector option(s) {', '.join(unknown)}; "
            f"valid options: {', '.join(DetectorOptions.field_names())}"
        )
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
    if isinstance(backbone, str):
        spec = build_backbone(backbone, **(backbone_kwargs or {}))
    elif backbone_kwargs:
        raise ValueError("backbone_kwargs apply only when the backbone is given by name")
    else:
        spec = backbone
    opts = asdict(DetectorOptions(**options))
    anchor_sizes, aspect_ratios = opts.pop("anchor_sizes"), opts.pop("aspect_ratios")
    trunk = spec.trunk
    if getattr(trunk, "out_channels", spec.out_channels) != spec.out_channels:
        raise ValueError(
            f"trunk.out_channels={trunk.out_channels} disagrees with BackboneSpec.out_channels={spec.out_channels}"
        )
    model = FasterRCNN(
        _ChannelsDeclared(spec.out_channels),
        num_classes=None,
        rpn_anchor_generator=AnchorGenerator(sizes=(tuple(anchor_sizes),), aspect_ratios=(tuple(aspect_ratios),)),
        box_head=spec.head,
        box_predictor=FastRCNNPredictor(spec.head_out_channels, num_classes),
        **opts,
    )
    # FasterRCNN's constructor reads the trunk's width from `backbone.out_channels` only to size its RPN
    # head; the spec carries it, so the trunk itself goes in afterwards, unchanged (state-dict keys
    # `backbone.*` as they are). Likewise the constructor accepts only MultiScaleRoIAlign as
    # box_roi_pool, while RoIHeads calls any module with its signature: the backbone's pooler goes in.
    model.backbone = trunk
    model.roi_heads.box_roi_pool = build_pooler(spec.pooler)
    return model


class _ChannelsDeclared(nn.Module):
    """Stands in for the trunk in FasterRCNN's constructor, which needs only ``out_channels`` from it."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels
