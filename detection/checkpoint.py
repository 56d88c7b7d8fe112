"""Checkpoints: atomic saving, safe loading, RNG state, and rebuilding a detector from one file.

A checkpoint is a dict saved with ``torch.save``:

- ``model``: the detector's state dict; ``config``: the resolved config as a plain dict;
  ``class_names``: the K foreground names (label k is ``class_names[k - 1]``);
- ``iteration``: iterations completed; ``optimizer``, ``scheduler``, ``scaler``: state dicts or None;
- ``best``: the best evaluation so far, ``{"name", "value", "iteration"}``, or None;
- ``unfinished_hooks``: the training hooks whose work after ``iteration`` had not finished (one failed, such
  as an evaluation): ``--resume`` runs them first; empty otherwise (absent before it was added);
- ``rng``: see :func:`capture_rng_state`;
- ``format_version``: 2 since the RPN anchors follow detectron2 (size-major, unrounded); a format-1
  model's RPN rows are in torchvision's order and are refused.

Everything in it is loadable with ``torch.load(weights_only=True)``.
"""

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN

from backbones.weights import compare_state_dicts

from . import files
from .config import Config, config_from_dict
from .errors import CheckpointError, ConfigError, first_line
from .files import replacing
from .modeling.factory import detector_from_config

FORMAT_VERSION = 2
PREDICTOR_PREFIX = "roi_heads.box_predictor."
MAX_KEYS_SHOWN = 8  # of each kind in a weights mismatch error; the count of all follows
PathLike = str | os.PathLike
TEMPORARY_SUFFIX = ".pth"  # of the temporary a save writes (detection.files.replacing)


@dataclass
class LoadedDetector:
    model: FasterRCNN
    config: Config
    class_names: list[str]
    iteration: int


def save_checkpoint(path: PathLike, checkpoint: dict[str, Any]) -> None:
    """Writes ``checkpoint`` to ``path`` atomically: a crash leaves the previous file intact.

    The file is written as a temporary next to ``path``, then renamed (:func:`detection.files.replacing`).
    Temporaries that a killed process left in that folder (``kill -9`` while saving) are removed first,
    see :func:`remove_stale_temporaries`.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    remove_stale_temporaries(directory)
    with replacing(path, TEMPORARY_SUFFIX) as file:
        torch.save({"format_version": FORMAT_VERSION, **checkpoint}, file)


def remove_stale_temporaries(directory: PathLike) -> list[str]:
    """Removes the checkpoint temporaries (``.tmp-*.pth``) in ``directory`` that no live process is writing;
    see :func:`detection.files.remove_stale_temporaries`.

    Returns:
        The paths removed.
    """
    return files.remove_stale_temporaries(directory, TEMPORARY_SUFFIX)


def load_checkpoint(path: PathLike, *, mmap: bool = False) -> dict[str, Any]:
    """Reads a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Args:
        mmap: map the file instead of reading it: tensors are read when used (to read the config only).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: not a readable checkpoint (the file is empty, 0 bytes)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable checkpoint ({first_line(error)})") from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint or "config" not in checkpoint:
        raise CheckpointError(f"{path}: not a checkpoint of this toolkit (expected the keys 'model' and 'config')")
    if checkpoint.get("format_version", 1) < FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format {checkpoint.get('format_version', 1)}, written before the RPN anchors changed to "
            "detectron2's order; its RPN would score the wrong anchors: retrain, or use the release that wrote it"
        )
    return checkpoint


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) generator states, in weights_only-loadable types."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": position,
            "has_gauss": has_gauss,
            "cached": cached,
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_model_state(
    model: nn.Module, state_dict: dict[str, torch.Tensor], source: str, *, skip_mismatched_predictor: bool = False
) -> list[str]:
    """Loads ``state_dict`` into ``model``; every other difference is a :class:`CheckpointError`.

    BatchNorm step counters may differ (a model rebuilt without its pretrained weights has trainable
    BatchNorm where the trained one had frozen BatchNorm). With ``skip_mismatched_predictor``, box
    predictor weights of another class count are skipped (fine-tuning on other classes).

    Returns:
        The keys that were skipped.
    """
    expected = model.state_dict()
    difference = compare_state_dicts(state_dict, expected)
    skipped = []
    if skip_mismatched_predictor:
        skipped = [key for key, _, _ in difference.wrong_shape if key.startswith(PREDICTOR_PREFIX)]
        difference = replace(difference, wrong_shape=tuple(w for w in difference.wrong_shape if w[0] not in skipped))
    if difference:
        raise CheckpointError(
            f"{source}: weights do not fit the model ({difference.describe('checkpoint', MAX_KEYS_SHOWN)})"
        )
    model.load_state_dict({k: v for k, v in state_dict.items() if k in expected and k not in skipped}, strict=False)
    return skipped


def check_class_names(source: str, trained: Sequence[str], dataset: Sequence[str]) -> None:
    """Raises :class:`CheckpointError` unless the checkpoint ``source`` was trained for ``dataset``'s classes."""
    trained, dataset = list(trained), list(dataset)
    if trained == dataset:
        return
    message = (
        f"{source}: trained for {len(trained)} classes ({_preview(trained)}), "
        f"but the dataset has {len(dataset)} ({_preview(dataset)})"
    )
    if len(trained) == len(dataset):
        label = next(k for k, (a, b) in enumerate(zip(trained, dataset), start=1) if a != b)
        message += f"; label {label} is {trained[label - 1]!r} there, {dataset[label - 1]!r} here"
    raise CheckpointError(message)


def _preview(names: list[str], count: int = 5) -> str:
    return ", ".join(names[:count]) + (", ..." if len(names) > count else "")


def load_detector(
    path: PathLike, *, device: str | torch.device = "cpu", class_names: Sequence[str] | None = None
) -> LoadedDetector:
    """Rebuilds the detector stored in the checkpoint file ``path``; see :func:`detector_from_checkpoint`."""
    return detector_from_checkpoint(load_checkpoint(path), os.fspath(path), device=device, class_names=class_names)


def checkpoint_config(checkpoint: dict[str, Any], source: str) -> Config:
    """The config stored in a checkpoint, validated against the current schema."""
    try:
        return config_from_dict(checkpoint["config"], source=f"{source} (stored config)")
    except ConfigError as error:
        raise CheckpointError(str(error)) from None


def detector_from_checkpoint(
    checkpoint: dict[str, Any],
    source: str,
    *,
    device: str | torch.device = "cpu",
    class_names: Sequence[str] | None = None,
) -> LoadedDetector:
    """Rebuilds a checkpoint's detector from its own config, in eval mode.

    Args:
        checkpoint: as returned by :func:`load_checkpoint`; ``source`` names it in errors.
        class_names: if given (a dataset's), the checkpoint must have been trained for these classes.
    """
    config = checkpoint_config(checkpoint, source)
    trained = list(checkpoint.get("class_names") or [])
    if class_names is not None:
        check_class_names(source, trained, class_names)
    model = detector_from_config(config.model, len(trained) + 1, backbone_weights=False)
    load_model_state(model, checkpoint["model"], source)
    return LoadedDetector(model.to(device).eval(), config, trained, int(checkpoint.get("iteration", 0)))
