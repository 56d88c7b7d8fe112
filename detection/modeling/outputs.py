"""A detector's detections as the rest of the package uses them: numpy arrays, per image and per dataset.

torchvision's detectors in eval mode return, per image, a dict of tensors ``boxes`` ``[n, 4]`` (xyxy,
in the pixels of the image given), ``scores`` ``[n]`` and ``labels`` ``[n]`` (``1..K``).
"""

import contextlib
from collections.abc import Iterator, Mapping
from typing import TypedDict

import numpy as np
from torch import Tensor, nn


class Detections(TypedDict):
    """One image's detections: ``boxes`` float32 ``[n, 4]`` xyxy, ``scores`` float32 ``[n]``,
    ``labels`` int64 ``[n]`` in ``1..K``."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


# Dataset index -> that image's detections in its original pixels: what ``run_inference`` returns and
# ``evaluate_predictions`` scores (which accepts any array-likes of these shapes).
Predictions = Mapping[int, Detections]


def detections_to_numpy(output: Mapping[str, Tensor]) -> Detections:
    """One image's model output as :class:`Detections` on the CPU (float32 even from a bf16/fp16 model)."""
    return {
        "boxes": output["boxes"].float().cpu().numpy().reshape(-1, 4),
        "scores": output["scores"].float().cpu().numpy(),
        "labels": output["labels"].cpu().numpy().astype(np.int64),
    }


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block; its previous mode (every submodule's) restored after."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
