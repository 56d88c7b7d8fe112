"""Builds the detector a :class:`~detection.config.ModelConfig` describes."""

from dataclasses import fields

from torchvision.models.detection import FasterRCNN

from backbones import list_backbones

from ..config import ModelConfig
from ..errors import ConfigError
from .detector import DetectorOptions, build_detector


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
    if backbone_weights and cfg.weights is not None:
        backbone_kwargs["weights"] = cfg.weights
    if cfg.trainable_layers is not None:
        backbone_kwargs["trainable_layers"] = cfg.trainable_layers
    options = {f.name: getattr(cfg, f.name) for f in fields(DetectorOptions)}
    try:
        return build_detector(cfg.backbone, num_classes, backbone_kwargs=backbone_kwargs, **options)
    except (TypeError, ValueError) as error:  # bad weights file, option values or builder arguments
        raise ConfigError(f"model ({cfg.backbone}): {error}") from None
