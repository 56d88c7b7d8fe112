"""Typed experiment configuration: YAML files in ``configs/``, command-line overrides, validation.

A config file is a mapping with the sections of :class:`Config`. It may start from other files with
``_base_: other.yaml`` (a path relative to the file, or a list of them; a path that is not there is looked
up among the shipped configs, so ``_base_: custom/base.yaml`` works from any folder); later values win,
mappings merge key by key. Overrides are ``section.key=value`` strings whose value is parsed as YAML
(``solver.base_lr=0.01``, ``model.anchor_sizes=[32,64,128]``, ``model.weights=null``). Unknown keys and
values of the wrong type are errors that name the key.
"""

import copy
import dataclasses
import difflib
import logging
import os
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import TypeAdapter, ValidationError

from .data.catalog import configured_dataset, list_datasets
from .errors import ConfigError
from .modeling.options import DetectorOptions

logger = logging.getLogger(__name__)

# The shipped configs: package data of the installed package (in the checkout, this folder is a link to
# the top-level configs/).
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_BEST_METRIC = {"coco": "bbox/AP", "voc": "voc/mAP"}
# Inference precision (``test.precision``, the tools' ``--precision``; resolved by ``detection.precision``):
# auto is bf16 where the hardware computes bfloat16 natively, else fp32; fp16 needs CUDA.
PrecisionName = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = typing.get_args(PrecisionName)


@dataclass(frozen=True)
class AugmentationOptions:
    """What training augmentation does; the default is the paper's: horizontal flip only.

    Attributes:
        horizontal_flip: probability of a horizontal flip.
        color_jitter: probability of a photometric jitter with the four strengths below.
        brightness, contrast, saturation: jitter factors are drawn from ``[1 - s, 1 + s]``.
        hue: hue shift drawn from ``[-hue, hue]`` (fraction of the hue circle, at most 0.5).
        crop: probability of cropping a random margin from each border (a zoom-in).
        crop_max_fraction: the most of the width (height) cropped from each side, below 0.5.
        crop_min_visibility: a cropped box keeping less than this fraction of its area is dropped.
    """

    horizontal_flip: float = 0.5
    color_jitter: float = 0.0
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02
    crop: float = 0.0
    crop_max_fraction: float = 0.25
    crop_min_visibility: float = 0.3

    def __post_init__(self) -> None:
        for name in ("horizontal_flip", "color_jitter", "crop", "crop_min_visibility"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"AugmentationOptions.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"AugmentationOptions.{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"AugmentationOptions.hue must be in [0, 0.5], got {self.hue}")
        if not 0.0 <= self.crop_max_fraction < 0.5:
            raise ValueError(f"AugmentationOptions.crop_max_fraction must be in [0, 0.5), got {self.crop_max_fraction}")


@dataclass(frozen=True)
class ModelConfig(DetectorOptions):
    """The detector: a registered backbone, its initial weights, and every :class:`DetectorOptions`."""

    backbone: str = "resnet101"
    # None (random init), "imagenet" (torchvision's), "msra" (the ResNet paper's, ResNet-50/101), or a file: a
    # torchvision state dict, or an MSRA caffe2 .pkl
    weights: str | None = None
    trainable_layers: int | None = None  # None: the backbone's default (see README)
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)  # further builder arguments


