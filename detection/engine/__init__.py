"""Training: the loop and its hooks, optimizer and schedule, checkpoints, events, mixed precision."""

from .hooks import BestCheckpointer, EvalHook, HookBase, PeriodicCheckpointer, PeriodicLogger
from .lr_schedule import WarmupMultiStepLR, build_lr_scheduler
from .optimizer import build_optimizer
from .run_checkpoints import Checkpointer, TrainingState, find_resume_checkpoint
from .runner import RunOptions, build_hooks, images_per_process, run_training
from .trainer import HookError, NonFiniteLossError, Trainer, TrainingDataError

__all__ = [
    "BestCheckpointer",
    "Checkpointer",
    "EvalHook",
    "HookBase",
    "HookError",
    "NonFiniteLossError",
    "PeriodicCheckpointer",
    "PeriodicLogger",
    "RunOptions",
    "Trainer",
    "TrainingDataError",
    "TrainingState",
    "WarmupMultiStepLR",
    "build_hooks",
    "build_lr_scheduler",
    "build_optimizer",
    "find_resume_checkpoint",
    "images_per_process",
    "run_training",
]
