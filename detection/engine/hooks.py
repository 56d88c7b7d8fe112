"""What training does around the step: hooks that the :class:`~detection.engine.trainer.Trainer` calls.

A hook subclasses :class:`HookBase` and overrides any of ``before_train``, ``after_step`` and
``after_train``; the trainer calls every hook's method in the order of its list. New periodic work
(an EMA of the weights, early stopping) is a new hook, not an edit of the loop.

The order that :func:`detection.engine.runner.build_hooks` composes, and why it matters:

1. :class:`PeriodicLogger`: the iteration's log line and scalars come before any evaluation output.
2. :class:`EvalHook`: evaluates and records the metrics in ``trainer.evaluations``.
3. :class:`BestCheckpointer`: reads the evaluation of this iteration, so it must come after ``EvalHook``.
4. :class:`PeriodicCheckpointer`: the periodic and final checkpoints, last, so that the final checkpoint
   holds the state after the last evaluation (``best`` included) and a resume from it changes nothing.

Hooks added to a run (``run_training(..., extra_hooks=...)``) come after these and see the same
iteration's evaluation and checkpoints. A stop (a signal, or :meth:`Trainer.request_stop` from a hook)
takes effect after every hook has run for the iteration; the trainer then saves a checkpoint to resume
from, itself, through the same method that saves the last good state when the loss is not finite.
"""

import logging
import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..config import Config
from ..distributed import broadcast_object, is_main_process, raise_together
from ..evaluation.pipeline import evaluate_model
from ..evaluation.plots import read_figures
from ..evaluation.records import RUN_EVALUATION_FOLDER, save_evaluation
from ..inference.drawing import draw_detections
from ..memory import peak_memory_mib
from ..modeling.outputs import detections_to_numpy, eval_mode
from ..precision import resolve_precision
from .events import EventWriter
from .meters import TrainingMeter
from .run_checkpoints import BEST_CHECKPOINT, FINAL_CHECKPOINT, periodic_checkpoint_name

if TYPE_CHECKING:
    from .trainer import Trainer

logger = logging.getLogger(__name__)

VIS_SCORE_THRESHOLD = 0.5
SUMMARY_KEYS = ("bbox/AP", "bbox/AP50", "bbox/AP75", "voc/mAP")


class HookBase:
    """A unit of work around the training step. The trainer sets :attr:`trainer` when it registers the hook.

    Every process of a distributed run calls its hooks; a hook that saves checkpoints or evaluates must
    run on all of them (those collectives involve every process), and one that stops training must
    decide the same everywhere (evaluation metrics are the same on every process).
    """

    trainer: "Trainer"

    def before_train(self) -> None:
        """Before the first iteration (``trainer.iteration`` is where training starts: 0, or the resumed one)."""

    def after_step(self) -> None:
        """After each iteration; ``trainer.iteration`` counts the iterations completed, this one included."""

    def after_train(self) -> None:
        """When the loop ends however it ends: at ``trainer.max_iter``, on a stop, or on an exception."""


class PeriodicLogger(HookBase):
    """Every ``period`` iterations and after the last: the window's mean losses and timings, the learning
    rate, peak memory and the ETA, to the log and the event writer."""

    def __init__(self, writer: EventWriter, period: int) -> None:
        self.writer = writer
        self.period = max(1, period)
        self.meter: TrainingMeter | None = None

    def before_train(self) -> None:
        self.meter = TrainingMeter(self.trainer.max_iter, self.period)

    def after_step(self) -> None:
        if not self.trainer.step_stats:
            return  # no step ran: a resume finishing the work of the iteration it saved
        self.meter.update(self.trainer.step_stats)
        iteration = self.trainer.iteration
        if iteration % self.period == 0 or iteration == self.trainer.max_iter:
            self._log(iteration)

    def after_train(self) -> None:
        self.writer.flush()

    def _log(self, iteration: int) -> None:
        device = self.trainer.device
        values = self.meter.means()
        values["lr"] = self.meter.latest("lr")
        memory = peak_memory_mib(device)
        values["memory/cuda_max_allocated_mb" if device.type == "cuda" else "memory/max_rss_mb"] = memory
        self.writer.write_scalars(values, iteration)
        terms = " ".join(
            f"{tag.removeprefix('loss/')} {value:.4f}"
            for tag, value in values.items()
            if tag.startswith("loss/") and tag != "loss/total"
        )
        logger.info(
            f"iter {iteration}/{self.trainer.max_iter}  loss {values['loss/total']:.4f} ({terms})  "
            f"lr {values['lr']:.3g}  "
            f"time {values['time/iteration']:.3f}s  data {values['time/data']:.3f}s  mem {memory:.0f}MB  "
            f"eta {self.meter.eta(iteration)}"
        )


