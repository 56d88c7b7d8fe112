"""A training (or evaluation-only) run from a config: what ``tools/train_det.py`` calls.

Builds the datasets, the model, the optimizer and the loop on this process, joins the ``torchrun``
process group if there is one, and restores ``--resume`` or ``--weights`` checkpoints.

Before it writes anything, a run checks what would be lost: a resume that changes what it may not
(:mod:`.resume`), a new run in a folder that holds one (:mod:`.run_folder`). Those refusals leave the
folder as it was; any later user error that ends the run is also the last line of ``log.txt``.
"""

import contextlib
import dataclasses
import logging
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import check_class_names, checkpoint_config, load_checkpoint, load_model_state
from ..config import Config, SolverConfig
from ..data.build import build_train_loader, dataset_from_config
from ..distributed import (
    broadcast_object,
    destroy_distributed,
    get_rank,
    get_world_size,
    init_distributed,
    is_main_process,
    restarted_by_torchrun,
)
from ..errors import CheckpointError, ConfigError, UserError
from ..evaluation.pipeline import build_evaluation_dataset
from ..logs import LOG_FILE_ONLY, setup_logging
from ..modeling.factory import architecture_differences, detector_from_config, resolve_model_config
from ..modeling.weights import trained_checkpoint
from .events import EventWriter
from .hooks import BestCheckpointer, EvalHook, HookBase, PeriodicCheckpointer, PeriodicLogger
from .lr_schedule import build_lr_scheduler
from .optimizer import build_optimizer
from .precision import Precision
from .resume import ConfigChange, restart_checkpoint, resume_changes
from .run_checkpoints import Checkpointer, TrainingState, find_resume_checkpoint
from .run_folder import (
    CONFIG_FILE,
    RunFolderError,
    claim_run_folder,
    preview_names,
    run_results,
    same_folder,
    write_run_config,
)
from .trainer import Trainer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """The command line's choices beyond the config.

    Attributes:
        resume: a checkpoint path, ``"auto"`` (the newest in the output folder) or None. The config
            must be the checkpoint's, with only the changes :mod:`detection.engine.resume` allows.
        weights: a checkpoint whose model initialises this one (no optimizer state, no iteration), or named
            weights (:func:`detection.modeling.weights.trained_checkpoint`); box predictor weights of another
            class count are skipped.
        eval_only: evaluate the ``resume`` or ``weights`` model and exit.
        overwrite: start a new run in an output folder that holds one, deleting that run's files.
    """

    resume: str | None = None
    weights: str | None = None
    eval_only: bool = False
    overwrite: bool = False


@dataclass(frozen=True)
class _ResumePoint:
    """The checkpoint a run resumes from, the iteration saved in it, and the config changes made.

    ``path`` None: a torchrun restart of a run that had saved no checkpoint starts it over in its folder.
    """

    path: str | None
    iteration: int
    changes: list[ConfigChange]


def run_training(config: Config, options: RunOptions = RunOptions(), extra_hooks: Sequence[HookBase] = ()) -> int:
    """Trains (or evaluates) as ``config`` says; returns the process exit code.

    Args:
        extra_hooks: called after the hooks of :func:`build_hooks` (early stopping, say); see
            :mod:`detection.engine.hooks`.

    Raises:
        UserError: a config, dataset or checkpoint problem (one readable line); a resume that would
            change the run; an output folder that holds a run (without ``options.overwrite``).
        NonFiniteLossError: training diverged (the last good state is saved).
        TrainingDataError: an image could not be read (the state before it is saved).
        HookError: a hook's work after an iteration failed, such as an evaluation (the state after it is saved).
    """
    if options.eval_only and not (options.resume or options.weights):
        raise ConfigError("--eval-only needs the model to evaluate: --weights PATH or --resume [PATH]")
    if options.resume and options.weights:
        raise ConfigError("--resume continues a run with its own model, --weights starts a new one: give one of them")
    if options.resume and options.overwrite:
        raise ConfigError("--resume continues the run in the output folder, --overwrite deletes it: give one of them")
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
    config = dataclasses.replace(config, model=resolve_model_config(config.model))
    images_per_process(config.solver, get_world_size())
    restarted = not options.eval_only and restarted_by_torchrun()
    if restarted:
        options, resume = _restart_point(config, options)
    else:
        resume = _resume_point(config, options) if options.resume else None
    removed = _claim_output_dir(config.output_dir, options, resume)
    setup_logging(config.output_dir, is_main_process())
    try:
        if restarted:
            logger.info(
                "torchrun restarted the processes: "
                + (f"continuing from {resume.path}" if resume and resume.path else "starting the run over")
            )
        if removed:
            deleted = preview_names(removed)
            logger.info(f"--overwrite: deleted the earlier run's files in {config.output_dir}: {deleted}")
        for change in resume.changes if resume else ():
            logger.info(f"resume: {change}")
        return _train_or_evaluate(config, options, device, extra_hooks, resume)
    except UserError as error:
        logger.error(f"error: {error}", extra=LOG_FILE_ONLY)  # the tool prints it on stderr
        raise


def _resume_point(config: Config, options: RunOptions) -> _ResumePoint:
    """The checkpoint to resume, checked against ``config`` (reads only its config and iteration)."""
    path = find_resume_checkpoint(options.resume, config.output_dir)
    checkpoint = load_checkpoint(path, mmap=True)
    iteration = int(checkpoint.get("iteration") or 0)
    changes = resume_changes(checkpoint_config(checkpoint, path), config, iteration, path)
    return _ResumePoint(path, iteration, changes)


