"""torchvision's detection transform, feeding the trunk the pixels its weights were trained on, resized as
torchvision resizes (the float image, size floored) or as detectron2 does (the 8-bit image with PIL's
bilinear filter, size rounded: ``ResizeShortestEdge``).

detectron2's resize, written from its definition (``data/transforms/augmentation_impl.py``,
``transform.py``) and PIL's (``libImaging/Resample.c``):

- size: ``scale = short / min(h, w)``; when the long side ``scale * max(h, w)`` exceeds ``max_size`` the
  scale becomes ``max_size / max(newh, neww)`` of that; each side is then rounded half up, ``int(x + 0.5)``;
- pixels: PIL's separable resampling of the 8-bit image, horizontal pass first: each output sample is a
  triangle filter centred on ``(i + 0.5) * scale`` and stretched by the scale when shrinking (PIL antialiases),
  its weights normalised, rounded to 22-bit fixed point, and the sum rounded to 8 bits after each pass;
- boxes: scaled by the ratio of the sizes; detections back to the input's pixels by the same ratio, clipped to
  the input and the empty ones dropped (``detector_postprocess``).

torch's own ``interpolate(uint8, mode="bilinear", antialias=True)`` keeps fewer bits in its weights and
differs from PIL by 1 or 2 in up to 8% of the values (docs/design.md), so the resampling is written out here:
integer arithmetic, exact on every device (a sum of 8-bit values times 22-bit weights that add up to about
2**22 stays below 2**31 in int32).
"""

import math

import torch
from torch import Tensor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes

from backbones import PixelConvention

# PIL's fixed-point weights for 8-bit images: 32 - 8 - 2 bits (libImaging/Resample.c, PRECISION_BITS).
PIL_PRECISION_BITS = 22


def shortest_edge_size(height: int, width: int, short_edge: int, max_size: int) -> tuple[int, int]:
    """detectron2's ``ResizeShortestEdge`` output ``(height, width)``: the short side to ``short_edge``, the long
    side at most ``max_size``, both rounded half up (in double precision, as detectron2's Python computes it)."""
    size = float(short_edge)
    scale = size / min(height, width)
    if height < width:
        new_height, new_width = size, scale * width
    else:
        new_height, new_width = scale * height, size
    if max(new_height, new_width) > max_size:
        scale = max_size * 1.0 / max(new_height, new_width)
        new_height = new_height * scale
        new_width = new_width * scale
    return int(new_height + 0.5), int(new_width + 0.5)


def pil_bilinear_taps(
    in_size: int, out_size: int, device: torch.device, precision_bits: int = PIL_PRECISION_BITS
) -> tuple[Tensor, Tensor]:
    """PIL's bilinear resampling of one axis from ``in_size`` to ``out_size`` samples: the source index
    ``[out_size, K]`` (int64) and the fixed-point weight ``[out_size, K]`` (int32, ``precision_bits``) of each tap.

    Computed in float64 with PIL's operations in PIL's order, so that every weight rounds as PIL's does.
    Taps past a sample's window have weight 0 (their index is clamped into the image).
    """
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)  # shrinking stretches the filter: antialiasing
    support = filter_scale  # the triangle's half-width is 1 input pixel, times the stretch
    taps = int(math.ceil(support)) * 2 + 1
    center = (torch.arange(out_size, dtype=torch.float64, device=device) + 0.5) * scale
    first = torch.trunc(center - support + 0.5).clamp(min=0.0).to(torch.int64)
    count = torch.trunc(center + support + 0.5).clamp(max=float(in_size)).to(torch.int64) - first
    offsets = torch.arange(taps, device=device)
    index = first[:, None] + offsets
    distance = ((index.to(torch.float64) - center[:, None] + 0.5) * (1.0 / filter_scale)).abs()
    inside = (offsets[None, :] < count[:, None]) & (distance < 1.0)
    weight = torch.where(inside, 1.0 - distance, torch.zeros_like(distance))
    total = weight[:, 0]
    for tap in range(1, taps):  # left to right, as PIL sums them
        total = total + weight[:, tap]
    weight = torch.where(total[:, None] != 0.0, weight / total[:, None], weight)
    fixed = (0.5 + weight * float(1 << precision_bits)).to(torch.int32)  # all weights are >= 0
    return index.clamp(max=in_size - 1), fixed


