"""Initial weights for backbones: none, torchvision's ImageNet weights, a local state dict file, or the
MSRA caffe2 ResNet files of the original paper."""

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models import WeightsEnum

from .detectron2_names import MSRA_PIXELS, caffe2_resnet_state_dict, is_caffe2_resnet
from .pickles import load_array_pickle
from .spec import TORCHVISION_PIXELS, PixelConvention

WeightsArg = str | os.PathLike | None


def is_pretrained(weights: WeightsArg) -> bool:
    """True when ``weights`` asks for trained weights (``"imagenet"`` or a file path)."""
    return weights is not None


@dataclass(frozen=True)
class BackboneWeights:
    """Weights read for a torchvision classification model, with the conventions they were trained in.

    Attributes:
        state_dict: torchvision parameter names.
        source: where they came from, for messages.
        msra: the original ResNet paper's caffe2 weights (detectron2's ``ImageNetPretrained/MSRA``): the
            stride of a downsampling block is in its first 1x1 conv, and the input is :data:`MSRA_PIXELS`.
    """

    state_dict: dict[str, torch.Tensor]
    source: str
    msra: bool = False

    @property
    def pixels(self) -> PixelConvention:
        return MSRA_PIXELS if self.msra else TORCHVISION_PIXELS


def is_msra_file(weights: WeightsArg) -> bool:
    """Whether ``weights`` names an MSRA caffe2 file: every ``.pkl`` is read as one."""
    return weights is not None and weights != "imagenet" and os.fspath(weights).endswith(".pkl")


def read_weights(weights: WeightsArg, imagenet: WeightsEnum | None = None) -> BackboneWeights | None:
    """The weights ``weights`` names: ``None`` (none), ``"imagenet"`` (``imagenet``, downloaded by
    torchvision on first use), a torchvision-format state dict file (optionally wrapped as
    ``{"state_dict": ...}`` or ``{"model": ...}``, keys optionally prefixed ``module.``), or an MSRA
    caffe2 ResNet file (``R-50.pkl``, ``R-101.pkl``, as detectron2 ships them; read without running code).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the ImageNet weights cannot be downloaded (no network: the message says how to pass
            the file instead), or the file is not one of those formats.
    """
    if weights is None:
        return None
    if weights == "imagenet":
        return BackboneWeights(_download_imagenet(imagenet), f"torchvision {imagenet}")
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"backbone weights file not found: {path} (expected a torchvision state dict, an MSRA caffe2 "
            "ResNet .pkl, or weights='imagenet')"
        )
    if is_msra_file(path):
        return BackboneWeights(_read_caffe2_resnet(path), path, msra=True)
    return BackboneWeights(_read_state_dict(path), path)


def load_weights(model: nn.Module, weights: BackboneWeights | None, unused_prefixes: tuple[str, ...]) -> None:
    """Loads ``weights`` into a torchvision classification ``model`` (whose parts become trunk and head),
    strictly.

    Args:
        unused_prefixes: key prefixes of layers the detector drops (the ImageNet classifier); they may
            be missing from the file.

    Raises:
        ValueError: any key the trunk or head needs is missing, unexpected or of the wrong shape.
            Every such key is listed.
    """
    if weights is not None:
        _load_strict(model, weights.state_dict, weights.source, unused_prefixes)


def _read_caffe2_resnet(path: str) -> dict[str, torch.Tensor]:
    content = load_array_pickle(path)
    if isinstance(content, dict) and "model" in content and "__author__" in content:
        raise ValueError(
            f"{path}: a detectron2 detector checkpoint, not backbone weights; convert it with "
            "tools/convert_detectron2.py and pass it to --weights"
        )
    blobs = content.get("blobs", content) if isinstance(content, dict) else content
    if not is_caffe2_resnet(blobs):
        raise ValueError(f"{path}: not an MSRA caffe2 ResNet file (expected blobs such as conv1_w, res2_0_branch2a_w)")
    try:
        return caffe2_resnet_state_dict(blobs)
    except KeyError as error:
        raise ValueError(f"{path}: {error.args[0]}") from None


def _download_imagenet(imagenet: WeightsEnum) -> dict[str, torch.Tensor]:
    """torchvision's weights from its cache, downloaded there on first use; a failed download is one line."""
    try:
        return imagenet.get_state_dict(progress=True)
    except OSError as error:  # urllib's URLError and HTTPError, timeouts, a full or read-only cache
        file_name = os.path.basename(imagenet.url)
        cache = os.path.join(torch.hub.get_dir(), "checkpoints")
        reason = getattr(error, "reason", None) or error.strerror or error
        raise ValueError(
            f"could not download torchvision's ImageNet weights {imagenet} from {imagenet.url} ({reason}); "
            f"without network, download that file on another machine and pass its path as the weights "
            f"(e.g. weights=/path/to/{file_name}), or put it in {cache}"
        ) from None


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
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
