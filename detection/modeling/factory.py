"""Builds the detector a :class:`~detection.config.ModelConfig` describes."""

import dataclasses
from dataclasses import fields

from torchvision.models.detection import FasterRCNN

from backbones import list_backbones
from backbones.detectron2_names import MSRA_PIXELS
from backbones.weights import is_msra_file

from ..config import ModelConfig
from ..errors import ConfigError
from .detector import DetectorOptions, build_detector
from .msra import is_msra, msra_file, msra_weights


def detector_from_config(cfg: ModelConfig, num_classes: int, *, backbone_weights: bool = True) -> FasterRCNN:
    """The configured detector for ``num_classes`` classes (background included).

    Args:
        backbone_weights: load ``cfg.weights`` into the backbone. ``False`` builds the architecture
            only, for a model whose weights come from a checkpoint next.
    """
    if cfg.backbone not in list_backbones():
        raise ConfigError(
            f"model.backbone: unknown backbone {cfg.backbone!r}; registered backbones: {', '.join(list_backbones())}"
        )
    backbone_kwargs = dict(cfg.backbone_kwargs)
    if cfg.trainable_layers is not None:
        backbone_kwargs["trainable_layers"] = cfg.trainable_layers
    options = {f.name: getattr(cfg, f.name) for f in fields(DetectorOptions)}
    try:
        if backbone_weights and cfg.weights is not None:
            backbone_kwargs["weights"] = msra_file(cfg.backbone) if is_msra(cfg.weights) else cfg.weights
        return build_detector(cfg.backbone, num_classes, backbone_kwargs=backbone_kwargs, **options)
    except (TypeError, ValueError) as error:  # bad weights file, option values or builder arguments
        raise ConfigError(f"model ({cfg.backbone}): {error}") from None


def resolve_model_config(cfg: ModelConfig) -> ModelConfig:
    """``cfg`` with what its backbone weights imply written out, so that the config alone rebuilds the
    architecture (checkpoints store it and rebuild without the weights file).

    MSRA caffe2 weights (``msra``: downloaded by name, or a file such as ``R-50.pkl``, ``R-101.pkl``) imply
    ``backbone_kwargs.stride_in_1x1: true`` and their input convention (``image_mean``, ``image_std``,
    ``pixel_scale``, ``channel_order``, unless set).
    """
    if is_msra(cfg.weights):
        try:
            msra_weights(cfg.backbone)
        except ValueError as error:
            raise ConfigError(f"model.weights: {cfg.weights}: {error}") from None
    elif not is_msra_file(cfg.weights):
        return cfg
    if cfg.backbone_kwargs.get("stride_in_1x1") is False:
        raise ConfigError(f"model.backbone_kwargs.stride_in_1x1: false, but {cfg.weights} (MSRA) needs true")
    return dataclasses.replace(
        cfg,
        backbone_kwargs={**cfg.backbone_kwargs, "stride_in_1x1": True},
        image_mean=cfg.image_mean or MSRA_PIXELS.mean,
        image_std=cfg.image_std or MSRA_PIXELS.std,
        pixel_scale=cfg.pixel_scale or MSRA_PIXELS.scale,
        channel_order=cfg.channel_order or MSRA_PIXELS.channel_order,
    )


# What makes trained weights compute something else when loaded into a model built with other values:
# the network, where its strides are, and the pixels it expects.
ARCHITECTURE_KEYS = (
    "backbone",
    "backbone_kwargs.stride_in_1x1",
    "image_mean",
    "image_std",
    "pixel_scale",
    "channel_order",
)


def architecture_differences(trained: ModelConfig, current: ModelConfig) -> list[str]:
    """``"key: trained value vs current value"`` for each :data:`ARCHITECTURE_KEYS` entry that differs."""
    differences = []
    for key in ARCHITECTURE_KEYS:
        before, after = _model_setting(trained, key), _model_setting(current, key)
        if before != after:
            differences.append(f"model.{key}: {before!r} vs {after!r}")
    return differences


def _model_setting(cfg: ModelConfig, key: str) -> object:
    if key.startswith("backbone_kwargs."):
        return bool(cfg.backbone_kwargs.get(key.removeprefix("backbone_kwargs."), False))
    value = getattr(cfg, key)
    return tuple(value) if isinstance(value, (list, tuple)) else value
