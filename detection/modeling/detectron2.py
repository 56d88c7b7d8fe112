"""detectron2's C4 Faster R-CNN checkpoints as checkpoints of this toolkit.

detectron2 publishes its models as pickles (``model_final_*.pkl``: ``{"model": {name: numpy array},
"__author__": ...}``) and writes ``.pth`` files from its ``Checkpointer`` (``{"model": {name: tensor},
...}``). :func:`convert_detectron2_checkpoint` maps either to a torchvision ``FasterRCNN`` built by
:func:`~detection.modeling.detector.build_detector` from ``configs/coco/resnet101_3x_detectron2.yaml``
(stride in the 1x1 convs, MSRA input normalisation, detectron2's anchors and test settings):

| detectron2 | here |
|---|---|
| ``backbone.{stem,res2,res3,res4}.*`` | ``backbone.*`` (torchvision ResNet names) |
| ``roi_heads.res5.*`` | ``roi_heads.box_head.layer4.*`` |
| ``proposal_generator.rpn_head.{conv,objectness_logits,anchor_deltas}`` | ``rpn.head.{conv.0.0,cls_logits,bbox_pred}``|
| ``roi_heads.box_predictor.cls_score``: K + 1 rows, background last | background row first |
| ``roi_heads.box_predictor.bbox_pred``: 4K rows, no background | 4 (K + 1) rows, background's zero |

The weights keep their BGR input order; the detector's transform feeds them BGR 0..255 minus the MSRA mean,
as detectron2 does (``channel_order``, ``pixel_scale``). The RPN head's rows need no permutation: the
anchors here are in detectron2's order (:mod:`detection.modeling.anchors`).
"""

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from backbones.detectron2_names import is_caffe2_resnet, torchvision_resnet_key
from backbones.pickles import load_array_pickle

from ..checkpoint import load_model_state, save_checkpoint
from ..config import CONFIG_DIR, Config, config_to_dict, load_config
from ..errors import CheckpointError
from .factory import detector_from_config

DETECTRON2_C4_CONFIG = CONFIG_DIR / "coco" / "resnet101_3x_detectron2.yaml"
# Blocks in res4 -> depth: ResNet-50 has 6, ResNet-101 23 (res5 has 3 in both).
RES4_BLOCKS_TO_DEPTH = {6: 50, 23: 101}
RPN_NAMES = {"conv": "conv.0.0", "objectness_logits": "cls_logits", "anchor_deltas": "bbox_pred"}
# Buffers detectron2 may store that carry no weights: the input normalisation (checked against MSRA's)
# and the anchors (recomputed).
PIXEL_KEYS = ("pixel_mean", "pixel_std")


# The 80 category names of COCO's instances_*.json (2014, 2017) in category-id order (ids 1..90 with gaps):
# the class order of detectron2's COCO models, stored with a converted model unless --classes says otherwise.
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip
# The 20 PASCAL VOC classes in the order of detectron2's VOC models (its pascal_voc.py CLASS_NAMES), which is
# this toolkit's VOC order too (detection.data.voc.VOC_CLASSES).
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


class ConversionError(CheckpointError):
    """The file is not a detectron2 C4 Faster R-CNN checkpoint this converter understands."""


@dataclass
class ConvertedModel:
    """A detectron2 model in this toolkit's terms.

    Attributes:
        state_dict: for the detector that ``config.model`` builds with ``num_classes = len(class_names) + 1``.
        config: ``configs/coco/resnet101_3x_detectron2.yaml`` for the model's depth, without weights files.
        depth: 50 or 101.
        iteration: detectron2's iteration count where the file has one, else 0.
    """

    state_dict: dict[str, torch.Tensor]
    config: Config
    depth: int
    iteration: int


@dataclass
class ConversionSummary:
    """A written conversion: ResNet depth, class names, detectron2's iteration, the model's parameter count."""

    depth: int
    class_names: list[str]
    iteration: int
    parameters: int


