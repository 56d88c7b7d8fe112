"""Training: the loop, its optimizer and schedule, checkpoints, events, distributed and mixed precision."""

from .lr_schedule import WarmupMultiStepLR, build_lr_scheduler
from .optimizer import build_optimizer
from .run_checkpoints import Checkpointer, TrainingState, find_resume_checkpoint
from .runner import RunOptions, images_per_process, run_training
from .trainer import NonFiniteLossError, Trainer

__all__ = [
    "Checkpointer",
    "NonFiniteLossError",
    "RunOptions",
    "Trainer",
    "TrainingState",
    "WarmupMultiStepLR",
    "build_lr_scheduler",
    "build_optimizer",
    "find_resume_checkpoint",
    "images_per_process",
    "run_training",
]
