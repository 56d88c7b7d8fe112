"""The training run's checkpoints in its output folder: periodic, final, best, and the resume pointer.

Files (as detectron2): ``model_{iteration:07d}.pth`` every ``solver.checkpoint_period`` iterations,
``model_final.pth`` at the end, ``model_best.pth`` at the best evaluation, and ``last_checkpoint``, a
text file with the name of the newest checkpoint, which ``--resume`` reads. Their content is
described in :mod:`detection.checkpoint`; this module adds ``rng_by_rank`` (every process's RNG
state) under ``torch.distributed``.
"""

import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..checkpoint import capture_rng_state, check_class_names, load_checkpoint, load_model_state, save_checkpoint
from ..config import Config, config_to_dict
from ..distributed import all_gather_object, get_world_size, is_main_process
from ..errors import CheckpointError

LAST_CHECKPOINT_FILE = "last_checkpoint"
FINAL_CHECKPOINT = "model_final.pth"
BEST_CHECKPOINT = "model_best.pth"


@dataclass
class TrainingState:
    """What the loop carries besides the model and optimizer: iterations completed, the best evaluation."""

    iteration: int = 0
    best: dict[str, Any] | None = None  # {"name", "value", "iteration"}
    rng: dict[str, Any] | None = field(default=None, repr=False)  # to restore before the next iteration
    # The hooks (class names) whose work after ``iteration`` had not finished when this state was saved (one
    # of them failed): a resume runs them before the next iteration.
    unfinished_hooks: tuple[str, ...] = ()


def periodic_checkpoint_name(iteration: int) -> str:
    return f"model_{iteration:07d}.pth"


def find_resume_checkpoint(resume: str, output_dir: str) -> str:
    """The checkpoint ``--resume`` means: a path, or ``"auto"`` for the newest in ``output_dir``."""
    if resume != "auto":
        if not os.path.isfile(resume):
            raise CheckpointError(f"--resume: checkpoint not found: {resume}")
        return resume
    path = newest_checkpoint(output_dir)
    if path is None:
        raise CheckpointError(
            f"--resume: no checkpoint to resume in {output_dir} (no {LAST_CHECKPOINT_FILE} file); "
            "pass a path, or start without --resume"
        )
    return path


def newest_checkpoint(output_dir: str) -> str | None:
    """The checkpoint ``last_checkpoint`` names in ``output_dir`` (None without that file): the newest one written
    whole, since the pointer changes only once its checkpoint is in place."""
    pointer = os.path.join(output_dir, LAST_CHECKPOINT_FILE)
    if not os.path.isfile(pointer):
        return None
    with open(pointer, encoding="utf-8") as file:
        path = os.path.join(output_dir, file.read().strip())
    if not os.path.isfile(path):
        raise CheckpointError(f"{pointer} names {path}, which does not exist")
    return path


class Checkpointer:
    """Saves and restores the full training state of a run.

    Args:
        output_dir: the run's output folder.
        model: the model itself (not its DistributedDataParallel wrapper).
        optimizer, scheduler, scaler: their state dicts go into every checkpoint.
        config: stored in every checkpoint.
        class_names: the K foreground class names.
    """

    def __init__(
        self,
        output_dir: str,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        scaler: torch.amp.GradScaler,
        config: Config,
        class_names: list[str],
    ) -> None:
        self.output_dir = output_dir
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scaler = scaler
        self.config = config
        self.class_names = class_names

    def save(
        self, name: str, state: TrainingState, rng: dict[str, Any] | None = None, update_pointer: bool = True
    ) -> str:
        """Writes checkpoint ``name`` (rank 0) and returns its path; every rank must call it.

        Args:
            rng: this process's RNG state to store; default: the current one.
            update_pointer: make it the checkpoint ``--resume`` picks.
        """
        rng = rng if rng is not None else capture_rng_state()
        rng_by_rank = all_gather_object(rng)
        path = os.path.join(self.output_dir, name)
        if is_main_process():
            checkpoint = {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() or None,
                "iteration": state.iteration,
                "config": config_to_dict(self.config),
                "class_names": list(self.class_names),
                "best": state.best,
                "unfinished_hooks": list(state.unfinished_hooks),
                "rng": rng,
            }
            if len(rng_by_rank) > 1:
                checkpoint["rng_by_rank"] = rng_by_rank
            save_checkpoint(path, checkpoint)
            if update_pointer:
                self._write_pointer(name)
        return path

    def resume(self, path: str, rank: int) -> TrainingState:
        """Restores model, optimizer, scheduler and scaler from ``path``; returns the loop's state.

        The RNG state is returned, not restored: the caller restores it right before the next
        iteration, after whatever it builds in between (a data loader iterator) has drawn from it.
        """
        checkpoint = load_checkpoint(path)
        missing = [key for key in ("optimizer", "scheduler", "iteration") if checkpoint.get(key) is None]
        if missing:
            raise CheckpointError(
                f"{path}: cannot resume from it: no {', '.join(missing)} (use --weights to start from its model)"
            )
        check_class_names(path, checkpoint.get("class_names") or [], self.class_names)
        load_model_state(self.model, checkpoint["model"], path)
        try:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        except ValueError as error:
            raise CheckpointError(f"{path}: the optimizer state does not fit this config ({error})") from None
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        if checkpoint.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(checkpoint["scaler"])
        rng_by_rank = checkpoint.get("rng_by_rank") or [checkpoint.get("rng")]
        rng = rng_by_rank[rank] if len(rng_by_rank) == get_world_size() else None
        unfinished = tuple(checkpoint.get("unfinished_hooks") or ())
        return TrainingState(int(checkpoint["iteration"]), checkpoint.get("best"), rng, unfinished)

    def _write_pointer(self, name: str) -> None:
        pointer = os.path.join(self.output_dir, LAST_CHECKPOINT_FILE)
        temporary = pointer + ".tmp"
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(name + "\n")
        os.replace(temporary, pointer)
