"""Every Faster R-CNN setting of the detector, with the paper's defaults; imports no torch, so the config
schema can describe the model without loading it."""

from dataclasses import dataclass, fields
from typing import Literal


@dataclass(frozen=True)
class DetectorOptions:
    """Every Faster R-CNN setting the paper, detectron2's C4 config or py-faster-rcnn sets.

    Names match ``torchvision.models.detection.FasterRCNN`` arguments, except the anchor settings
    (one feature map, so flat tuples).
    """

    # Image transform (GeneralizedRCNNTransform): short side (a tuple picks one at random per
    # training image, for multi-scale training), cap on the long side.
    min_size: int | tuple[int, ...] = 600
    max_size: int = 1000
    # How: "torchvision" (GeneralizedRCNNTransform's: the float image, bilinear, size floored) or
    # "detectron2" (ResizeShortestEdge: the 8-bit image with PIL's bilinear filter, size rounded half up;
    # what detectron2's models were trained and evaluated with). See docs/design.md.
    resize: Literal["torchvision", "detectron2"] = "torchvision"
    # What the RGB [0, 1] input becomes before the trunk: (reorder(x) * pixel_scale - image_mean) / image_std,
    # with mean and std in channel_order. None: what the backbone's weights expect (torchvision's ImageNet
    # mean and std on RGB [0, 1]; the MSRA weights' BGR 0..255 minus a mean, std 1).
    image_mean: tuple[float, float, float] | None = None
    image_std: tuple[float, float, float] | None = None
    pixel_scale: float | None = None
    channel_order: Literal["RGB", "BGR"] | None = None
    # Batches are padded to a multiple of this (torchvision: 32). 1: only to the largest image, as
    # detectron2's C4 models (size_divisibility 0).
    size_divisible: int = 32
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
    # Box regression losses: smooth L1 with this beta (0: L1). torchvision's 1/9 by default; detectron2's C4
    # configs use 0 (MODEL.RPN.SMOOTH_L1_BETA, MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA).
    rpn_smooth_l1_beta: float = 1.0 / 9
    # RoI head: py-faster-rcnn samples 128 RoIs per image with 25% foreground.
    box_batch_size_per_image: int = 128
    box_positive_fraction: float = 0.25
    box_fg_iou_thresh: float = 0.5
    box_bg_iou_thresh: float = 0.5
    box_smooth_l1_beta: float = 1.0 / 9
    # Test-time post-processing (py-faster-rcnn: score 0.05, NMS 0.3, 100 detections per image).
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.3
    box_detections_per_img: int = 100

    def __post_init__(self) -> None:
        if self.size_divisible < 1:
            raise ValueError(f"size_divisible must be >= 1 (1: no padding), got {self.size_divisible}")
        if not self.anchor_sizes or not self.aspect_ratios:
            raise ValueError("anchor_sizes and aspect_ratios must not be empty")
        if (
            self.rpn_post_nms_top_n_train > self.rpn_pre_nms_top_n_train
            or self.rpn_post_nms_top_n_test > self.rpn_pre_nms_top_n_test
        ):
            raise ValueError("RPN post-NMS top-N cannot exceed pre-NMS top-N")
        for name in ("rpn_smooth_l1_beta", "box_smooth_l1_beta"):
            if getattr(self, name) < 0.0:
                raise ValueError(f"{name} must be >= 0 (0: L1 loss), got {getattr(self, name)}")
        for name in (
            "rpn_positive_fraction",
            "box_positive_fraction",
            "rpn_nms_thresh",
            "box_nms_thresh",
            "box_score_thresh",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


# The options only inference reads: they change neither training nor what the weights mean, so a
# resumed run may change them (every other option changes the network or its training targets).
TEST_TIME_OPTIONS = (
    "rpn_pre_nms_top_n_test",
    "rpn_post_nms_top_n_test",
    "box_score_thresh",
    "box_nms_thresh",
    "box_detections_per_img",
)
