"""The original ResNet paper's ImageNet weights (MSRA) by name, as detectron2 ships them.

``weights_backbone="MSRA"`` in the builders (:mod:`detection.modeling.zoo`), ``model.weights: msra`` in a
config, or the enums below, in torchvision's style (``ResNet101_MSRA_Weights.MSRA`` beside torchvision's
``ResNet101_Weights.IMAGENET1K_V1``). The file, detectron2's ``ImageNetPretrained/MSRA/R-50.pkl`` or
``R-101.pkl`` (a converted copy of MSRA's Caffe models), is downloaded once into torch hub's cache
(:mod:`detection.hub`) and read as an MSRA caffe2 ResNet (:mod:`backbones.weights`, without running pickle
code), which switches on the stride in the 1x1 convs and the BGR 0..255 input they were trained with.
"""

import os
from typing import Any

import torch
from torchvision.models import Weights, WeightsEnum

# The detector takes RGB [0, 1] images (its transform makes the MSRA input of them): torchvision's preset for
# detection weights, so that ``weights.transforms()`` means what it means for torchvision's detectors.
from torchvision.transforms._presets import ObjectDetection

from backbones.weights import read_weights

from ..hub import cached_file

MSRA_NAME = "msra"  # their name in a config (model.weights) and in backbone_kwargs, beside "imagenet"
_URL = "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/"
_COMMON_META = {
    "recipe": "https://github.com/KaimingHe/deep-residual-networks",
    "_docs": (
        "The ResNet paper's own ImageNet weights (He et al. 2016), which its detectors and detectron2's C4 models "
        "start from, in detectron2's caffe2 conversion. The stride of a downsampling block is in its 1x1 conv and the "
        "input is BGR 0..255 minus the mean; a detector of this toolkit built on them takes RGB [0, 1] images and "
        "converts them. The accuracy is MSRA's, 1 centre 224 crop (KaimingHe/deep-residual-networks' README); "
        "num_params counts the backbone without the ImageNet classifier, which the detector drops."
    ),
}


class MSRAWeightsEnum(WeightsEnum):
    """MSRA caffe2 ResNet weights: ``get_state_dict`` gives a torchvision-named state dict (no classifier)."""

    def get_state_dict(self, progress: bool = True, **kwargs: Any) -> dict[str, torch.Tensor]:
        return read_weights(os.fspath(cached_file(self.url, progress=progress).path)).state_dict


class ResNet50_MSRA_Weights(MSRAWeightsEnum):
    MSRA = Weights(
        url=_URL + "R-50.pkl",
        transforms=ObjectDetection,
        meta={**_COMMON_META, "num_params": 23508032, "_metrics": {"ImageNet-1K": {"acc@1": 75.3, "acc@5": 92.2}}},
    )
    DEFAULT = MSRA


class ResNet101_MSRA_Weights(MSRAWeightsEnum):
    MSRA = Weights(
        url=_URL + "R-101.pkl",
        transforms=ObjectDetection,
        meta={**_COMMON_META, "num_params": 42500160, "_metrics": {"ImageNet-1K": {"acc@1": 76.4, "acc@5": 92.9}}},
    )
    DEFAULT = MSRA


# backbone -> its MSRA weights; MSRA published ResNet-152 too, but detectron2 does not ship it.
MSRA_WEIGHTS: dict[str, type[MSRAWeightsEnum]] = {
    "resnet50": ResNet50_MSRA_Weights,
    "resnet101": ResNet101_MSRA_Weights,
}


def is_msra(weights: object) -> bool:
    """Whether backbone ``weights`` (a builder's ``weights_backbone``, a config's ``model.weights``) name the
    MSRA weights: ``"msra"``, ``"MSRA"`` or an :class:`MSRAWeightsEnum` member."""
    return isinstance(weights, MSRAWeightsEnum) or (isinstance(weights, str) and weights in (MSRA_NAME, "MSRA"))


def msra_weights(backbone: str, weights: object = MSRA_NAME) -> MSRAWeightsEnum:
    """The MSRA weights of ``backbone`` (``weights``: what named them, checked against it).

    Raises:
        ValueError: ``backbone`` has none (one line), or ``weights`` is another depth's enum member.
    """
    enum = MSRA_WEIGHTS.get(backbone)
    if enum is None:
        raise ValueError(
            f"no MSRA ImageNet weights for {backbone}: detectron2's ImageNetPretrained/MSRA has ResNet-50 and "
            "ResNet-101 (R-50.pkl, R-101.pkl); use imagenet"
        )
    if isinstance(weights, MSRAWeightsEnum) and not isinstance(weights, enum):
        raise ValueError(f"{backbone} loads {enum.__name__}.MSRA, got {weights!r}")
    return enum.MSRA


def msra_file(backbone: str, weights: object = MSRA_NAME, *, progress: bool = True) -> str:
    """The path of ``backbone``'s MSRA file in torch hub's cache, downloaded there first if needed.

    Raises:
        ValueError: see :func:`msra_weights`.
        detection.errors.DownloadError: not in the cache, and cannot be downloaded (the message says where
            to put the file).
    """
    return os.fspath(cached_file(msra_weights(backbone, weights).url, progress=progress).path)