@dataclass(frozen=True)
class DataConfig:
    """Dataset, splits and loading.

    ``dataset`` is a registered name (``coco``, ``voc``, ``shapes``, or see
    :func:`detection.data.register_dataset`), or the name you give your own files: a COCO json per split
    (``train_json``/``test_json`` and their ``*_images`` folders) or a VOC-format folder (``voc_folder``).
    Relative file paths are relative to ``root`` when it is set, else to the working folder.
    """

    dataset: str = "shapes"
    root: str | None = None  # None: $DETECTION_DATASETS/<dataset> or ./datasets/<dataset>
    train_split: str = "train"
    test_split: str = "val"
    train_json: str | None = None  # your own COCO-format training annotations
    train_images: str | None = None  # their image folder; None: the json's folder
    test_json: str | None = None  # your own COCO-format evaluation annotations
    test_images: str | None = None
    voc_folder: str | None = None  # your own VOC-format folder: Annotations/, JPEGImages/, [ImageSets/Main/]
    classes: tuple[str, ...] | None = None  # a custom class list (VOC names, or COCO category names)
    keep_empty: bool = False  # train on images without objects as negatives
    num_workers: int = 2  # per process
    aspect_ratio_grouping: bool = True
    on_bad_image: Literal["raise", "skip"] = "raise"
    augmentation: AugmentationOptions = field(default_factory=AugmentationOptions)

    def __post_init__(self) -> None:
        coco_files = self.train_json is not None or self.test_json is not None
        for images, json_key in (("train_images", "train_json"), ("test_images", "test_json")):
            if getattr(self, images) is not None and getattr(self, json_key) is None:
                raise ValueError(f"{images} is set without {json_key}, the COCO json of those images")
        if coco_files and (self.train_json is None or self.test_json is None):
            missing = "test_json" if self.test_json is None else "train_json"
            raise ValueError(
                f"{missing} is missing: a dataset of COCO files needs train_json and test_json (they may be the "
                "same file)"
            )
        if coco_files and self.voc_folder is not None:
            raise ValueError("voc_folder and train_json/test_json describe two datasets; give one")
        if coco_files and self.train_split == self.test_split and self.train_json != self.test_json:
            raise ValueError(f"train_split and test_split are both {self.train_split!r} but name different files")
        if (coco_files or self.voc_folder is not None) and self.dataset in list_datasets():
            raise ValueError(
                f"dataset {self.dataset!r} is a registered dataset, but the config gives files of its own; name "
                "your dataset (e.g. data.dataset=my_data)"
            )

    def with_registered_dataset(self, dataset: str, root: str | None = None) -> "DataConfig":
        """These loading options for the registered dataset ``dataset`` at ``root`` (own files cleared)."""
        own_files = ("train_json", "train_images", "test_json", "test_images", "voc_folder")
        return dataclasses.replace(self, dataset=dataset, root=root, **dict.fromkeys(own_files))

    @property
    def metric(self) -> str:
        """The dataset's evaluation, ``coco`` or ``voc``: a VOC-format folder and ``voc`` are scored with
        the VOC devkit's AP, everything else with COCOeval."""
        return configured_dataset(self).metric


@dataclass(frozen=True)
class SolverConfig:
    """SGD with momentum (no Nesterov), linear warm-up and step decay, over a fixed number of iterations.

    The learning rate scales linearly with the batch: ``lr = base_lr * images_per_batch /
    reference_batch_size`` (Goyal et al. 2017), so overriding ``images_per_batch`` alone keeps the
    recipe's per-image step. ``images_per_batch`` is the total over all processes.

    Parameter groups as detectron2's ``build_optimizer``: the parameters of normalisation layers decay by
    ``weight_decay_norm``, then every bias (a norm's too) by ``weight_decay_bias`` at ``bias_lr_factor`` times
    the learning rate; ``None`` is ``weight_decay``.
    """

    max_iter: int = 1000
    images_per_batch: int = 2
    reference_batch_size: int | None = None  # None: the recipe's images_per_batch, no scaling
    base_lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0005
    weight_decay_norm: float | None = None  # detectron2's SOLVER.WEIGHT_DECAY_NORM (its default: 0.0)
    weight_decay_bias: float | None = None  # SOLVER.WEIGHT_DECAY_BIAS (its default: None)
    bias_lr_factor: float = 1.0  # SOLVER.BIAS_LR_FACTOR
    steps: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_iters: int = 0
    warmup_factor: float = 0.001
    clip_grad_norm: float | None = None
    accumulate_grad_batches: int = 1
    amp: Literal["off", "fp16", "bf16"] = "off"  # bf16: CUDA or CPU; fp16 (with a gradient scaler): CUDA only
    channels_last: bool = False
    checkpoint_period: int = 5000

    def __post_init__(self) -> None:
        if self.max_iter < 1 or self.images_per_batch < 1 or self.accumulate_grad_batches < 1:
            raise ValueError("max_iter, images_per_batch and accumulate_grad_batches must be >= 1")
        if list(self.steps) != sorted(self.steps) or any(not 0 < s < self.max_iter for s in self.steps):
            # No silent rescaling of the recipe's schedule: say which two keys to set together.
            example = f"solver.steps=[{self.max_iter * 3 // 4}] or " if self.max_iter >= 4 else ""
            raise ValueError(
                f"steps={list(self.steps)} must be increasing and inside (0, max_iter={self.max_iter}); with "
                f"solver.max_iter={self.max_iter} also set solver.steps, e.g. --opts solver.max_iter={self.max_iter} "
                f"{example}solver.steps=[] (no decay)"
            )
        if self.base_lr <= 0:
            raise ValueError(f"base_lr must be > 0, got {self.base_lr}")
        if self.bias_lr_factor <= 0:
            raise ValueError(f"bias_lr_factor must be > 0, got {self.bias_lr_factor}")

    @property
    def lr(self) -> float:
        """The learning rate after linear batch-size scaling."""
        reference = self.reference_batch_size or self.images_per_batch
        return self.base_lr * self.images_per_batch / reference


