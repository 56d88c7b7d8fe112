"""Assembles torchvision's ``FasterRCNN`` from a registered backbone (trunk, RoI pooler, per-RoI head).

Defaults follow the paper's Faster R-CNN setting (He et al. 2016, appendix A; Ren et al. 2015;
py-faster-rcnn's test config); the shipped configs override them for detectron2-style recipes.
"""

from typing import Any

from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

from backbones import BackboneSpec, PixelConvention, build_backbone

from .anchors import StrideAnchorGenerator
from .options import DetectorOptions
from .poolers import build_pooler
from .roi_heads import C4BoxPredictor, C4RoIHeads
from .rpn import C4RegionProposalNetwork, C4RPNHead
from .transform import PixelTransform


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
    opts = DetectorOptions(**options)
    pixels = PixelConvention(
        mean=opts.image_mean or spec.pixels.mean,
        std=opts.image_std or spec.pixels.std,
        scale=opts.pixel_scale or spec.pixels.scale,
        channel_order=opts.channel_order or spec.pixels.channel_order,
    )
    transform = PixelTransform(opts.min_size, opts.max_size, pixels, opts.size_divisible, opts.resize)
    return _assemble(spec.trunk, build_rpn(spec, opts), build_roi_heads(spec, num_classes, opts), transform)


def build_rpn(spec: BackboneSpec, opts: DetectorOptions) -> C4RegionProposalNetwork:
    """The region proposal network on the trunk's feature map, with detectron2's anchors and selection."""
    stride = round(1.0 / spec.pooler.spatial_scale)
    anchors = StrideAnchorGenerator(opts.anchor_sizes, opts.aspect_ratios, stride)
    return C4RegionProposalNetwork(
        anchors,
        C4RPNHead(spec.out_channels, anchors.num_anchors_per_location()[0]),
        opts.rpn_fg_iou_thresh,
        opts.rpn_bg_iou_thresh,
        opts.rpn_batch_size_per_image,
        opts.rpn_positive_fraction,
        pre_nms_top_n={"training": opts.rpn_pre_nms_top_n_train, "testing": opts.rpn_pre_nms_top_n_test},
        post_nms_top_n={"training": opts.rpn_post_nms_top_n_train, "testing": opts.rpn_post_nms_top_n_test},
        nms_thresh=opts.rpn_nms_thresh,
        smooth_l1_beta=opts.rpn_smooth_l1_beta,
    )


def build_roi_heads(spec: BackboneSpec, num_classes: int, opts: DetectorOptions) -> C4RoIHeads:
    """The backbone's pooler and per-RoI head, then a class score and class-specific box deltas."""
    return C4RoIHeads(
        build_pooler(spec.pooler),
        spec.head,
        C4BoxPredictor(spec.head_out_channels, num_classes),
        opts.box_fg_iou_thresh,
        opts.box_bg_iou_thresh,
        opts.box_batch_size_per_image,
        opts.box_positive_fraction,
        bbox_reg_weights=None,  # (10, 10, 5, 5), as detectron2 and py-faster-rcnn
        score_thresh=opts.box_score_thresh,
        nms_thresh=opts.box_nms_thresh,
        detections_per_img=opts.box_detections_per_img,
        smooth_l1_beta=opts.box_smooth_l1_beta,
    )


def _assemble(trunk: nn.Module, rpn: nn.Module, roi_heads: nn.Module, transform: PixelTransform) -> FasterRCNN:
    """A torchvision ``FasterRCNN`` made of these parts. Its own constructor would build torchvision's
    RPN and RoI heads around them (and set ``trunk.out_channels``); ``GeneralizedRCNN``'s, which
    ``FasterRCNN`` ends with, takes the parts as they are."""
    model = FasterRCNN.__new__(FasterRCNN)
    GeneralizedRCNN.__init__(model, trunk, rpn, roi_heads, transform)
    return model


class _ChannelsDeclared(nn.Module):
    """Stands in for the trunk in FasterRCNN's constructor, which needs only ``out_channels`` from it."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels
