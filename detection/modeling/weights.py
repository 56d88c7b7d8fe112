"""detectron2's trained C4 detectors by name, as torchvision's weights are::

    from detection import FasterRCNN_ResNet101_C4_Weights, fasterrcnn_resnet101_c4

    model = fasterrcnn_resnet101_c4(weights="DEFAULT").eval()  # detectron2's R101-C4 3x: 41.1 COCO box AP
    weights = FasterRCNN_ResNet101_C4_Weights.COCO_DETECTRON2_3X
    weights.meta["categories"], weights.meta["_metrics"], weights.transforms()

Each member's ``url`` is detectron2's model-zoo file (its ``model_zoo/model_zoo.py``). ``meta`` has
torchvision's keys: ``categories`` in label order, ``"__background__"`` first; ``num_params``; ``_metrics``,
the box AP detectron2's MODEL_ZOO.md reports; ``recipe``, detectron2's config; ``_docs``; and ``min_size``,
``max_size``: the test-time resize, as ``FasterRCNN``'s arguments of those names (torchvision's detection
weights use ``min_size`` for the smallest input image instead; any size works here).

The file is downloaded once into torch hub's cache (:mod:`detection.hub`: complete download, sha256 recorded
at first use and checked), converted once (:func:`detection.modeling.detectron2.converted_checkpoint`, the
conversion ``tools/convert_detectron2.py`` does, with its complete key and shape check), and the converted
checkpoint is kept beside it (``<file>.converted.pth``, read with ``weights_only=True``): a later load
neither downloads nor converts. The detector is built with the converter's config for the recipe, so it
gives the same detections as the tool's output.
"""

import difflib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from torchvision.models import Weights, WeightsEnum
from torchvision.transforms._presets import ObjectDetection

from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import CONFIG_DIR, config_to_dict
from ..errors import CheckpointError, WeightsError
from ..hub import CachedFile, cached_file
from .detectron2 import COCO_CLASSES, VOC_CLASSES, converted_checkpoint, detectron2_c4_config
from .msra import MSRA_WEIGHTS

logger = logging.getLogger(__name__)

CONVERTED_SUFFIX = ".converted.pth"  # model_final_298dad.pkl -> model_final_298dad.converted.pth
_ZOO = "https://dl.fbaipublicfiles.com/detectron2/"
_RECIPES = "https://github.com/facebookresearch/detectron2/blob/main/configs/"
_TEST_SIZE = {"min_size": 800, "max_size": 1333}  # detectron2's INPUT.MIN_SIZE_TEST, MAX_SIZE_TEST
_COCO_META = {"categories": ["__background__", *COCO_CLASSES], **_TEST_SIZE}
_VOC_META = {"categories": ["__background__", *VOC_CLASSES], **_TEST_SIZE}
_DOCS = (
    "detectron2's {model} ({schedule}), trained from the MSRA ImageNet weights, converted exactly: the same network "
    "in torchvision's FasterRCNN, resizing as detectron2 does, computes detectron2's detections (docs/detectron2.md). "
    "The AP is detectron2's MODEL_ZOO.md figure."
)


@dataclass(eq=False)  # torchvision's Weights.__eq__
class Detectron2Weights(Weights):
    """Weights of detectron2's model zoo, and what rebuilds their network here.

    Attributes:
        depth: 50 (R50-C4) or 101 (R101-C4).
        recipe_config: the shipped config of their recipe (dataset, evaluation), relative to ``configs/``:
            ``configs/coco/resnet101_3x_detectron2.yaml``'s network, which the converter builds.
    """

    depth: int = 101
    recipe_config: str = "coco/resnet101_3x_detectron2.yaml"


class FasterRCNNC4WeightsEnum(WeightsEnum):
    """detectron2's C4 detectors: ``get_state_dict`` gives the converted state dict, in this toolkit's names."""

    def get_state_dict(self, progress: bool = True, **kwargs: Any) -> dict[str, torch.Tensor]:
        return weights_checkpoint(self, progress=progress)["model"]


class FasterRCNN_ResNet50_C4_Weights(FasterRCNNC4WeightsEnum):
    COCO_DETECTRON2_1X = Detectron2Weights(
        url=_ZOO + "COCO-Detection/faster_rcnn_R_50_C4_1x/137257644/model_final_721ade.pkl",
        transforms=ObjectDetection,
        meta={
            **_COCO_META,
            "num_params": 33799840,
            "recipe": _RECIPES + "COCO-Detection/faster_rcnn_R_50_C4_1x.yaml",
            "_metrics": {"COCO-val2017": {"box_map": 35.7}},
            "_docs": _DOCS.format(model="R50-C4", schedule="1x: 90k iterations of 16 images"),
        },
        depth=50,
    )
    COCO_DETECTRON2_3X = Detectron2Weights(
        url=_ZOO + "COCO-Detection/faster_rcnn_R_50_C4_3x/137849393/model_final_f97cb7.pkl",
        transforms=ObjectDetection,
        meta={
            **_COCO_META,
            "num_params": 33799840,
            "recipe": _RECIPES + "COCO-Detection/faster_rcnn_R_50_C4_3x.yaml",
            "_metrics": {"COCO-val2017": {"box_map": 38.4}},
            "_docs": _DOCS.format(model="R50-C4", schedule="3x: 270k iterations of 16 images"),
        },
        depth=50,
    )
    VOC_DETECTRON2 = Detectron2Weights(
        url=_ZOO + "PascalVOC-Detection/faster_rcnn_R_50_C4/142202221/model_final_b1acc2.pkl",
        transforms=ObjectDetection,
        meta={
            **_VOC_META,
            "num_params": 33185140,
            "recipe": _RECIPES + "PascalVOC-Detection/faster_rcnn_R_50_C4.yaml",
            # VOC2007 test, the 11-point AP at IoU 0.5 (box_map50) and averaged over IoU 0.5:0.95 (box_map)
            "_metrics": {"VOC2007-test": {"box_map50": 80.3, "box_map": 51.9}},
            "_docs": _DOCS.format(model="R50-C4 on VOC 2007+2012 trainval", schedule="18k iterations of 16 images"),
        },
        depth=50,
        recipe_config="voc/resnet50_c4_detectron2.yaml",
    )
    DEFAULT = COCO_DETECTRON2_3X


class FasterRCNN_ResNet101_C4_Weights(FasterRCNNC4WeightsEnum):
    COCO_DETECTRON2_3X = Detectron2Weights(
        url=_ZOO + "COCO-Detection/faster_rcnn_R_101_C4_3x/138204752/model_final_298dad.pkl",
        transforms=ObjectDetection,
        meta={
            **_COCO_META,
            "num_params": 52739744,
            "recipe": _RECIPES + "COCO-Detection/faster_rcnn_R_101_C4_3x.yaml",
            "_metrics": {"COCO-val2017": {"box_map": 41.1}},
            "_docs": _DOCS.format(model="R101-C4, the ResNet paper's detector", schedule="3x: 270k iterations"),
        },
        depth=101,
    )
    DEFAULT = COCO_DETECTRON2_3X


# backbone -> its detector weights, in the order a name without its enum is looked up: the paper's first.
DETECTOR_WEIGHTS: dict[str, type[FasterRCNNC4WeightsEnum]] = {
    "resnet101": FasterRCNN_ResNet101_C4_Weights,
    "resnet50": FasterRCNN_ResNet50_C4_Weights,
}
# How a weights name is written: MEMBER or Enum.MEMBER (members are upper case; a file path never matches).
WEIGHTS_NAME = re.compile(r"(?:([A-Za-z]\w*)\.)?([A-Z][A-Z0-9_]*)")


def detector_backbone(weights: WeightsEnum) -> str | None:
    """The backbone of the detector ``weights`` are for (``"resnet101"``); None for weights of no detector here."""
    return next((backbone for backbone, enum in DETECTOR_WEIGHTS.items() if isinstance(weights, enum)), None)


def get_weight(name: str) -> WeightsEnum:
    """``torchvision.models.get_weight`` that knows these weights too: the member a full name
    (``"FasterRCNN_ResNet101_C4_Weights.COCO_DETECTRON2_3X"``, ``"ResNet101_MSRA_Weights.MSRA"``) names;
    other names are torchvision's (``"ResNet50_Weights.IMAGENET1K_V1"``).

    Raises:
        ValueError: no such enum or member.
    """
    enum_name, _, member = name.partition(".")
    for enum in (*DETECTOR_WEIGHTS.values(), *MSRA_WEIGHTS.values()):
        if enum.__name__ == enum_name:
            if member not in enum.__members__:
                raise ValueError(f"{enum_name} has no {member!r}; it has {', '.join(enum.__members__)}")
            return enum[member]
    return torchvision.models.get_weight(name)


