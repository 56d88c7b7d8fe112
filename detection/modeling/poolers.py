"""Single-feature-map RoI poolers with the call signature of torchvision's ``MultiScaleRoIAlign``.

torchvision's ``RoIHeads`` calls ``box_roi_pool(features, proposals, image_shapes)``. Its own
``MultiScaleRoIAlign`` always uses the legacy ``aligned=False`` RoIAlign and has no RoIPool
counterpart, so the C4 (RoIAlign, optionally aligned) and VGG-16 (RoIPool) detectors use these.
"""

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align, roi_pool

from backbones import PoolerSpec

FEATURE_MAP_NAME = "0"  # the key GeneralizedRCNN gives a backbone's single output tensor


class SingleLevelRoIAlign(nn.Module):
    """RoIAlign on one feature map.

    Args:
        output_size: side ``p`` of the pooled square.
        spatial_scale: ``1 / stride`` of the feature map.
        sampling_ratio: samples per bin side (0: adaptive).
        aligned: shift boxes by -0.5 pixel before sampling (detectron2's ROIAlignV2).
    """

    def __init__(self, output_size: int, spatial_scale: float, sampling_ratio: int, aligned: bool) -> None:
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.featmap_name = FEATURE_MAP_NAME

    def forward(self, features: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        """``features["0"]`` ``[B, C, h, w]``, ``boxes`` B tensors ``[n_i, 4]`` xyxy in image pixels ->
        ``[sum n_i, C, p, p]`` in the features' dtype and memory format. ``image_shapes`` is unused: the
        scale is fixed by the backbone.

        RoIAlign computes in float32 whatever the features' dtype (under bf16/fp16 autocast too: box
        coordinates in bfloat16 would move the sampling points by pixels), and the result is converted to
        the dtype and layout the head's convolutions take in one copy (torchvision's autocast rule for
        ``roi_align`` would cast it back, then the first channels_last convolution reorder it).
        """
        x = features[self.featmap_name]
        pooled = roi_align(
            x.float(),
            [box.float() for box in boxes],
            output_size=self.output_size,
            spatial_scale=self.spatial_scale,
            sampling_ratio=self.sampling_ratio,
            aligned=self.aligned,
        )
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        return pooled.to(dtype=x.dtype, memory_format=layout)


class SingleLevelRoIPool(nn.Module):
    """RoIPool (max pooling over quantised bins, Fast R-CNN) on one feature map.

    Args:
        output_size: side ``p`` of the pooled square.
        spatial_scale: ``1 / stride`` of the feature map.
    """

    def __init__(self, output_size: int, spatial_scale: float) -> None:
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.featmap_name = FEATURE_MAP_NAME

    def forward(self, features: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        """Same shapes as :meth:`SingleLevelRoIAlign.forward`."""
        return roi_pool(
            features[self.featmap_name], boxes, output_size=self.output_size, spatial_scale=self.spatial_scale
        )


def build_pooler(spec: PoolerSpec) -> nn.Module:
    """The pooler module a :class:`backbones.PoolerSpec` describes."""
    if spec.kind == "roi_align":
        return SingleLevelRoIAlign(spec.output_size, spec.spatial_scale, spec.sampling_ratio, spec.aligned)
    return SingleLevelRoIPool(spec.output_size, spec.spatial_scale)
