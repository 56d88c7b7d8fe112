"""A training (or evaluation-only) run from a config: what ``tools/train_det.py`` calls.

Builds the datasets, the model, the optimizer and the loop on this process, joins the ``torchrun``
process group if there is one, and restores ``--resume`` or ``--weights`` checkpoints.
"""

import dataclasses
import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import check_class_names, checkpoint_config, load_checkpoint, load_model_state
from ..config import Config, SolverConfig, save_config
from ..data.build import build_train_loader, dataset_from_config
from ..distributed import destroy_distributed, get_rank, get_world_size, init_distributed, is_main_process
from ..errors import CheckpointError, ConfigError
from ..evaluation.pipeline import build_evaluation_dataset
from ..logs import setup_logging
from ..modeling.factory import architecture_differences, detector_from_config, resolve_model_config
from .events import EventWriter
from .hooks import BestCheckpointer, EvalHook, HookBase, PeriodicCheckpointer, PeriodicLogger
from .lr_schedule import build_lr_scheduler
from .optimizer import build_optimizer
from .precision import Precision
from .run_checkpoints import Checkpointer, TrainingState, find_resume_checkpoint
from .trainer import Trainer

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"


@dataclass(frozen=True)
class RunOptions:
    """The command line's choices beyond the config.

    Attributes:
        resume: a checkpoint path, ``"auto"`` (the newest in the output folder) or None.
        weights: a checkpoint whose model initialises this one (no optimizer state, no iteration);
            box predictor weights of another class count are skipped.
        eval_only: evaluate the ``resume`` or ``weights`` model and exit.
    """

    resume: str | None = None
    weights: str | None = None
    eval_only: bool = False


def run_training(config: Config, options: RunOptions = RunOptions(), extra_hooks: Sequence[HookBase] = ()) -> int:
    """Trains (or evaluates) as ``config`` says; returns the process exit code.

    Args:
        extra_hooks: called after the hooks of :func:`build_hooks` (early stopping, say); see
            :mod:`detection.engine.hooks`.

    Raises:
        UserError: a config, dataset or checkpoint problem (one readable line).
        NonFiniteLossError: training diverged (the last good state is saved).
    """
    if options.eval_only and not (options.resume or options.weights):
        raise ConfigError("--eval-only needs the model to evaluate: --weights PATH or --resume [PATH]")
    device = init_distributed(_device_type(config.device))
    try:
        return _run(config, options, device, extra_hooks)
    finally:
        destroy_distributed()


def images_per_process(solver: SolverConfig, world_size: int) -> int:
    """Images in one forward pass of one process: the step's total over processes and accumulated batches."""
    share = world_size * solver.accumulate_grad_batches
    if solver.images_per_batch % share:
        raise ConfigError(
            f"solver.images_per_batch={solver.images_per_batch} must be a multiple of the number of processes "
            f"({world_size}) times solver.accumulate_grad_batches ({solver.accumulate_grad_batches})"
        )
    return solver.images_per_batch // share


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_hooks(config: Config, evaluator: EvalHook, writer: EventWriter) -> list[HookBase]:
    """Training's hooks, in the order that matters (see :mod:`detection.engine.hooks`)."""
    return [
        PeriodicLogger(writer, config.log_period),
        evaluator,
        BestCheckpointer(config.best_metric_name),
        PeriodicCheckpointer(config.solver.checkpoint_period),
    ]


