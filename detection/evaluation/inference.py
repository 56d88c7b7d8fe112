"""Runs a detector over a test loader and collects its predictions in the evaluation format."""

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..distributed import all_gather_object, is_main_process, raise_together
from ..modeling.outputs import Detections, Predictions, detections_to_numpy, eval_mode
from ..precision import InferencePrecision, autocast_for


def run_inference(
    model: nn.Module,
    data_loader: Iterable[Any],
    device: torch.device | str,
    progress: bool = True,
    precision: InferencePrecision | None = None,
) -> dict[int, Detections]:
    """Predictions of ``model`` on every image of ``data_loader``, keyed by dataset index.

    Args:
        model: a torchvision detector; given a list of images ``[3, H, W]`` it returns one dict per image
            with ``boxes`` ``[n, 4]`` in the input image's pixels, ``scores`` ``[n]``, ``labels`` ``[n]``.
        data_loader: yields ``(images, targets)``: lists of ``[3, H, W]`` images and of targets with
            ``index`` (the dataset position), as the test loader does.
        device: where the model runs; the images are moved there.
        progress: show a progress bar (on rank 0 only).
        precision: autocast the model runs under; None: float32.

    The model runs in eval mode under ``torch.inference_mode``; its previous mode is restored afterwards.
    With ``torch.distributed`` initialised each rank predicts its share of the loader and every rank
    returns the predictions of all ranks.
    """
    device = torch.device(device)
    predictions: dict[int, Detections] = {}
    error = None
    try:
        with eval_mode(model), torch.inference_mode(), autocast_for(precision):
            for images, targets in tqdm(data_loader, desc="inference", disable=not progress or not is_main_process()):
                outputs = model([image.to(device) for image in images])
                for target, output in zip(targets, outputs):
                    predictions[int(target["index"])] = detections_to_numpy(output)
    except Exception as caught:  # an unreadable image: on every process, not only on the one that read it
        error = caught
    raise_together(error)
    return _gather(predictions)


def _gather(predictions: Predictions) -> dict[int, Detections]:
    """All ranks' predictions merged, in index order (a sampler's padding repeats images: kept once)."""
    merged = {index: prediction for part in all_gather_object(predictions) for index, prediction in part.items()}
    return dict(sorted(merged.items()))
