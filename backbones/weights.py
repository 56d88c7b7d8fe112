"""Initial weights for backbones: none, torchvision's ImageNet weights, or a local state dict file."""

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models import WeightsEnum

WeightsArg = str | os.PathLike | None


def is_pretrained(weights: WeightsArg) -> bool:
    """True when ``weights`` asks for trained weights (``"imagenet"`` or a file path)."""
    return weights is not None


def load_weights(
    model: nn.Module, weights: WeightsArg, imagenet: WeightsEnum, unused_prefixes: tuple[str, ...]
) -> None:
    """Loads ``weights`` into a torchvision classification ``model``, strictly.

    Args:
        model: the full torchvision model (e.g. ``resnet101``) whose parts become trunk and head.
        weights: ``None`` (keep the random init), ``"imagenet"`` (the ``imagenet`` enum, downloaded by
            torchvision on first use) or a path to a torchvision-format state dict (optionally wrapped
            as ``{"state_dict": ...}`` or ``{"model": ...}``, keys optionally prefixed ``module.``).
        imagenet: the torchvision weights enum to use for ``"imagenet"``.
        unused_prefixes: key prefixes of layers the detector drops (the ImageNet classifier); they may
            be missing from the file.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is not a state dict, or any key the trunk or head needs is missing,
            unexpected or of the wrong shape. Every such key is listed.
    """
    if weights is None:
        return
    if weights == "imagenet":
        state_dict = imagenet.get_state_dict(progress=True)
        source = f"torchvision {imagenet}"
    else:
        state_dict = _read_state_dict(os.fspath(weights))
        source = os.fspath(weights)
    _load_strict(model, state_dict, source, unused_prefixes)


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"backbone weights file not found: {path} (expected a torchvision state dict, or weights='imagenet')"
        )
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path}: not a readable PyTorch state dict ({type(error).__name__}: {error})") from error
    for wrapper in ("state_dict", "model"):
        if isinstance(content, dict) and isinstance(content.get(wrapper), dict):
            content = content[wrapper]
    if not isinstance(content, dict) or not all(isinstance(v, torch.Tensor) for v in content.values()):
        raise ValueError(f"{path}: expected a state dict (mapping of parameter names to tensors)")
    return {key.removeprefix("module."): value for key, value in content.items()}


def _load_strict(
    model: nn.Module, state_dict: dict[str, torch.Tensor], source: str, unused_prefixes: tuple[str, ...]
) -> None:
    expected = model.state_dict()
    difference = compare_state_dicts(state_dict, expected, optional_prefixes=unused_prefixes)
    if difference:
        raise ValueError(f"weights {source} do not match {type(model).__name__}: {difference.describe('file')}")
    model.load_state_dict({key: value for key, value in state_dict.items() if key in expected}, strict=False)


@dataclass(frozen=True)
class StateDictDifference:
    """How a state dict differs from the one a model expects (every list sorted by key).

    Attributes:
        missing: keys the model needs that are not given.
        unexpected: given keys the model does not have.
        wrong_shape: ``(key, given shape, expected shape)`` of the keys in both whose shapes differ.
    """

    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    wrong_shape: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.wrong_shape)

    def describe(self, given: str, limit: int | None = None) -> str:
        """One line, e.g. ``missing: a, b; wrong shape: c (file (3, 4), model (5, 4))``.

        Args:
            given: what the state dict is called in the wrong-shape entries (``"file"``, ``"checkpoint"``).
            limit: list at most this many keys of each kind, then how many there are in all.
        """
        wrong_shape = [f"{key} ({given} {actual}, model {wanted})" for key, actual, wanted in self.wrong_shape]
        parts = []
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected), ("wrong shape", wrong_shape)):
            if keys:
                shown = keys if limit is None else keys[:limit]
                more = f", ... ({len(keys)} in all)" if len(shown) < len(keys) else ""
                parts.append(f"{label}: {', '.join(shown)}{more}")
        return "; ".join(parts)


def compare_state_dicts(
    given: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], optional_prefixes: tuple[str, ...] = ()
) -> StateDictDifference:
    """The keys of ``given`` that are missing, unexpected or of the wrong shape for ``expected``.

    BatchNorm's step counter (``num_batches_tracked``) carries no weights and ``FrozenBatchNorm2d`` has
    none: it is never missing nor unexpected. Keys starting with ``optional_prefixes`` may be missing.
    """
    counted = [key for key in given.keys() ^ expected.keys() if not key.endswith("num_batches_tracked")]
    return StateDictDifference(
        missing=tuple(sorted(key for key in counted if key in expected and not key.startswith(optional_prefixes))),
        unexpected=tuple(sorted(key for key in counted if key in given)),
        wrong_shape=tuple(
            sorted(
                (key, tuple(given[key].shape), tuple(expected[key].shape))
                for key in given.keys() & expected.keys()
                if given[key].shape != expected[key].shape
            )
        ),
    )
