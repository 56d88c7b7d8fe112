"""Backbone registry and the built-in backbones (ResNet-18..152 in the C4 layout, VGG-16).

>>> import backbones
>>> spec = backbones.build("resnet101", weights=None)
>>> spec.out_channels, spec.head_out_channels
(1024, 2048)
"""

from . import resnet_c4, vgg16  # noqa: F401  (registers the built-in backbones)
from .registry import ENTRY_POINT_GROUP, build_backbone, list_backbones, register_backbone
from .spec import BackboneSpec, PixelConvention, PoolerSpec

register = register_backbone
build = build_backbone

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackboneSpec",
    "PixelConvention",
    "PoolerSpec",
    "build",
    "build_backbone",
    "list_backbones",
    "register",
    "register_backbone",
]