def _resample_rows(pixels: Tensor, out_size: int, precision_bits: int = PIL_PRECISION_BITS) -> Tensor:
    """One PIL pass over the 8-bit values ``pixels`` ``[C, H, W]`` (int32, contiguous) along ``H``: each output row
    a weighted sum of whole input rows (contiguous gathers), rounded back to 8 bits."""
    index, weight = pil_bilinear_taps(pixels.shape[-2], out_size, pixels.device, precision_bits)
    index, weight = index.t().contiguous(), weight.t().contiguous()  # [taps, out_size]
    shape = list(pixels.shape)
    shape[-2] = out_size
    total = torch.full(shape, 1 << (precision_bits - 1), dtype=torch.int32, device=pixels.device)
    for tap in range(index.shape[0]):
        total.add_(pixels.index_select(-2, index[tap]).mul_(weight[tap].unsqueeze(-1)))
    return (total >> precision_bits).clamp_(0, 255)  # the sums are >= 0: the shift is PIL's floor


def resize_like_pil(image: Tensor, size: tuple[int, int]) -> Tensor:
    """``image`` ``[C, H, W]`` (float in ``[0, 1]``) resized to ``size`` ``(h, w)`` with the pixels PIL's
    ``Image.resize(..., BILINEAR)`` gives its 8-bit version: the values are rounded to 8 bits first (exact for
    an image read from an 8-bit file), and the result is 8-bit values / 255 in ``image``'s dtype.

    The horizontal pass comes first, as in every PIL up to version 12 (which detectron2's models were trained and
    evaluated with); PIL 13 starts with the vertical one for some reductions of tall images."""
    pixels = (image * 255.0).round().clamp(0, 255).to(torch.int32)
    if size[1] != image.shape[-1]:  # as PIL, a pass only along an axis whose size changes
        columns = _resample_rows(pixels.transpose(-1, -2).contiguous(), size[1])
        pixels = columns.transpose(-1, -2).contiguous()
    if size[0] != image.shape[-2]:
        pixels = _resample_rows(pixels, size[0])
    return pixels.to(image.dtype) / 255.0


def detector_postprocess(
    detections: dict[str, Tensor], image_size: tuple[int, int], original_size: tuple[int, int]
) -> dict[str, Tensor]:
    """detectron2's ``detector_postprocess``: boxes from the resized ``image_size`` to ``original_size`` by the
    ratio of the sizes, clipped to it; detections whose box became empty are dropped (every entry)."""
    scale_y = original_size[0] / image_size[0]
    scale_x = original_size[1] / image_size[1]
    boxes = detections["boxes"]
    x1 = (boxes[:, 0] * scale_x).clamp(min=0.0, max=float(original_size[1]))
    y1 = (boxes[:, 1] * scale_y).clamp(min=0.0, max=float(original_size[0]))
    x2 = (boxes[:, 2] * scale_x).clamp(min=0.0, max=float(original_size[1]))
    y2 = (boxes[:, 3] * scale_y).clamp(min=0.0, max=float(original_size[0]))
    keep = (x2 > x1) & (y2 > y1)
    result: dict[str, Tensor] = {}
    for key, value in detections.items():
        result[key] = value[keep]
    result["boxes"] = torch.stack((x1, y1, x2, y2), dim=1)[keep]
    return result


