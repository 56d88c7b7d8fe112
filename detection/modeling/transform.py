"""torchvision's detection transform, feeding the trunk the pixels its weights were trained on."""

import torch
from torch import Tensor
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from backbones import PixelConvention


class PixelTransform(GeneralizedRCNNTransform):
    """``GeneralizedRCNNTransform`` (resize, normalise, batch) for weights trained on other pixels than
    RGB in ``[0, 1]``: each image ``[3, H, W]`` (RGB, ``[0, 1]``) becomes
    ``(reorder(x) * pixels.scale - pixels.mean) / pixels.std``.

    For the MSRA/detectron2 convention (BGR, 0..255, std 1) this gives detectron2's input bit for bit:
    ``x * 255`` restores the integer pixel values of an 8-bit image exactly.

    Args:
        min_size, max_size, size_divisible: as ``GeneralizedRCNNTransform``.
        pixels: the weights' convention.
    """

    def __init__(self, min_size: int | tuple[int, ...], max_size: int, pixels: PixelConvention, size_divisible: int):
        super().__init__(min_size, max_size, list(pixels.mean), list(pixels.std), size_divisible=size_divisible)
        self.pixel_scale = float(pixels.scale)
        self.bgr = pixels.channel_order == "BGR"

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
