"""Single-feature-map RoI poolers with the call signature of torchvision's ``MultiScaleRoIAlign``.

torchvision's ``RoIHeads`` calls ``box_roi_pool(features, proposals, image_shapes)``. Its own
``MultiScaleRoIAlign`` always uses the legacy ``aligned=False`` RoIAlign and has no RoIPool
counterpart, so the C4 (RoIAlign, optionally aligned) and VGG-16 (RoIPool) detectors use these.

RoIAlign is separable: each output cell averages bilinear samples taken on a grid of rows times a grid of
columns, and a bilinear weight is a row weight times a column weight, so for one RoI the pooled map is
``A_y @ F @ A_x^T`` per channel, with ``A_y`` ``[p, h]`` and ``A_x`` ``[p, w]`` holding the averaged
interpolation weights of each axis. :func:`roi_align_by_matmul` computes it that way for bfloat16
inference on CPU, where torchvision's kernel has no bfloat16 path and the matrix products run on the
CPU's bfloat16 units.
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
        ``[sum n_i, C, p, p]`` in the features' dtype and memory format (channels_last from
        :func:`roi_align_by_matmul`). ``image_shapes`` is unused: the scale is fixed by the backbone.

        Box coordinates, sampling points and interpolation weights are float32 whatever the features'
        dtype (bfloat16 coordinates would move the sampling points by pixels). bfloat16 features on CPU
        without gradient (inference) are pooled by :func:`roi_align_by_matmul`, 5x faster than
        torchvision's float32 kernel and its conversions (docs/benchmarks.md); otherwise torchvision's
        kernel pools float32 features (the float32 results, detectron2's to the last bit) and the result
        is converted to the dtype and layout the head's convolutions take in one copy (torchvision's
        autocast rule for ``roi_align`` would cast it back, then the first channels_last convolution
        reorder it).
        """
        x = features[self.featmap_name]
        if not torch.jit.is_scripting() and x.dtype == torch.bfloat16 and x.device.type == "cpu":
            if not (torch.is_grad_enabled() and x.requires_grad):
                return roi_align_by_matmul(
                    x, boxes, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned
                )
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