class EvalHook(HookBase):
    """Evaluates on the test split every ``test.eval_period`` iterations (0: never) and after the last.

    The metrics go to the log, the event writer and ``trainer.evaluations[iteration]``; the first
    ``test.vis_images`` test images are drawn with their detections for TensorBoard. Evaluation draws
    from its own copy of the RNG state, so where it happens does not change training. The result files,
    ``metrics.json``, ``evaluation.json`` and the figures (also sent to TensorBoard) go to
    ``<output_dir>/inference``. The model runs in ``test.precision`` (resolved, and said, at construction).
    """

    def __init__(self, dataset: Any, config: Config, device: torch.device, writer: EventWriter) -> None:
        self.dataset = dataset
        self.config = config
        self.period = config.test.eval_period
        self.device = device
        self.output_dir = os.path.join(config.output_dir, RUN_EVALUATION_FOLDER)
        self.writer = writer
        self.precision = resolve_precision(config.test.precision, device, "test.precision")
        logger.info(f"evaluation in {self.precision.describe()}")

    def after_step(self) -> None:
        iteration = self.trainer.iteration
        if iteration == self.trainer.max_iter or (self.period > 0 and iteration % self.period == 0):
            self.trainer.evaluations[iteration] = self.evaluate(self.trainer.module, iteration)

    def evaluate(self, model: nn.Module, iteration: int) -> dict[str, float]:
        """Metrics of ``model`` (not a DistributedDataParallel wrapper), on every process."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            metrics, error = {}, None
            try:  # the scoring runs on the main process: the others wait for its metrics, or its error
                metrics = evaluate_model(
                    model,
                    self.dataset,
                    self.config,
                    device=self.device,
                    output_dir=self.output_dir,
                    progress=False,
                    precision=self.precision,
                )
            except Exception as caught:
                error = caught
            raise_together(error)
            metrics = broadcast_object(metrics)
            if is_main_process():
                self._report(metrics, iteration)
                self._save(metrics, iteration)
                self._draw_predictions(model, iteration)
        return metrics

    def _report(self, metrics: Mapping[str, float], iteration: int) -> None:
        summary = ", ".join(f"{key} {metrics[key]:.4f}" for key in SUMMARY_KEYS if key in metrics)
        logger.info(
            f"evaluation at iteration {iteration} on {self.config.data.dataset} {self.config.data.test_split}: "
            f"{summary}"
        )
        self.writer.write_scalars({f"eval/{key}": value for key, value in metrics.items()}, iteration)

    def _save(self, metrics: dict[str, float], iteration: int) -> None:
        split = self.config.data.test_split
        save_evaluation(
            self.output_dir,
            metrics,
            self.config,
            split,
            images=len(self.dataset),
            iteration=iteration,
            precision=self.precision.name,
        )
        if self.config.test.figures:
            for name, image in read_figures(self.output_dir).items():
                self.writer.write_image(f"figures/{name}", image, iteration)

    @torch.inference_mode()
    def _draw_predictions(self, model: nn.Module, iteration: int) -> None:
        with eval_mode(model), self.precision.autocast():
            for index in range(min(self.config.test.vis_images, len(self.dataset))):
                image, _ = self.dataset[index]
                detections = detections_to_numpy(model([image.to(self.device)])[0])
                keep = detections["scores"] >= VIS_SCORE_THRESHOLD
                rgb = (image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
                drawn = draw_detections(
                    rgb,
                    detections["boxes"][keep],
                    detections["labels"][keep],
                    self.dataset.class_names,
                    detections["scores"][keep],
                )
                self.writer.write_image(f"predictions/{index}", np.ascontiguousarray(drawn), iteration)


class BestCheckpointer(HookBase):
    """Saves ``model_best.pth`` when this iteration's evaluation improves on ``trainer.state.best`` in
    ``metric`` (higher is better). Comes after :class:`EvalHook`."""

    def __init__(self, metric: str) -> None:
        self.metric = metric

    def after_step(self) -> None:
        state = self.trainer.state
        metrics = self.trainer.evaluations.get(state.iteration)
        if metrics is None:
            return
        value = metrics.get(self.metric)
        if value is None or not math.isfinite(value):
            logger.warning(f"best_metric {self.metric!r} is not a finite evaluation result; no best checkpoint")
            return
        best = state.best
        if best is None or best["name"] != self.metric or value > best["value"]:
            state.best = {"name": self.metric, "value": float(value), "iteration": state.iteration}
            path = self.trainer.checkpointer.save(BEST_CHECKPOINT, state, update_pointer=False)
            logger.info(f"new best {self.metric} {value:.4f} at iteration {state.iteration}: saved {path}")


class PeriodicCheckpointer(HookBase):
    """``model_{iteration:07d}.pth`` every ``period`` iterations and ``model_final.pth`` after the last.
    Comes after the hooks whose results the checkpoint should hold."""

    def __init__(self, period: int) -> None:
        self.period = period

    def after_step(self) -> None:
        trainer = self.trainer
        if trainer.iteration == trainer.max_iter:
            trainer.checkpointer.save(FINAL_CHECKPOINT, trainer.state)
        elif trainer.iteration % self.period == 0:
            trainer.checkpointer.save(periodic_checkpoint_name(trainer.iteration), trainer.state)