def find_weights(
    text: str, enums: Sequence[type[WeightsEnum]] = tuple(DETECTOR_WEIGHTS.values())
) -> WeightsEnum | None:
    """The member of ``enums`` that ``text`` names, or None when ``text`` is not written as a weights name
    (a file path).

    A name is ``Enum.MEMBER`` or ``MEMBER`` alone, looked up in ``enums`` in order: ``COCO_DETECTRON2_3X``
    and ``DEFAULT`` are ResNet-101's, ``COCO_DETECTRON2_1X`` and ``VOC_DETECTRON2`` ResNet-50's.

    Raises:
        WeightsError: written as a weights name, but not one of ``enums`` (one line listing theirs).
    """
    match = WEIGHTS_NAME.fullmatch(text)
    if match is None:
        return None
    enum_name, member = match.groups()
    for enum in enums:
        if enum_name in (None, enum.__name__) and member in enum.__members__:
            return enum[member]
    known = [f"{enum.__name__}.{name}" for enum in enums for name in enum.__members__]
    close = difflib.get_close_matches(text, known + [name.rpartition(".")[2] for name in known], n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    listing = ", ".join(known) or "none"
    raise WeightsError(f"unknown weights {text!r}{hint} (known: {listing}; a file path has a folder or a suffix)")


def weights_checkpoint(weights: FasterRCNNC4WeightsEnum, *, progress: bool = True) -> dict[str, Any]:
    """A checkpoint of this toolkit holding ``weights`` (``model``, ``config``, ``class_names``,
    ``iteration``), as ``tools/convert_detectron2.py`` writes it: from torch hub's cache, downloaded and
    converted on first use (see the module's notes).

    Raises:
        detection.errors.DownloadError: the file is not in the cache and cannot be downloaded.
        detection.errors.WeightsError: the cached file changed since its first use, or holds another depth.
        detection.modeling.detectron2.ConversionError: the file is not the detectron2 model it should be.
    """
    spec: Detectron2Weights = weights.value
    source = cached_file(weights.url, progress=progress)
    converted = source.path.with_name(source.path.stem + CONVERTED_SUFFIX)
    checkpoint = _read_conversion(converted, source.sha256)
    if checkpoint is None:
        checkpoint = _convert(weights, source, converted)
    # The config is the converter's of today, whatever the cached file stored: it cannot drift from the code.
    config = detectron2_c4_config(spec.depth, CONFIG_DIR / spec.recipe_config)
    return {**checkpoint, "config": config_to_dict(config), "class_names": list(weights.meta["categories"][1:])}


def trained_checkpoint(reference: str, *, progress: bool = True) -> tuple[dict[str, Any], str]:
    """What the tools' ``--weights`` (and ``--checkpoint``) name: detectron2 weights by name (see
    :func:`find_weights`), or a checkpoint file of this toolkit.

    Returns:
        The checkpoint (:func:`weights_checkpoint`, :func:`~detection.checkpoint.load_checkpoint`) and what
        it is, for messages: the weights' full name, or the path.
    """
    weights = find_weights(reference)
    if weights is None:
        return load_checkpoint(reference), reference
    return weights_checkpoint(weights, progress=progress), repr(weights)


def _read_conversion(path: Path, source_sha256: str) -> dict[str, Any] | None:
    """The cached conversion of the file whose sha256 is ``source_sha256``, if it is there and readable."""
    if not path.is_file():
        return None
    try:
        checkpoint = load_checkpoint(path, mmap=True)
    except CheckpointError as error:
        logger.warning(f"{error}; converting again")
        return None
    return checkpoint if checkpoint.get("source_sha256") == source_sha256 else None


def _convert(weights: FasterRCNNC4WeightsEnum, source: CachedFile, output: Path) -> dict[str, Any]:
    spec: Detectron2Weights = weights.value
    logger.info(f"converting {source.path.name} for {weights!r} (once: kept as {output.name})")
    class_names = weights.meta["categories"][1:]
    checkpoint, summary = converted_checkpoint(source.path, class_names, num_classes=len(class_names))
    if summary.depth != spec.depth:
        raise WeightsError(
            f"{source.path}: an R{summary.depth}-C4 model, but {weights!r} is R{spec.depth}-C4; delete it to "
            "download the right file"
        )
    checkpoint["source_sha256"] = source.sha256  # which file this conversion is of
    try:
        save_checkpoint(output, checkpoint)
    except OSError as error:  # a cache shared read-only
        logger.warning(f"{output}: not written ({error.strerror or error}); the file is converted at each load")
    return checkpoint