def read_detectron2_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], int]:
    """The model state dict of a detectron2 file (model-zoo ``.pkl`` or ``Checkpointer`` ``.pth``) and its
    iteration (0 if not stored). Neither format runs code when read.

    Raises:
        ConversionError: missing, unreadable, or not a detectron2 model file (one line naming it).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConversionError(f"detectron2 checkpoint not found: {path}")
    try:
        content = load_array_pickle(path) if path.endswith(".pkl") else _load_pth(path)
    except ValueError as error:
        raise ConversionError(str(error)) from None
    if is_caffe2_resnet(content) or is_caffe2_resnet(content.get("blobs") if isinstance(content, dict) else None):
        raise ConversionError(
            f"{path}: ImageNet backbone weights (MSRA caffe2), not a detector; train from them with "
            "model.weights, e.g. configs/coco/resnet101_3x_detectron2.yaml"
        )
    model = content.get("model") if isinstance(content, dict) else None
    if not isinstance(model, dict) or not model:
        raise ConversionError(f"{path}: not a detectron2 checkpoint (expected a 'model' mapping of weights)")
    try:
        state_dict = {str(key): torch.as_tensor(np.asarray(value)) for key, value in model.items()}
    except (TypeError, ValueError) as error:
        raise ConversionError(f"{path}: the 'model' entries are not all arrays ({error})") from None
    iteration = content.get("iteration", 0)
    return state_dict, int(iteration) if isinstance(iteration, (int, np.integer)) else 0


def _load_pth(path: str) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path}: not a readable PyTorch file ({reason})") from None


def detectron2_depth(state_dict: dict[str, torch.Tensor], source: str) -> int:
    """50 or 101, from the number of res4 blocks of a detectron2 C4 model.

    Raises:
        ConversionError: not a C4 ResNet-50/101 Faster R-CNN (an FPN model, another depth, a mask head).
    """
    if any(key.startswith("backbone.bottom_up.") for key in state_dict):
        raise ConversionError(f"{source}: an FPN model; only C4 models (res5 as the box head) convert")
    if not any(key.startswith("roi_heads.res5.") for key in state_dict):
        raise ConversionError(f"{source}: no roi_heads.res5: not a detectron2 C4 Faster R-CNN")
    blocks = {int(match.group(1)) for key in state_dict if (match := re.match(r"backbone\.res4\.(\d+)\.", key))}
    depth = RES4_BLOCKS_TO_DEPTH.get(len(blocks))
    if depth is None:
        raise ConversionError(f"{source}: {len(blocks)} res4 blocks; R50-C4 has 6 and R101-C4 23")
    return depth


def detectron2_num_classes(state_dict: dict[str, torch.Tensor], source: str) -> int:
    """K, the foreground classes of the box predictor (``cls_score`` has K + 1 rows)."""
    scores = state_dict.get("roi_heads.box_predictor.cls_score.weight")
    if scores is None or scores.dim() != 2 or scores.shape[0] < 2:
        shape = "none" if scores is None else list(scores.shape)
        raise ConversionError(f"{source}: roi_heads.box_predictor.cls_score.weight is {shape}; expected [K + 1, C]")
    return scores.shape[0] - 1


def convert_detectron2_checkpoint(path: str | os.PathLike, num_classes: int | None = None) -> ConvertedModel:
    """Reads a detectron2 R50-C4 or R101-C4 Faster R-CNN and maps it to this toolkit's detector.

    Args:
        num_classes: the foreground classes expected (checked against the file), if given.

    Raises:
        ConversionError: unreadable file, another architecture, or keys that do not map (all listed).
    """
    source = os.fspath(path)
    d2_state, iteration = read_detectron2_checkpoint(source)
    depth = detectron2_depth(d2_state, source)
    found = detectron2_num_classes(d2_state, source)
    if num_classes is not None and num_classes != found:
        raise ConversionError(f"{source}: a box predictor for {found} classes, expected {num_classes}")
    _check_pixels(d2_state, source)
    state_dict, unknown = {}, []
    for key, value in d2_state.items():
        if key in PIXEL_KEYS or key.startswith("proposal_generator.anchor_generator."):
            continue
        try:
            state_dict.update(_convert_entry(key, value))
        except KeyError:
            unknown.append(key)
    if unknown:
        raise ConversionError(f"{source}: keys of no C4 Faster R-CNN part: {_listing(unknown)}")
    return ConvertedModel(state_dict, detectron2_c4_config(depth), depth, iteration)


def detectron2_c4_config(depth: int, recipe: str | os.PathLike = DETECTRON2_C4_CONFIG) -> Config:
    """detectron2's C4 recipe (``configs/coco/resnet101_3x_detectron2.yaml``: stride in the 1x1 convs,
    FrozenBN, MSRA input normalisation) for ResNet-``depth``, with no weights file.

    Args:
        recipe: a shipped config built on that one, for a model trained on other data (the VOC model's
            ``configs/voc/resnet50_c4_detectron2.yaml``: its dataset and evaluation, the same network).
    """
    return load_config(os.fspath(recipe), [f"model.backbone=resnet{depth}", "model.weights=null"])


def converted_checkpoint(
    source: str | os.PathLike, class_names: Sequence[str] | None = None, num_classes: int | None = None
) -> tuple[dict, ConversionSummary]:
    """Converts ``source`` to a checkpoint of this toolkit (what :func:`~detection.checkpoint.save_checkpoint`
    writes), after loading it strictly into the detector its config builds (so every key is known to fit).

    Args:
        class_names: the K foreground names in the model's class order; default: COCO's 80 names when
            the model has 80 classes.
        num_classes: K, checked against the file.

    Returns:
        The checkpoint (``model``, ``config``, ``class_names``, ``iteration``) and what it holds.
    """
    converted = convert_detectron2_checkpoint(source, num_classes)
    k = detectron2_num_classes(converted.state_dict, os.fspath(source))
    names = list(class_names) if class_names is not None else (list(COCO_CLASSES) if k == len(COCO_CLASSES) else [])
    if len(names) != k:
        raise ConversionError(
            f"{os.fspath(source)}: the model has {k} classes; pass their {k} names with --classes (got {len(names)})"
        )
    model = detector_from_config(converted.config.model, k + 1, backbone_weights=False)
    load_model_state(model, converted.state_dict, os.fspath(source))
    checkpoint = {
        "model": model.state_dict(),
        "config": config_to_dict(converted.config),
        "class_names": names,
        "iteration": converted.iteration,
    }
    parameters = sum(parameter.numel() for parameter in model.parameters())
    return checkpoint, ConversionSummary(converted.depth, names, converted.iteration, parameters)


def write_converted_checkpoint(
    source: str | os.PathLike,
    output: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
) -> ConversionSummary:
    """Converts ``source`` (:func:`converted_checkpoint`) and saves it as a checkpoint of this toolkit at
    ``output``; returns what was written."""
    checkpoint, summary = converted_checkpoint(source, class_names, num_classes)
    save_checkpoint(output, checkpoint)
    return summary


def _convert_entry(key: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    """One detectron2 entry as this toolkit's entries (usually one); ``KeyError`` if it maps to none."""
    value = value.float()
    if key.startswith("backbone."):
        return {"backbone." + torchvision_resnet_key(key.removeprefix("backbone.")): value}
    if key.startswith("roi_heads.res5."):
        return {"roi_heads.box_head." + torchvision_resnet_key(key.removeprefix("roi_heads.")): value}
    rpn = re.fullmatch(r"proposal_generator\.rpn_head\.(conv|objectness_logits|anchor_deltas)\.(weight|bias)", key)
    if rpn:
        return {f"rpn.head.{RPN_NAMES[rpn.group(1)]}.{rpn.group(2)}": value}
    if key.startswith("roi_heads.box_predictor.cls_score."):
        return {key: torch.cat([value[-1:], value[:-1]])}  # background row from last to first
    if key.startswith("roi_heads.box_predictor.bbox_pred."):
        return {key: torch.cat([torch.zeros_like(value[:4]), value])}  # background's deltas, never used
    raise KeyError(key)


def _check_pixels(state_dict: dict[str, torch.Tensor], source: str) -> None:
    expected = {"pixel_mean": (103.530, 116.280, 123.675), "pixel_std": (1.0, 1.0, 1.0)}
    for key in PIXEL_KEYS:
        if key in state_dict and not np.allclose(state_dict[key].flatten().numpy(), expected[key], atol=1e-3):
            raise ConversionError(
                f"{source}: {key} {state_dict[key].flatten().tolist()} (BGR); the converter handles the MSRA "
                f"convention {list(expected[key])} only"
            )


def _listing(keys: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(sorted(keys)[:limit])
    return f"{shown} (and {len(keys) - limit} more)" if len(keys) > limit else shown
