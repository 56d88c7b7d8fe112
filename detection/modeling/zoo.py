"""Model builders in torchvision's style, one per backbone, found the way ``fasterrcnn_resnet50_fpn`` is::

    from detection import fasterrcnn_resnet101_c4

    model = fasterrcnn_resnet101_c4(weights="DEFAULT").eval()  # detectron2's R101-C4 3x, 41.1 COCO box AP
    model = fasterrcnn_resnet101_c4(weights="output/coco_resnet101/model_final.pth").eval()
    model = fasterrcnn_resnet101_c4(num_classes=4, weights_backbone="imagenet")  # to train on 3 classes

The arguments have torchvision's names and meaning:

- ``weights``: trained detection weights: named ones (:mod:`detection.modeling.weights`: a member of the
  builder's enum such as ``FasterRCNN_ResNet101_C4_Weights.COCO_DETECTRON2_3X``, its name
  ``"COCO_DETECTRON2_3X"``, or ``"DEFAULT"``; ResNet-50 and ResNet-101 only), or a checkpoint file of this
  toolkit (``tools/train_det.py``'s, or a detectron2 model converted to one). The detector is built with
  their settings (``**kwargs`` override them), its BatchNorm frozen, and no backbone weights are loaded.
- ``progress``: show a progress bar while weights download.
- ``num_classes``: classes including the background. Default: the weights' with ``weights`` (another
  value is an error), else 81 (COCO's 80 classes; this toolkit's labels are contiguous, where
  torchvision's 91 keep COCO's id gaps).
- ``weights_backbone``: without ``weights``, the backbone's initial weights: ``"imagenet"`` (the default:
  torchvision's ``IMAGENET1K_V1``), that torchvision enum (``ResNet101_Weights.IMAGENET1K_V1``) or its
  name, ``"MSRA"`` (the ResNet paper's own, ResNet-50/101: :mod:`detection.modeling.msra`, or its enum
  ``ResNet101_MSRA_Weights.MSRA``), a state dict path, or None (random init).
- ``trainable_backbone_layers``: 0..5, how many of (conv1, layer1, ..., layer4) train (VGG-16: of its five
  conv blocks); default 3 with trained weights, 5 without.
- ``**kwargs``: :class:`~detection.modeling.options.DetectorOptions`, which have ``FasterRCNN``'s argument
  names (``min_size``, ``box_score_thresh``, ``box_detections_per_img``, ...).

``torchvision.models.get_model_weights(fasterrcnn_resnet101_c4)`` finds the builder's weights enum from
the ``weights`` annotation, as for torchvision's builders.
"""

import os
from typing import Any

from torchvision.models import WeightsEnum
from torchvision.models.detection import FasterRCNN

from ..checkpoint import checkpoint_config, load_checkpoint, load_model_state
from ..errors import CheckpointError
from .detector import build_detector
from .msra import is_msra, msra_file
from .options import DetectorOptions
from .weights import (
    DETECTOR_WEIGHTS,
    FasterRCNN_ResNet50_C4_Weights,
    FasterRCNN_ResNet101_C4_Weights,
    detector_backbone,
    find_weights,
    weights_checkpoint,
)

__all__ = [
    "fasterrcnn_resnet18_c4",
    "fasterrcnn_resnet34_c4",
    "fasterrcnn_resnet50_c4",
    "fasterrcnn_resnet101_c4",
    "fasterrcnn_resnet152_c4",
    "fasterrcnn_vgg16",
]

COCO_NUM_CLASSES = 81
PRETRAINED_TRAINABLE_LAYERS = 3
_IMAGENET_NAME = "IMAGENET1K_V1"  # the torchvision weights "imagenet" loads
# backbone -> (its torchvision weights enum's class name, whether it takes a ``norm``)
_BACKBONES = {
    "resnet18": ("ResNet18_Weights", True),
    "resnet34": ("ResNet34_Weights", True),
    "resnet50": ("ResNet50_Weights", True),
    "resnet101": ("ResNet101_Weights", True),
    "resnet152": ("ResNet152_Weights", True),
    "vgg16": ("VGG16_Weights", False),
}

WeightsPath = str | os.PathLike


def fasterrcnn_resnet18_c4(
    *,
    weights: WeightsPath | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: WeightsEnum | WeightsPath | None = "imagenet",
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> FasterRCNN:
    """Faster R-CNN, ResNet-18 C4. See :mod:`detection.modeling.zoo` for the arguments."""
    return _detector("resnet18", weights, progress, num_classes, weights_backbone, trainable_backbone_layers, kwargs)


def fasterrcnn_resnet34_c4(
    *,
    weights: WeightsPath | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: WeightsEnum | WeightsPath | None = "imagenet",
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> FasterRCNN:
    """Faster R-CNN, ResNet-34 C4. See :mod:`detection.modeling.zoo` for the arguments."""
    return _detector("resnet34", weights, progress, num_classes, weights_backbone, trainable_backbone_layers, kwargs)


def fasterrcnn_resnet50_c4(
    *,
    weights: FasterRCNN_ResNet50_C4_Weights | WeightsPath | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: WeightsEnum | WeightsPath | None = "imagenet",
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> FasterRCNN:
    """Faster R-CNN, ResNet-50 C4. See :mod:`detection.modeling.zoo` for the arguments."""
    return _detector("resnet50", weights, progress, num_classes, weights_backbone, trainable_backbone_layers, kwargs)


def fasterrcnn_resnet101_c4(
    *,
    weights: FasterRCNN_ResNet101_C4_Weights | WeightsPath | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: WeightsEnum | WeightsPath | None = "imagenet",
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> FasterRCNN:
    """Faster R-CNN, ResNet-101 C4: the paper's detector. See :mod:`detection.modeling.zoo` for the arguments."""
    return _detector("resnet101", weights, progress, num_classes, weights_backbone, trainable_backbone_layers, kwargs)


def fasterrcnn_resnet152_c4(
    *,
    weights: WeightsPath | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: WeightsEnum | WeightsPath | None = "imagenet",
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> FasterRCNN:
    """Faster R-CNN, ResNet-152 C4. See :mod:`detection.modeling.zoo` for the arguments."""
    return _detector("resnet152", weights, progress, num_classes, weights_backbone, trainable_backbone_layers, kwargs)


def fasterrcnn_vgg16(
    *,
    weights: WeightsPath | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: WeightsEnum | WeightsPath | None = "imagenet",
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> FasterRCNN:
    """Faster R-CNN, VGG-16 (RoIPool, fc6/fc7), the baseline. See :mod:`detection.modeling.zoo` for the arguments."""
    return _detector("vgg16", weights, progress, num_classes, weights_backbone, trainable_backbone_layers, kwargs)


def _detector(
    backbone: str,
    weights: WeightsEnum | WeightsPath | None,
    progress: bool,
    num_classes: int | None,
    weights_backbone: WeightsEnum | WeightsPath | None,
    trainable_backbone_layers: int | None,
    kwargs: dict[str, Any],
) -> FasterRCNN:
    if weights is not None:
        checkpoint, source = _trained_weights(backbone, weights, progress)
        return _trained_detector(backbone, checkpoint, source, num_classes, trainable_backbone_layers, kwargs)
    backbone_kwargs: dict[str, Any] = {"weights": _backbone_weights(backbone, weights_backbone, progress)}
    if trainable_backbone_layers is not None:
        backbone_kwargs["trainable_layers"] = trainable_backbone_layers
    return build_detector(backbone, num_classes or COCO_NUM_CLASSES, backbone_kwargs=backbone_kwargs, **kwargs)


def _trained_weights(backbone: str, weights: WeightsEnum | WeightsPath, progress: bool) -> tuple[dict[str, Any], str]:
    """``weights`` as a checkpoint, and what they are: the builder's named weights (a member of its enum, the
    member's name or ``"DEFAULT"``), or a checkpoint file."""
    own = DETECTOR_WEIGHTS.get(backbone)
    lookup = sorted(DETECTOR_WEIGHTS.values(), key=lambda enum: enum is not own)  # a bare name is the builder's own
    named = weights if isinstance(weights, WeightsEnum) else find_weights(os.fspath(weights), lookup)
    if named is None:
        return load_checkpoint(weights), os.fspath(weights)
    owner = detector_backbone(named)
    if owner != backbone:
        whose = f"{_builder_name(owner)}'s" if owner else "not detector weights (ImageNet weights: weights_backbone)"
        takes = f"{own.__name__} or a checkpoint path" if own else "a checkpoint path (it has no named weights)"
        raise ValueError(f"weights: {named!r} are {whose}; {_builder_name(backbone)} takes {takes}")
    return weights_checkpoint(named, progress=progress), repr(named)


def _trained_detector(
    backbone: str,
    checkpoint: dict[str, Any],
    source: str,
    num_classes: int | None,
    trainable_layers: int | None,
    options: dict[str, Any],
) -> FasterRCNN:
    """The checkpoint's detector, built as torchvision builds a model with weights: frozen BatchNorm
    (unless the checkpoint's backbone used another norm on purpose) and 3 trainable layers by default."""
    model_config = checkpoint_config(checkpoint, source).model
    if model_config.backbone != backbone:
        raise CheckpointError(
            f"{source}: a {model_config.backbone} detector, not {backbone}; "
            f"use {_builder_name(model_config.backbone)}(weights=...)"
        )
    class_count = len(checkpoint.get("class_names") or []) + 1
    if num_classes is not None and num_classes != class_count:
        raise ValueError(
            f"num_classes: {source} was trained for {class_count} (background included), got {num_classes}"
        )
    backbone_kwargs = dict(model_config.backbone_kwargs)
    backbone_kwargs["trainable_layers"] = PRETRAINED_TRAINABLE_LAYERS if trainable_layers is None else trainable_layers
    if _BACKBONES[backbone][1]:
        backbone_kwargs.setdefault("norm", "frozen_bn")
    stored = {name: getattr(model_config, name) for name in DetectorOptions.field_names()}
    model = build_detector(backbone, class_count, backbone_kwargs=backbone_kwargs, **{**stored, **options})
    load_model_state(model, checkpoint["model"], source)
    return model


def _backbone_weights(backbone: str, weights: WeightsEnum | WeightsPath | None, progress: bool) -> WeightsPath | None:
    """``weights_backbone`` in the backbone builder's terms: None, ``"imagenet"`` or a path (the MSRA file's)."""
    if is_msra(weights):
        try:
            return msra_file(backbone, weights, progress=progress)
        except ValueError as error:
            raise ValueError(f"weights_backbone: {error}") from None
    enum_class = _BACKBONES[backbone][0]
    if isinstance(weights, WeightsEnum):
        if type(weights).__name__ != enum_class or weights.name != _IMAGENET_NAME:
            expected = f"{enum_class}.{_IMAGENET_NAME}"
            raise ValueError(f"weights_backbone: {backbone} loads {expected} (or a state dict file), got {weights}")
        return "imagenet"
    if weights in (_IMAGENET_NAME, f"{enum_class}.{_IMAGENET_NAME}"):
        return "imagenet"
    return weights


def _builder_name(backbone: str) -> str:
    return "fasterrcnn_vgg16" if backbone == "vgg16" else f"fasterrcnn_{backbone}_c4"