def _restart_point(config: Config, options: RunOptions) -> tuple[RunOptions, _ResumePoint | None]:
    """Where a torchrun restart continues (:func:`.resume.restart_checkpoint`), as the options of a resume and
    its point; the main process decides, every process raises the same error."""
    path, starts_over, refusal = None, False, None
    if is_main_process():
        try:
            path = restart_checkpoint(config, options.resume)
            starts_over = path is None and bool(run_results(config.output_dir))
        except UserError as error:
            refusal = str(error)
    path, starts_over, refusal = broadcast_object((path, starts_over, refusal))
    if refusal is not None:
        raise RunFolderError(refusal)
    if path is None:
        options = dataclasses.replace(options, overwrite=False)
        return options, _ResumePoint(None, 0, []) if starts_over else None
    options = dataclasses.replace(options, resume=path, weights=None, overwrite=False)
    return options, _resume_point(config, options)


def _claim_output_dir(output_dir: str, options: RunOptions, resume: _ResumePoint | None) -> list[str]:
    """Refuses an output folder that holds another run (or, with ``overwrite``, deletes that run's files).

    The main process decides; every process raises the same error. Returns the names deleted.
    """
    refusal, removed = None, []
    if is_main_process():
        try:
            if resume is None:
                removed = claim_run_folder(output_dir, overwrite=options.overwrite, eval_only=options.eval_only)
            elif (
                resume.path is not None
                and not same_folder(os.path.dirname(resume.path), output_dir)
                and run_results(output_dir)
            ):
                raise RunFolderError(
                    f"{output_dir} holds another run; resume {resume.path} in its own folder or in a folder "
                    "without a run"
                )
        except RunFolderError as error:
            refusal = str(error)
    refusal, removed = broadcast_object((refusal, removed))
    if refusal is not None:
        raise RunFolderError(refusal)
    return removed


def _train_or_evaluate(
    config: Config,
    options: RunOptions,
    device: torch.device,
    extra_hooks: Sequence[HookBase],
    resume: _ResumePoint | None,
) -> int:
    rank, world_size = get_rank(), get_world_size()
    batch_per_process = images_per_process(config.solver, world_size)
    resume_path = resume.path if resume else None
    weights, weights_source = None, None
    if options.eval_only and resume_path:
        weights, weights_source = load_checkpoint(resume_path), resume_path
    elif options.weights:
        weights, weights_source = trained_checkpoint(options.weights)
    seed_everything(config.seed + rank)

    test_set = build_evaluation_dataset(config)
    class_names = list(test_set.class_names)
    train_set = None if options.eval_only else _training_dataset(config, class_names)
    model = detector_from_config(config.model, len(class_names) + 1)
    if weights is not None:
        _load_weights(model, config, weights, weights_source, class_names, fine_tune=not options.eval_only)
    model.to(device)
    if config.solver.channels_last:
        model.to(memory_format=torch.channels_last)
    logger.info(f"{world_size} process(es) on {device.type}")

    if options.eval_only:
        with _run_records(config, resume, evaluating=True) as writer:
            EvalHook(test_set, config, device, writer).evaluate(model, int(weights.get("iteration") or 0))
        return 0
    optimizer = build_optimizer(model, config.solver)
    scheduler = build_lr_scheduler(optimizer, config.solver)
    precision = Precision(config.solver.amp, device, logger)
    logger.info(f"training in {precision.describe()}")
    checkpointer = Checkpointer(config.output_dir, model, optimizer, scheduler, precision.scaler, config, class_names)
    state = TrainingState()
    if resume_path:
        state = checkpointer.resume(resume_path, rank)
        logger.info(f"resumed from {resume_path} at iteration {state.iteration}")
    if state.iteration >= config.solver.max_iter and not state.unfinished_hooks:
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
    with _run_records(config, resume, evaluating=False) as writer:
        hooks = [
            *build_hooks(config, evaluator=EvalHook(test_set, config, device, writer), writer=writer),
            *extra_hooks,
        ]
        trainer = Trainer(ddp_model, optimizer, scheduler, config.solver, precision, checkpointer, device, hooks)
        return trainer.train(iter(loader), state)


@contextlib.contextmanager
def _run_records(config: Config, resume: _ResumePoint | None, evaluating: bool) -> Iterator[EventWriter]:
    """``config.yaml`` written (the one a changed resume replaces kept), and the event writer, once the run is
    about to begin: a start that fails earlier changes none of the run's records.

    Args:
        evaluating: ``--eval-only``: a resumed run's own config stays as it is, and its metrics too but for the
            evaluation of the checkpoint's iteration, which the new one replaces.
    """
    if is_main_process() and not (evaluating and resume):
        kept = write_run_config(config, config.output_dir, resume.iteration if resume else None)
        if kept:
            logger.info(f"resume: {CONFIG_FILE} updated; the config it replaces is kept as {kept}")
        logger.info(f"config written to {os.path.join(config.output_dir, CONFIG_FILE)}")
    continued = resume.iteration if resume and not evaluating else None
    evaluated_again = resume.iteration if resume and evaluating else None
    writer = EventWriter(
        config.output_dir, enabled=is_main_process(), resumed_at=continued, rewriting_at=evaluated_again
    )
    if writer.dropped:
        logger.info(
            f"resume: dropped {writer.dropped} line(s) of metrics.json after iteration {continued} (from the run's "
            "part that is not continued); TensorBoard hides those steps of the earlier event files"
        )
    try:
        yield writer
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
