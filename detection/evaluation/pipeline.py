"""Evaluating a model on a configured dataset: what training's periodic validation and
``tools/eval_det.py`` share."""

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import Config
from ..data.build import build_test_loader, dataset_from_config
from ..distributed import is_main_process
from ..precision import InferencePrecision, resolve_precision
from .inference import run_inference
from .metrics import evaluate_predictions


def build_evaluation_dataset(config: Config, split: str | None = None) -> Any:
    """The test split (or ``split``) of the configured dataset, with every image and no augmentation."""
    return dataset_from_config(config.data, split or config.data.test_split, train=False)


def evaluate_model(
    model: nn.Module,
    dataset: Any,
    config: Config,
    *,
    device: str | torch.device,
    output_dir: str | Path | None = None,
    voc_coco_style: bool = False,
    progress: bool = True,
    precision: InferencePrecision | None = None,
) -> dict[str, float]:
    """Runs ``model`` over ``dataset`` and scores it with the config's metric and test options (with
    ``test.figures``, the figures go to ``output_dir`` too).

    The model runs in ``precision``; None: the config's ``test.precision`` on ``device``.

    Under ``torch.distributed`` every rank runs its shard; the metrics are computed on rank 0 and
    other ranks get an empty dict.
    """
    loader = build_test_loader(dataset, config.test.images_per_batch, num_workers=config.data.num_workers)
    precision = precision or resolve_precision(config.test.precision, device, "test.precision")
    predictions = run_inference(model, loader, device, progress=progress, precision=precision)
    if not is_main_process():
        return {}
    return evaluate_predictions(
        dataset,
        predictions,
        config.metric,
        output_dir,
        coco_backend=config.test.coco_backend,
        voc_method=config.test.voc_method,
        voc_coco_style=voc_coco_style,
        figures=config.test.figures and output_dir is not None,
    )