class PixelTransform(GeneralizedRCNNTransform):
    """``GeneralizedRCNNTransform`` (resize, normalise, batch) for weights trained on other pixels than
    RGB in ``[0, 1]``, with torchvision's or detectron2's resize.

    Each image ``[3, H, W]`` (RGB, ``[0, 1]``) becomes ``(reorder(x) * pixels.scale - pixels.mean) / pixels.std``.
    For the MSRA/detectron2 convention (BGR, 0..255, std 1) this gives detectron2's input bit for bit:
    ``x * 255`` restores the integer pixel values of an 8-bit image exactly.

    Resize (the short side to ``min_size``, a random one per image in training, the last at test; the long side
    at most ``max_size``):

    - ``"torchvision"``: the normalised float image with ``interpolate`` (bilinear, no antialiasing), the size
      floored (``GeneralizedRCNNTransform``'s);
    - ``"detectron2"``: the 8-bit image first, as detectron2's ``ResizeShortestEdge`` (:func:`shortest_edge_size`,
      :func:`resize_like_pil`), then normalised; detections come back as :func:`detector_postprocess` scales them.

    Args:
        min_size, max_size, size_divisible: as ``GeneralizedRCNNTransform``.
        pixels: the weights' convention.
        resize: ``"torchvision"`` or ``"detectron2"``.
    """

    def __init__(
        self,
        min_size: int | tuple[int, ...],
        max_size: int,
        pixels: PixelConvention,
        size_divisible: int,
        resize: str = "torchvision",
    ):
        super().__init__(min_size, max_size, list(pixels.mean), list(pixels.std), size_divisible=size_divisible)
        if resize not in ("torchvision", "detectron2"):
            raise ValueError(f"resize must be 'torchvision' or 'detectron2', got {resize!r}")
        self.pixel_scale = float(pixels.scale)
        self.bgr = pixels.channel_order == "BGR"
        self.resize_style = resize

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> tuple[ImageList, list[dict[str, Tensor]] | None]:
        """As ``GeneralizedRCNNTransform.forward`` (targets are copied, not changed in place); detectron2's
        resize comes before the normalisation, torchvision's after it."""
        prepared: list[Tensor] = []
        prepared_targets: list[dict[str, Tensor]] = []
        for i in range(len(images)):
            image = images[i]
            if image.dim() != 3:
                raise ValueError(f"images is expected to be a list of 3d tensors of shape [C, H, W], got {image.shape}")
            target: dict[str, Tensor] | None = None
            if targets is not None:
                target = {}
                for key, value in targets[i].items():
                    target[key] = value
            if self.resize_style == "detectron2":
                image, target = self.resize_shortest_edge(image, target)
                image = self.normalize(image)
            else:
                image = self.normalize(image)
                image, target = self.resize(image, target)
            prepared.append(image)
            if target is not None:
                prepared_targets.append(target)
        image_sizes: list[tuple[int, int]] = [(image.shape[-2], image.shape[-1]) for image in prepared]
        batched = ImageList(self.batch_images(prepared, size_divisible=self.size_divisible), image_sizes)
        return batched, (prepared_targets if targets is not None else None)

    def resize_shortest_edge(
        self, image: Tensor, target: dict[str, Tensor] | None = None
    ) -> tuple[Tensor, dict[str, Tensor] | None]:
        """detectron2's ``ResizeShortestEdge`` of ``image`` ``[3, H, W]`` in ``[0, 1]`` (its 8-bit pixels) and of
        ``target["boxes"]``; the short side is ``torch_choice(min_size)`` in training ("choice"), else the last."""
        if not image.is_floating_point():
            raise TypeError(f"images must be float tensors in [0, 1], got {image.dtype}")
        height, width = image.shape[-2], image.shape[-1]
        short_edge = self.torch_choice(self.min_size) if self.training else self.min_size[-1]
        size = shortest_edge_size(height, width, short_edge, self.max_size)
        image = resize_like_pil(image, size)
        if target is not None:
            boxes = target["boxes"]
            scale_x, scale_y = size[1] / width, size[0] / height
            target["boxes"] = torch.stack(
                (boxes[:, 0] * scale_x, boxes[:, 1] * scale_y, boxes[:, 2] * scale_x, boxes[:, 3] * scale_y), dim=1
            )
        return image, target

    def normalize(self, image: Tensor) -> Tensor:
        """``[3, H, W]`` float RGB in ``[0, 1]`` -> the normalised input of the trunk (TorchScript has no
        ``super()``, so the parent's two lines are here too)."""
        if not image.is_floating_point():
            raise TypeError(f"images must be float tensors in [0, 1], got {image.dtype}")
        if self.bgr:
            image = image.flip(0)
        if self.pixel_scale != 1.0:
            image = image * self.pixel_scale
        mean = torch.as_tensor(self.image_mean, dtype=image.dtype, device=image.device)
        std = torch.as_tensor(self.image_std, dtype=image.dtype, device=image.device)
        return (image - mean[:, None, None]) / std[:, None, None]

    def postprocess(
        self,
        result: list[dict[str, Tensor]],
        image_shapes: list[tuple[int, int]],
        original_image_sizes: list[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Detections in the input images' pixels: torchvision's box scaling, or detectron2's
        (:func:`detector_postprocess`)."""
        if self.training:
            return result
        for i in range(len(result)):
            if self.resize_style == "detectron2":
                result[i] = detector_postprocess(result[i], image_shapes[i], original_image_sizes[i])
            else:
                result[i]["boxes"] = resize_boxes(result[i]["boxes"], image_shapes[i], original_image_sizes[i])
        return result

    def __repr__(self) -> str:
        return super().__repr__().replace("mode='bilinear'", f"mode='bilinear', style='{self.resize_style}'")