def _run(config: Config, options: RunOptions, device: torch.device, extra_hooks: Sequence[HookBase]) -> int:
    rank, world_size = get_rank(), get_world_size()
    config = dataclasses.replace(config, model=resolve_model_config(config.model))
    batch_per_process = images_per_process(config.solver, world_size)
    setup_logging(config.output_dir, is_main_process())
    resume_path = find_resume_checkpoint(options.resume, config.output_dir) if options.resume else None
    weights_path = resume_path if options.eval_only and resume_path else options.weights
    weights = load_checkpoint(weights_path) if weights_path else None
    seed_everything(config.seed + rank)

    test_set = build_evaluation_dataset(config)
    class_names = list(test_set.class_names)
    train_set = None if options.eval_only else _training_dataset(config, class_names)
    model = detector_from_config(config.model, len(class_names) + 1)
    if weights is not None:
        _load_weights(model, config, weights, weights_path, class_names, fine_tune=not options.eval_only)
    model.to(device)
    if config.solver.channels_last:
        model.to(memory_format=torch.channels_last)
    if is_main_process():
        save_config(config, os.path.join(config.output_dir, CONFIG_FILE))
        logger.info(
            f"config written to {os.path.join(config.output_dir, CONFIG_FILE)}; "
            f"{world_size} process(es) on {device.type}"
        )

    writer = EventWriter(config.output_dir, enabled=is_main_process())
    try:
        evaluator = EvalHook(test_set, config, device, writer)
        if options.eval_only:
            evaluator.evaluate(model, int(weights.get("iteration") or 0))
            return 0
        optimizer = build_optimizer(model, config.solver)
        scheduler = build_lr_scheduler(optimizer, config.solver)
        precision = Precision(config.solver.amp, device, logger)
        logger.info(f"training in {precision.describe()}")
        checkpointer = Checkpointer(
            config.output_dir, model, optimizer, scheduler, precision.scaler, config, class_names
        )
        state = TrainingState()
        if resume_path:
            state = checkpointer.resume(resume_path, rank)
            logger.info(f"resumed from {resume_path} at iteration {state.iteration}")
        elif checkpointer.has_checkpoint():
            logger.warning(
                f"{config.output_dir} has checkpoints of an earlier run; starting over (pass --resume to continue it)"
            )
        if state.iteration >= config.solver.max_iter:
            logger.info(f"already trained to solver.max_iter={config.solver.max_iter}; nothing to do")
            return 0
        if resume_path and state.rng is None:
            logger.warning(
                "the checkpoint's RNG states are for another number of processes; the run continues, not bit-exactly"
            )
            seed_everything(config.seed + rank + state.iteration)

        loader = build_train_loader(
            train_set,
            batch_per_process,
            num_workers=config.data.num_workers,
            seed=config.seed,
            start_iter=state.iteration * config.solver.accumulate_grad_batches,
            aspect_ratio_grouping=config.data.aspect_ratio_grouping,
        )
        ddp_model = model
        if world_size > 1:
            ddp_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        hooks = [*build_hooks(config, evaluator, writer), *extra_hooks]
        trainer = Trainer(ddp_model, optimizer, scheduler, config.solver, precision, checkpointer, device, hooks)
        return trainer.train(iter(loader), state)
    finally:
        writer.close()


def _training_dataset(config: Config, class_names: list[str]) -> Any:
    dataset = dataset_from_config(config.data, config.data.train_split, train=True)
    if list(dataset.class_names) != class_names:
        raise ConfigError(
            f"the train split's classes {list(dataset.class_names)} differ from the test split's {class_names}"
        )
    return dataset


def _load_weights(
    model: torch.nn.Module, config: Config, checkpoint: dict, path: str, class_names: list[str], fine_tune: bool
) -> None:
    """``--weights``: the checkpoint's model only; for fine-tuning, a predictor for other classes is skipped.

    The run's config must build the architecture the weights were trained in (same network, stride
    placement and input convention), or the loaded weights would compute something else.
    """
    differences = architecture_differences(checkpoint_config(checkpoint, path).model, config.model)
    if differences:
        raise CheckpointError(
            f"{path}: trained as another architecture than this config builds ({'; '.join(differences)}); "
            "use a config that matches it (for converted detectron2 models, configs/*/*_detectron2.yaml) "
            "or set those keys with --opts"
        )
    stored = list(checkpoint.get("class_names") or [])
    if not fine_tune:
        check_class_names(path, stored, class_names)
    skipped = load_model_state(model, checkpoint["model"], path, skip_mismatched_predictor=fine_tune)
    logger.info(
        f"initialised the model from {path}"
        + (f"; skipped the box predictor ({len(stored)} classes there, {len(class_names)} here)" if skipped else "")
    )


def _device_type(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but CUDA is not available; use device=cpu or device=auto")
    return requested