def roi_align_by_matmul(
    features: Tensor,
    boxes: list[Tensor],
    output_size: int,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """torchvision's ``roi_align`` as two matrix products per RoI, in the features' dtype.

    The same sampling points, bilinear weights and border rules as torchvision's kernel (equal in float32
    up to summation order); the weights are float32 until they are cast to the features' dtype for the
    products, which accumulate in float32. Each RoI reads only the rows and columns of the feature map
    its samples touch.

    Args:
        features: ``[B, C, h, w]``.
        boxes: B tensors ``[n_i, 4]``, xyxy in image pixels.
        output_size, spatial_scale, sampling_ratio, aligned: as ``torchvision.ops.roi_align``.

    Returns:
        ``[sum n_i, C, p, p]`` in the features' dtype, channels_last.
    """
    channels = features.shape[1]
    pooled = features.new_empty((sum(len(b) for b in boxes), output_size, output_size, channels))
    first = 0
    for image_features, image_boxes in zip(features, boxes):
        _pool_image_by_matmul(
            image_features,
            image_boxes,
            pooled[first : first + len(image_boxes)],
            spatial_scale,
            sampling_ratio,
            aligned,
        )
        first += len(image_boxes)
    return pooled.permute(0, 3, 1, 2)


def _pool_image_by_matmul(
    features: Tensor, boxes: Tensor, out: Tensor, spatial_scale: float, sampling_ratio: int, aligned: bool
) -> None:
    """:func:`roi_align_by_matmul` for one image: ``features`` ``[C, h, w]``, ``boxes`` ``[n, 4]`` ->
    ``out`` ``[n, p, p, C]``, written in place."""
    channels, height, width = features.shape
    output_size = out.shape[1]
    rows = features.permute(1, 2, 0).contiguous().view(height, -1)  # no copy if channels_last
    cells = boxes.float() * spatial_scale - (0.5 if aligned else 0.0)
    extent = cells[:, 2:] - cells[:, :2]
    if not aligned:  # torchvision's legacy rule: RoIs at least one cell wide and high
        extent = extent.clamp(min=1.0)
    row_weights = axis_sampling_weights(cells[:, 1], extent[:, 1], output_size, height, sampling_ratio)
    column_weights = axis_sampling_weights(cells[:, 0], extent[:, 0], output_size, width, sampling_ratio)
    row_spans, column_spans = nonzero_span(row_weights), nonzero_span(column_weights)
    row_weights, column_weights = row_weights.to(features.dtype), column_weights.to(features.dtype)
    for index, ((top, bottom), (left, right)) in enumerate(zip(row_spans, column_spans)):
        if bottom <= top or right <= left:  # every sample outside the map, or an empty RoI
            out[index].zero_()
            continue
        window = rows[top:bottom, left * channels : right * channels]
        pooled_rows = (row_weights[index, :, top:bottom] @ window).view(output_size, right - left, channels)
        torch.matmul(column_weights[index, :, left:right], pooled_rows, out=out[index])


def axis_sampling_weights(start: Tensor, extent: Tensor, output_size: int, size: int, sampling_ratio: int) -> Tensor:
    """RoIAlign's averaged bilinear weights along one axis.

    Args:
        start, extent: ``[n]`` float32, the RoIs' first coordinate and length on this axis, in feature cells
            (after the ``aligned`` half-cell shift).
        output_size: bins ``p`` along the axis.
        size: the feature map's length ``s`` along the axis.
        sampling_ratio: samples per bin; 0: ``ceil(extent / p)``, per RoI.

    Returns:
        ``[n, p, s]`` float32: entry ``[i, b, c]`` is the weight of cell ``c`` in bin ``b`` of RoI ``i``,
        divided by the number of samples per bin on this axis. torchvision's border rules: a sample beyond
        one cell outside the map contributes nothing (and still counts), one within it reads the edge cell.
    """
    bin_size = extent / output_size
    if sampling_ratio > 0:
        samples = torch.full_like(extent, sampling_ratio)
    else:
        samples = torch.ceil(bin_size)
    most_samples = max(int(samples.max()), 1) if len(samples) else 1
    bins = torch.arange(output_size, dtype=torch.float32, device=start.device)[None, :, None]
    sample = torch.arange(most_samples, dtype=torch.float32, device=start.device)[None, None, :]
    start, bin_size, samples = start[:, None, None], bin_size[:, None, None], samples[:, None, None]
    position = start + bins * bin_size + (sample + 0.5) * bin_size / samples.clamp(min=1.0)
    counted = (sample < samples) & (position >= -1.0) & (position <= size)
    position = position.clamp(min=0.0)
    low = position.floor().clamp(max=size - 1)
    high = (low + 1).clamp(max=size - 1)
    high_weight = position - low  # past the last cell both weights land on it
    share = counted / samples.clamp(min=1.0)
    weights = torch.zeros(len(start), output_size, size, device=start.device)
    weights.scatter_add_(2, low.long(), (1.0 - high_weight) * share)
    weights.scatter_add_(2, high.long(), high_weight * share)
    return weights


def nonzero_span(weights: Tensor) -> list[tuple[int, int]]:
    """``[n, p, s]`` -> per RoI, the ``[first, last + 1)`` range of cells with a nonzero weight (empty: (0, 0))."""
    used = (weights != 0).any(dim=1)
    cells = torch.arange(used.shape[1], device=weights.device)
    last = torch.where(used, cells + 1, 0).amax(dim=1)
    first = torch.where(used, cells, used.shape[1]).amin(dim=1).minimum(last)
    return list(zip(first.tolist(), last.tolist()))


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