@dataclass(frozen=True)
class TestConfig:
    """Evaluation during and after training."""

    __test__ = False  # not a pytest test class

    eval_period: int = 0  # 0: evaluate only at the end
    metric: Literal["coco", "voc"] | None = None  # None: coco for coco/shapes, voc for voc
    best_metric: str | None = None  # None: bbox/AP (coco) or voc/mAP (voc)
    images_per_batch: int = 1
    coco_backend: Literal["pycocotools", "faster"] = "pycocotools"
    voc_method: Literal["11point", "area"] = "11point"
    vis_images: int = 4  # validation images drawn with their predictions in TensorBoard
    figures: bool = True  # precision/recall, per-class AP and (COCO) error analysis PNGs, also in TensorBoard
    precision: PrecisionName = "auto"  # of the evaluation's inference; auto: bf16 where the hardware has it, else fp32


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    test: TestConfig = field(default_factory=TestConfig)
    output_dir: str = "output"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    log_period: int = 20

    @property
    def metric(self) -> str:
        return self.test.metric or self.data.metric

    @property
    def best_metric_name(self) -> str:
        """``test.best_metric``, or the metric's default."""
        return self.test.best_metric or DEFAULT_BEST_METRIC[self.metric]


def load_config(path: str | None = None, overrides: Sequence[str] = ()) -> Config:
    """Reads a YAML config (or the defaults when ``path`` is None) and applies ``key=value`` overrides.

    A relative ``path`` that is not in the working folder is looked up among the shipped configs (with or
    without a leading ``configs/``), so ``configs/coco/resnet101.yaml`` works from any folder.
    """
    path = os.fspath(find_config(path)) if path else None
    raw = _read_yaml_with_bases(path, seen=()) if path else {}
    for override in overrides:
        _apply_override(raw, override)
    return config_from_dict(raw, source=path or "defaults")


def override_config(config: Config, overrides: Sequence[str], source: str = "config") -> Config:
    """``config`` with ``key=value`` overrides applied, as :func:`load_config` applies them to a file."""
    raw = config_to_dict(config)
    for override in overrides:
        _apply_override(raw, override)
    return config_from_dict(raw, source=source)


def config_from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    """Validates a nested mapping (as read from YAML or a checkpoint) into a :class:`Config`."""
    raw = _renamed_keys(raw, source)
    _check_keys(Config, raw, prefix="", source=source)
    try:
        return TypeAdapter(Config).validate_python(raw)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        if first["type"] == "value_error":  # a check of a whole section: its message names the values
            message = first["msg"].removeprefix("Value error, ")
        else:
            message = f"{first['msg']} (got {first.get('input')!r})"
        raise ConfigError(f"{source}: {key}: {message}") from None


