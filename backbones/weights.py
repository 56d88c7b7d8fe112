"""Initial weights for backbones: none, torchvision's ImageNet weights, or a local state dict file."""

import os

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
        ValueError: the ImageNet weights cannot be downloaded (no network: the message says how to
            pass the file instead); the file is not a state dict, or any key the trunk or head needs
            is missing, unexpected or of the wrong shape. Every such key is listed.
    """
    if weights is None:
        return
    if weights == "imagenet":
        state_dict = _download_imagenet(imagenet)
        source = f"torchvision {imagenet}"
    else:
        state_dict = _read_state_dict(os.fspath(weights))
        source = os.fspath(weights)
    _load_strict(model, state_dict, source, unused_prefixes)


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
    # BatchNorm's step counter carries no weights, and FrozenBatchNorm2d has none: never required.
    needed = {
        key for key in expected if not key.startswith(unused_prefixes) and not key.endswith("num_batches_tracked")
    }
    given = set(state_dict)
    missing = sorted(needed - given)
    unexpected = sorted(key for key in given - set(expected) if not key.endswith("num_batches_tracked"))
    wrong_shape = sorted(
        f"{key} (file {tuple(state_dict[key].shape)}, model {tuple(expected[key].shape)})"
        for key in given & set(expected)
        if state_dict[key].shape != expected[key].shape
    )
    problems = [
        f"{label}: {', '.join(keys)}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
        if keys
    ]
    if problems:
        raise ValueError(f"weights {source} do not match {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict({key: state_dict[key] for key in given & set(expected)}, strict=False)
