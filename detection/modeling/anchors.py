"""Anchors on the single stride-16 feature map, placed exactly as detectron2's ``DefaultAnchorGenerator``.

torchvision's ``AnchorGenerator`` differs in three ways that change which proposals come out:
it rounds the base anchors to integers (``[-23, -11, 23, 11]`` instead of ``[-22.627, -11.314,
22.627, 11.314]``), orders the anchors of a location ratio-major (detectron2: size-major, which is the
row order of a detectron2 RPN head), and derives the stride as image size // feature size, which is 15
instead of 16 for a 330 x 500 image that is not padded to a multiple of 32.
"""

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> Tensor:
    """The anchors of one location, centred on 0: ``[len(sizes) * len(aspect_ratios), 4]`` xyxy float32.

    Size-major: anchor ``i * len(aspect_ratios) + j`` has area ``sizes[i] ** 2`` and height / width
    ``aspect_ratios[j]``; no rounding.
    """
    anchors = []
    for size in sizes:
        for ratio in aspect_ratios:
            width = math.sqrt(size * size / ratio)
            height = ratio * width
            anchors.append([-width / 2.0, -height / 2.0, width / 2.0, height / 2.0])
    return torch.tensor(anchors, dtype=torch.float32)


def grid_anchors(cell: Tensor, grid_size: tuple[int, int], stride: int, offset: float = 0.0) -> Tensor:
    """``cell`` anchors shifted to every location of an ``H x W`` grid: ``[H * W * A, 4]``.

    Location-major (row by row, then the ``A`` anchors of the location), the order of the RPN head's
    outputs once flattened. Location ``(y, x)`` is centred on image pixel ``((x + offset) * stride,
    (y + offset) * stride)``.
    """
    height, width = grid_size
    device = cell.device
    # arange over the cell count, then scaled: the sizes stay symbolic when the model is traced for ONNX.
    shifts_x = torch.arange(width, dtype=torch.float32, device=device) * stride + offset * stride
    shifts_y = torch.arange(height, dtype=torch.float32, device=device) * stride + offset * stride
    shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
    shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
    shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
    return (shifts.view(-1, 1, 4) + cell.view(1, -1, 4)).reshape(-1, 4)


class StrideAnchorGenerator(nn.Module):
    """Anchors of a single feature map with a known stride; a drop-in for torchvision's ``AnchorGenerator``
    in ``FasterRCNN`` (same ``forward(image_list, feature_maps)`` and ``num_anchors_per_location``).

    Args:
        sizes: anchor sides in input pixels (the square root of the area), e.g. ``(32, 64, 128, 256, 512)``.
        aspect_ratios: height / width, e.g. ``(0.5, 1.0, 2.0)``.
        stride: input pixels per feature-map cell (16 for the C4 and VGG-16 trunks).
        offset: where in its cell an anchor is centred, in cells (detectron2's ``OFFSET``, default 0).

    Anchors are float32 whatever the feature map's dtype (under bf16 autocast too).
    """

    def __init__(self, sizes: Sequence[float], aspect_ratios: Sequence[float], stride: int, offset: float = 0.0):
        super().__init__()
        self.sizes = tuple(float(size) for size in sizes)
        self.aspect_ratios = tuple(float(ratio) for ratio in aspect_ratios)
        self.stride = stride
        self.offset = offset
        # Not a buffer: float32 whatever the model is cast to, and no state for initialisers to overwrite.
        self.cell_anchors = cell_anchors(self.sizes, self.aspect_ratios)

    def num_anchors_per_location(self) -> list[int]:
        return [len(self.sizes) * len(self.aspect_ratios)]

    def forward(self, image_list: ImageList, feature_maps: list[Tensor]) -> list[Tensor]:
        """One ``[H * W * A, 4]`` tensor per image, for the single feature map ``[B, C, H, W]``."""
        height, width = feature_maps[0].shape[-2:]
        cell = self.cell_anchors.to(feature_maps[0].device)
        anchors = grid_anchors(cell, (height, width), self.stride, self.offset)
        return [anchors for _ in range(len(image_list.image_sizes))]
