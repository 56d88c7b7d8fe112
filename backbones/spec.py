"""What a backbone hands to the detector: a shared trunk, a per-RoI head and the pooler between them."""

from dataclasses import dataclass
from typing import Literal

from torch import nn

PoolerKind = Literal["roi_align", "roi_pool"]


@dataclass(frozen=True)
class PoolerSpec:
    """The RoI pooler a head expects on the trunk's single feature map.

    Args:
        kind: ``"roi_align"`` (bilinear sampling) or ``"roi_pool"`` (max pooling, Fast R-CNN).
        output_size: side of the square pooled map, e.g. 14 for ResNet C4, 7 for VGG-16.
        spatial_scale: feature-map pixels per image pixel, ``1 / stride``.
        sampling_ratio: RoIAlign samples per bin side; 0 means adaptive, as in detectron2.
        aligned: RoIAlign half-pixel correction (detectron2's ``ROIAlignV2``); ignored by RoIPool.
    """

    kind: PoolerKind
    output_size: int
    spatial_scale: float = 1.0 / 16
    sampling_ratio: int = 0
    aligned: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("roi_align", "roi_pool"):
            raise ValueError(f"PoolerSpec.kind must be 'roi_align' or 'roi_pool', got {self.kind!r}")
        if self.output_size < 1:
            raise ValueError(f"PoolerSpec.output_size must be >= 1, got {self.output_size}")
        if not 0 < self.spatial_scale <= 1:
            raise ValueError(f"PoolerSpec.spatial_scale must be in (0, 1], got {self.spatial_scale}")


ChannelOrder = Literal["RGB", "BGR"]


@dataclass(frozen=True)
class PixelConvention:
    """The input a trunk's weights were trained on. The detector takes RGB images in ``[0, 1]`` and its
    transform turns each into ``(reorder(x) * scale - mean) / std``, per channel.

    Args:
        mean, std: per channel, in ``channel_order`` and in the units of ``x * scale``.
        scale: 1 for ``[0, 1]`` pixels, 255 for 0..255 pixels.
        channel_order: the order conv1's input channels were trained in.
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: float = 1.0
    channel_order: ChannelOrder = "RGB"


# torchvision's ImageNet weights (and torchvision's detectors' default).
TORCHVISION_PIXELS = PixelConvention(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


@dataclass(frozen=True)
class BackboneSpec:
    """A built backbone, split the way Faster R-CNN C4 uses it.

    Args:
        trunk: image batch ``[B, 3, H, W]`` to one feature map ``[B, out_channels, H/s, W/s]``;
            shared by the RPN and the RoI head.
        out_channels: channels of the trunk's feature map.
        head: pooled RoI features ``[N, out_channels, p, p]`` to ``[N, head_out_channels]``.
        head_out_channels: width of the head's output, the input of the box predictor.
        pooler: how RoIs are pooled from the trunk's feature map for the head.
        pixels: the input the weights expect (the detector's default ``image_mean``, ``image_std``,
            ``pixel_scale`` and ``channel_order``).
    """

    trunk: nn.Module
    out_channels: int
    head: nn.Module
    head_out_channels: int
    pooler: PoolerSpec
    pixels: PixelConvention = TORCHVISION_PIXELS
