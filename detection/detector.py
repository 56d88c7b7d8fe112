"""Assembles torchvision's ``FasterRCNN`` from a registered backbone (trunk, RoI pooler, per-RoI head).

Defaults follow the paper's Faster R-CNN setting (He et al. 2016, appendix A; Ren et al. 2015;
py-faster-rcnn's test config); the shipped configs override them for detectron2-style recipes.
"""

from dataclasses import asdict, dataclass, fields
from typing import Any, Optional, Union

from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

from backbones import BackboneSpec, build_backbone

from .poolers import build_pooler


@dataclass(frozen=True)
class DetectorOptions:
    """Every Faster R-CNN setting the paper, detectron2's C4 config or py-faster-rcnn sets.

    Names match ``torchvision.models.detection.FasterRCNN`` arguments, except the anchor settings
    (one feature map, so flat tuples).
    """

    # Image transform (GeneralizedRCNNTransform): short side (a tuple picks one at random per
    # training image, for multi-scale training), cap on the long side.
    min_size: Union[int, tuple[int, ...]] = 600
    max_size: int = 1000
    image_mean: Optional[tuple[float, float, float]] = None  # None: ImageNet RGB mean, as torchvision
    image_std: Optional[tuple[float, float, float]] = None
    # Anchors: the paper's VOC setting; COCO adds 64, detectron2's C4 uses 32..512.
    anchor_sizes: tuple[int, ...] = (128, 256, 512)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    # RPN (Faster R-CNN paper): top-N before/after NMS 12000/2000 in training, 6000/300 at test.
    rpn_pre_nms_top_n_train: int = 12000
    rpn_post_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 6000
    rpn_post_nms_top_n_test: int = 300
    rpn_nms_thresh: float = 0.7
    rpn_fg_iou_thresh: float = 0.7
    rpn_bg_iou_thresh: float = 0.3
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    # RoI head: py-faster-rcnn samples 128 RoIs per image with 25% foreground.
    box_batch_size_per_image: int = 128
    box_positive_fraction: float = 0.25
    box_fg_iou_thresh: float = 0.5
    box_bg_iou_thresh: float = 0.5
    # Test-time post-processing (py-faster-rcnn: score 0.05, NMS 0.3, 100 detections per image).
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.3
    box_detections_per_img: int = 100

    def __post_init__(self) -> None:
        if not self.anchor_sizes or not self.aspect_ratios:
            raise ValueError("anchor_sizes and aspect_ratios must not be empty")
        if self.rpn_post_nms_top_n_train > self.rpn_pre_nms_top_n_train or self.rpn_post_nms_top_n_test > self.rpn_pre_nms_top_n_test:
            raise ValueError("RPN post-NMS top-N cannot exceed pre-NMS top-N")
        for name in ("rpn_positive_fraction", "box_positive_fraction", "rpn_nms_thresh", "box_nms_thresh", "box_score_thresh"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def build_detector(
    backbone: Union[str, BackboneSpec],
    num_classes: int,
    *,
    backbone_kwargs: Optional[dict[str, Any]] = None,
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
        raise TypeError(f"unknown detector option(s) {', '.join(unknown)}; valid options: {', '.join(DetectorOptions.field_names())}")
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
        raise ValueError(f"trunk.out_channels={trunk.out_channels} disagrees with BackboneSpec.out_channels={spec.out_channels}")
    trunk.out_channels = spec.out_channels  # FasterRCNN reads it from the module
    model = FasterRCNN(
        trunk,
        num_classes=None,
        rpn_anchor_generator=AnchorGenerator(sizes=(tuple(anchor_sizes),), aspect_ratios=(tuple(aspect_ratios),)),
        box_head=spec.head,
        box_predictor=FastRCNNPredictor(spec.head_out_channels, num_classes),
        **opts,
    )
    # FasterRCNN's constructor accepts only MultiScaleRoIAlign as box_roi_pool; RoIHeads itself calls
    # any module with the same signature, so the backbone's pooler replaces the default one.
    model.roi_heads.box_roi_pool = build_pooler(spec.pooler)
    return model
