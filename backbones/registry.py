"""Name -> builder registry for backbones, extensible by decorator or by setuptools entry point.

Third-party packages register builders without importing this one first by declaring an entry point
in the group ``resnet_c4_detection.backbones``, e.g. in their ``setup.py``::

    entry_points={"resnet_c4_detection.backbones": ["my_net = my_pkg.backbones:build_my_net"]}

Entry points are loaded on the first lookup (``build_backbone`` or ``list_backbones``), each under its
entry-point name.
"""

import warnings
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar

from .spec import BackboneSpec

ENTRY_POINT_GROUP = "resnet_c4_detection.backbones"

BackboneBuilder = Callable[..., BackboneSpec]
_Builder = TypeVar("_Builder", bound=BackboneBuilder)

_BUILDERS: dict[str, BackboneBuilder] = {}
_entry_points_loaded = False


def register_backbone(name: str) -> Callable[[_Builder], _Builder]:
    """Decorator that registers a function returning a :class:`BackboneSpec` under ``name``."""

    def decorator(builder: _Builder) -> _Builder:
        _add(name, builder)
        return builder

    return decorator


def build_backbone(name: str, **kwargs: Any) -> BackboneSpec:
    """Builds the backbone registered as ``name``; ``kwargs`` go to its builder."""
    builders = _registry()
    if name not in builders:
        raise KeyError(f"unknown backbone {name!r}; registered backbones: {', '.join(sorted(builders))}")
    spec = builders[name](**kwargs)
    if not isinstance(spec, BackboneSpec):
        raise TypeError(f"backbone builder {name!r} returned {type(spec).__name__}, expected BackboneSpec")
    return spec


def list_backbones() -> list[str]:
    """Sorted names of all registered backbones, entry points included."""
    return sorted(_registry())


def _add(name: str, builder: BackboneBuilder) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"backbone name must be a non-empty string, got {name!r}")
    if name in _BUILDERS:
        raise ValueError(f"backbone {name!r} is already registered (by {_BUILDERS[name].__module__})")
    _BUILDERS[name] = builder


def _registry() -> dict[str, BackboneBuilder]:
    global _entry_points_loaded
    if not _entry_points_loaded:
        _entry_points_loaded = True
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            if entry_point.name in _BUILDERS:
                warnings.warn(
                    f"ignoring entry point {entry_point.value!r} of group {ENTRY_POINT_GROUP!r}: "
                    f"backbone {entry_point.name!r} is already registered",
                    stacklevel=2,
                )
                continue
            _add(entry_point.name, entry_point.load())
    return _BUILDERS
