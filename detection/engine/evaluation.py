"""Evaluation during training: the evaluation module's metrics and figures, logged, plus a panel of predictions."""

import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import Config
from ..distributed import broadcast_object, is_main_process
from ..evaluation.pipeline import evaluate_model
from ..evaluation.plots import read_figures
from ..evaluation.records import RUN_EVALUATION_FOLDER, save_evaluation
from ..inference.drawing import draw_detections
from .events import EventWriter

VIS_SCORE_THRESHOLD = 0.5
SUMMARY_KEYS = ("bbox/AP", "bbox/AP50", "bbox/AP75", "voc/mAP")


class TrainingEvaluator:
    """Evaluates the model on the test split and reports to the log and the event writer.

    Evaluation draws from its own copy of the RNG state, so where it happens does not change training.
    The results files, ``metrics.json``, ``evaluation.json`` and the figures (also sent to TensorBoard) go
    to ``output_dir/inference``.
    """

    def __init__(
        self,
        dataset: Any,
        config: Config,
        device: torch.device,
        output_dir: str,
        writer: EventWriter,
        logger: logging.Logger,
    ) -> None:
        self.dataset = dataset
        self.config = config
        self.device = device
        self.output_dir = os.path.join(output_dir, RUN_EVALUATION_FOLDER)
        self.writer = writer
        self.logger = logger

    def __call__(self, model: nn.Module, iteration: int) -> dict[str, float]:
        """Metrics of ``model`` (not a DistributedDataParallel wrapper), on every rank."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            metrics = evaluate_model(
                model, self.dataset, self.config, device=self.device, output_dir=self.output_dir, progress=False
            )
            metrics = broadcast_object(metrics)
            if is_main_process():
                self._report(metrics, iteration)
                self._save(metrics, iteration)
                self._draw_predictions(model, iteration)
        return metrics

    def _report(self, metrics: Mapping[str, float], iteration: int) -> None:
        summary = ", ".join(f"{key} {metrics[key]:.4f}" for key in SUMMARY_KEYS if key in metrics)
        self.logger.info(
            f"evaluation at iteration {iteration} on {self.config.data.dataset} {self.config.data.test_split}: "
            f"{summary}"
        )
        self.writer.write_scalars({f"eval/{key}": value for key, value in metrics.items()}, iteration)

    def _save(self, metrics: dict[str, float], iteration: int) -> None:
        split = self.config.data.test_split
        save_evaluation(self.output_dir, metrics, self.config, split, images=len(self.dataset), iteration=iteration)
        if self.config.test.figures:
            for name, image in read_figures(self.output_dir).items():
                self.writer.write_image(f"figures/{name}", image, iteration)

    @torch.inference_mode()
    def _draw_predictions(self, model: nn.Module, iteration: int) -> None:
        was_training = model.training
        model.eval()
        try:
            for index in range(min(self.config.test.vis_images, len(self.dataset))):
                image, _ = self.dataset[index]
                output = model([image.to(self.device)])[0]
                keep = output["scores"] >= VIS_SCORE_THRESHOLD
                rgb = (image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
                drawn = draw_detections(
                    rgb,
                    output["boxes"][keep].float().cpu().numpy(),
                    output["labels"][keep].cpu().numpy(),
                    self.dataset.class_names,
                    output["scores"][keep].float().cpu().numpy(),
                )
                self.writer.write_image(f"predictions/{index}", np.ascontiguousarray(drawn), iteration)
        finally:
            model.train(was_training)
