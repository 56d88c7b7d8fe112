"""Linear warm-up then step decay, per iteration (detectron2's ``WarmupMultiStepLR``)."""

import bisect
from collections.abc import Sequence
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ..config import SolverConfig


class WarmupMultiStepLR(LRScheduler):
    """``lr(i) = base_lr * warmup(i) * gamma ** (number of steps <= i)``, stepped once per iteration.

    ``warmup(i)`` rises linearly from ``warmup_factor`` at ``i = 0`` to 1 at ``i = warmup_iters``.
    The schedule is a function of the iteration alone, so the state is the iteration only: resuming
    under an edited solver config follows the new schedule from the saved iteration.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        steps: Sequence[int],
        gamma: float = 0.1,
        warmup_iters: int = 0,
        warmup_factor: float = 0.001,
    ) -> None:
        self.steps = list(steps)
        self.gamma = gamma
        self.warmup_iters = warmup_iters
        self.warmup_factor = warmup_factor
        super().__init__(optimizer)

    def lr_factor(self, iteration: int) -> float:
        """Multiplier of the base learning rate at ``iteration`` (0-based)."""
        factor = self.gamma ** bisect.bisect_right(self.steps, iteration)
        if iteration < self.warmup_iters:
            alpha = iteration / self.warmup_iters
            factor *= self.warmup_factor * (1 - alpha) + alpha
        return factor

    def get_lr(self) -> list[float]:
        return [base_lr * self.lr_factor(self.last_epoch) for base_lr in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": self.last_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_epoch = int(state_dict["last_epoch"])
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr


def build_lr_scheduler(optimizer: Optimizer, solver: SolverConfig) -> WarmupMultiStepLR:
    return WarmupMultiStepLR(optimizer, solver.steps, solver.gamma, solver.warmup_iters, solver.warmup_factor)