def _renamed_keys(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """``raw`` with the keys of earlier versions in today's terms (configs inside older checkpoints still load):
    ``solver.weight_decay_norm_and_bias`` (true: norms and biases decay as weights; false: neither decays)."""
    solver = raw.get("solver")
    if not isinstance(solver, dict) or "weight_decay_norm_and_bias" not in solver:
        return raw
    solver = dict(solver)
    decays = solver.pop("weight_decay_norm_and_bias")
    if not isinstance(decays, bool):
        raise ConfigError(f"{source}: solver.weight_decay_norm_and_bias: expected true or false, got {decays!r}")
    if "weight_decay_norm" in solver or "weight_decay_bias" in solver:
        raise ConfigError(
            f"{source}: solver.weight_decay_norm_and_bias (deprecated) and solver.weight_decay_norm/weight_decay_bias "
            "both given; keep the latter"
        )
    solver["weight_decay_norm"] = solver["weight_decay_bias"] = None if decays else 0.0
    value = "null" if decays else "0.0"
    logger.warning(
        f"{source}: solver.weight_decay_norm_and_bias is deprecated; read as solver.weight_decay_norm={value} "
        f"solver.weight_decay_bias={value}"
    )
    return {**raw, "solver": solver}


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain nested dict of YAML/JSON-safe values (tuples as lists)."""
    return _plain(dataclasses.asdict(config))


def save_config(config: Config, path: str) -> None:
    with open(path, "w", encoding="utf-8") as file:
        yaml.safe_dump(config_to_dict(config), file, sort_keys=False)


def find_config(path: str | os.PathLike) -> Path:
    """``path`` if it exists; else, for a relative path, the shipped config of that name (``coco/base.yaml``
    or ``configs/coco/base.yaml``); else a :class:`ConfigError` naming both places."""
    path = Path(path)
    if path.is_file() or path.is_absolute():
        return path
    shipped = _shipped_config(path)
    if shipped.is_file():
        return shipped
    raise ConfigError(f"config file not found: {path} (neither in the working folder nor shipped as {shipped})")


def _shipped_config(path: Path) -> Path:
    return CONFIG_DIR / (path.relative_to("configs") if path.parts[:1] == ("configs",) else path)


def _read_yaml_with_bases(path: str, seen: tuple[str, ...]) -> dict[str, Any]:
    path = os.path.abspath(path)
    if path in seen:
        raise ConfigError(f"{path}: _base_ cycle through {' -> '.join(seen)}")
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as file:
            data = yaml.safe_load(file) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    bases = data.pop("_base_", [])
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases:
        local = os.path.join(os.path.dirname(path), base)
        shipped = _shipped_config(Path(base))
        base_path = shipped if not os.path.isfile(local) and shipped.is_file() else local
        _merge(merged, _read_yaml_with_bases(base_path, seen + (path,)))
    _merge(merged, data)
    return merged


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r}: expected KEY=VALUE, e.g. solver.base_lr=0.01")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"override {override!r}: value is not valid YAML") from None
    *sections, leaf = key.split(".")
    node = raw
    for section in sections:
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {section} is not a section")
    node[leaf] = value


def _check_keys(schema: type, raw: Any, prefix: str, source: str) -> None:
    """Unknown keys are errors (pydantic ignores them in plain dataclasses); suggests the closest."""
    if not isinstance(raw, dict):
        return
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key, value in raw.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else f"; valid keys: {', '.join(fields)}"
            raise ConfigError(f"{source}: unknown key {prefix}{key}{hint}")
        nested = _dataclass_in(typing.get_type_hints(schema)[key])
        if nested is not None:
            _check_keys(nested, value, f"{prefix}{key}.", source)


def _dataclass_in(annotation: Any) -> type | None:
    candidates = typing.get_args(annotation) or (annotation,)
    return next((c for c in candidates if dataclasses.is_dataclass(c)), None)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
