"""The training loop: one optimizer step per iteration; everything periodic is a hook (:mod:`.hooks`)."""

import contextlib
import itertools
import logging
import math
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import capture_rng_state, restore_rng_state
from ..config import SolverConfig
from ..distributed import OtherProcessError, all_gather_object, all_reduce_mean, any_process
from ..errors import UserError, first_line
from ..logs import LOG_FILE_ONLY
from .hooks import HookBase
from .precision import Precision
from .run_checkpoints import Checkpointer, TrainingState, periodic_checkpoint_name
from .signals import StopRequest

logger = logging.getLogger(__name__)

Batch = tuple[list[Tensor], list[dict[str, Any]]]


class NonFiniteLossError(UserError):
    """Training diverged; the message names the iteration, the loss terms and the checkpoint saved."""


class TrainingDataError(UserError):
    """A training image could not be read; the message names the file and the checkpoint saved."""


class HookError(UserError):
    """A hook's work after an iteration (an evaluation, say) failed; the message names the hook, the error and
    the checkpoint saved, from which ``--resume`` finishes that iteration's work."""


@dataclass
class _Snapshot:
    """What an iteration may spoil before the check that stops it: BatchNorm statistics and RNG state."""

    buffers: dict[str, Tensor]
    rng: dict[str, Any]


class Trainer:
    """Runs iterations ``state.iteration .. solver.max_iter`` of SGD on a detector, calling hooks around them.

    An iteration takes ``solver.accumulate_grad_batches`` batches from the data iterator (forward
    and backward each, gradients summed over them at ``1 / accumulate`` weight), then clips the
    gradient norm if configured and takes one optimizer and scheduler step. Before any backward the
    loss is checked on every process: a non-finite one (or a non-finite gradient norm outside fp16)
    restores the iteration's starting state, saves it and raises :class:`NonFiniteLossError`.
    SIGINT/SIGTERM, or a hook's :meth:`request_stop`, end the loop after the current iteration's hooks,
    with a checkpoint to resume from. An image that cannot be read (the dataset's :class:`UserError`),
    on any process, undoes the iteration, saves the state before it and raises :class:`TrainingDataError`.
    A hook whose ``after_step`` raises (an evaluation that cannot read an image), on any process, ends
    the loop with the state after the iteration saved, the hooks left to run recorded in it
    (:attr:`TrainingState.unfinished_hooks`: that one and those after it) and a :class:`HookError`; a
    resume from that checkpoint runs them before the next iteration, so that it ends as the run would have.

    What hooks read: :attr:`iteration`, :attr:`max_iter`, :attr:`step_stats` (the last iteration's
    losses, ``lr``, ``grad_norm`` and timings), :attr:`evaluations` (iteration -> metrics, filled by
    ``EvalHook``), :attr:`state`, :attr:`checkpointer`, :attr:`model`, :attr:`module`, :attr:`device`.

    Args:
        model: the detector, possibly wrapped in ``DistributedDataParallel``.
        checkpointer: saves the checkpoint to resume from when the loop stops early.
        hooks: called in this order (see :mod:`detection.engine.hooks` for the order training uses).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        solver: SolverConfig,
        precision: Precision,
        checkpointer: Checkpointer,
        device: torch.device,
        hooks: Sequence[HookBase] = (),
    ) -> None:
        self.model = model
        self.module = model.module if isinstance(model, DistributedDataParallel) else model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.solver = solver
        self.precision = precision
        self.checkpointer = checkpointer
        self.device = device
        self.hooks: list[HookBase] = []
        self.register_hooks(hooks)
        self.state = TrainingState()
        self.step_stats: dict[str, float] = {}
        self.evaluations: dict[int, dict[str, float]] = {}
        self.stop_reason: str | None = None
        self._stop_exit_code = 0

    @property
    def iteration(self) -> int:
        return self.state.iteration

    @property
    def max_iter(self) -> int:
        return self.solver.max_iter

    def register_hooks(self, hooks: Sequence[HookBase]) -> None:
        """Appends ``hooks``, called after those already registered."""
        for hook in hooks:
            hook.trainer = self
            self.hooks.append(hook)

    def request_stop(self, reason: str, exit_code: int = 0) -> None:
        """Ends training after this iteration's hooks, with a checkpoint; ``train`` returns ``exit_code``.

        Args:
            reason: completes "stopped by ..." in the log, e.g. ``"early stopping: bbox/AP flat for 5 evaluations"``.
        """
        if self.stop_reason is None:
            self.stop_reason, self._stop_exit_code = reason, exit_code

    def save_resume_point(self, rng: dict[str, Any] | None = None) -> str:
        """Saves the state after :attr:`iteration` as ``model_{iteration:07d}.pth``, the one ``--resume`` picks.

        Where the loop ends early (a stop, divergence) it saves through here; ``rng`` replaces the
        current RNG state (the state an undone iteration started from).
        """
        return self.checkpointer.save(periodic_checkpoint_name(self.state.iteration), self.state, rng=rng)

    def train(self, data: Iterator[Batch], state: TrainingState) -> int:
        """Trains to ``solver.max_iter``; returns the process exit code (0; 128 + signal when a signal stopped it)."""
        self.state = state
        self.model.train()
        logger.info(f"training from iteration {state.iteration} to {self.max_iter}")
        # Data loader workers forked from here on inherit the handlers, so a signal sent to the whole
        # process group (Ctrl+C, a job scheduler) does not kill them under the main process.
        with StopRequest() as signals:
            try:
                for hook in self.hooks:
                    hook.before_train()
                # Starting the loader draws worker seeds from the global RNG, so the stream starts before
                # the RNG state is restored: a resumed run then draws exactly what the uninterrupted one did.
                if state.iteration < self.max_iter:
                    data = itertools.chain([self._next_batch(data, None)], data)
                if state.rng is not None:
                    restore_rng_state(state.rng)
                if state.unfinished_hooks:
                    self._finish_iteration(state)
                while state.iteration < self.max_iter and self.stop_reason is None:
                    self.step_stats, signalled = self.run_step(data, signals.requested)
                    state.iteration += 1
                    if signalled:  # on every process: the flag is reduced with the losses
                        self.request_stop("a signal", signals.exit_code if signals.requested else 128 + signal.SIGTERM)
                    self._after_step(self.hooks)
                if self.stop_reason is None or state.iteration == self.max_iter:
                    return 0
                path = self.save_resume_point()
                logger.info(
                    f"stopped by {self.stop_reason} after iteration {state.iteration}; saved {path}; "
                    "continue with --resume"
                )
                return self._stop_exit_code
            finally:
                for hook in self.hooks:
                    hook.after_train()

    def _after_step(self, hooks: Sequence[HookBase]) -> None:
        """Calls each hook's ``after_step``. Where one raises, on any process, every process saves the state after
        this iteration with that hook and those after it as :attr:`TrainingState.unfinished_hooks`, and raises
        :class:`HookError`."""
        for position, hook in enumerate(hooks):
            error = None
            try:
                hook.after_step()
            except Exception as caught:  # any failure: the state is saved and the run ends in one line
                error = caught
            if any_process(error is not None):
                self._stop_after_hook_failure(hooks[position:], error)

    def _finish_iteration(self, state: TrainingState) -> None:
        """A resume from a checkpoint saved after a hook failed: runs the hooks that had not finished, the last
        ones of the list (the failed one and those after it)."""
        names = list(state.unfinished_hooks)
        unfinished = self.hooks[len(self.hooks) - len(names) :]
        if [type(hook).__name__ for hook in unfinished] != names:
            unfinished = [hook for hook in self.hooks if type(hook).__name__ in names]
            logger.warning(
                f"the checkpoint was saved with the hooks {', '.join(names)} left to run after iteration "
                f"{state.iteration}, but this run's hooks end otherwise; running those of these names"
            )
        logger.info(f"finishing the work after iteration {state.iteration} that had not finished: {', '.join(names)}")
        state.unfinished_hooks = ()
        self._after_step(unfinished)

    def _stop_after_hook_failure(self, unfinished: Sequence[HookBase], error: Exception | None) -> None:
        """Saves the state after this iteration with ``unfinished`` recorded and raises :class:`HookError`."""
        failed, iteration = type(unfinished[0]).__name__, self.state.iteration
        description = None  # this process's error, if it had one: a user's mistake as it says, a bug in brief
        if isinstance(error, UserError | OtherProcessError):
            description = str(error)
        elif error is not None:
            logger.error(f"{failed} failed:", exc_info=error, extra=LOG_FILE_ONLY)  # the traceback, in log.txt
            description = first_line(error)
        message = next(text for text in all_gather_object(description) if text is not None)
        self.state.unfinished_hooks = tuple(type(hook).__name__ for hook in unfinished)
        try:
            path = self.save_resume_point()
        except Exception as save_error:  # reported in the same line
            raise HookError(
                f"{failed} failed after iteration {iteration}: {message}; saving the state failed too "
                f"({first_line(save_error)}): --resume continues from the last checkpoint"
            ) from error
        raise HookError(
            f"{failed} failed after iteration {iteration}: {message}; saved the state after iteration {iteration} "
            f"to {path}: fix that, then continue with --resume, which first runs what iteration {iteration} had "
            f"left ({', '.join(self.state.unfinished_hooks)})"
        ) from error

    def run_step(self, data: Iterator[Batch], stop_requested: bool) -> tuple[dict[str, float], bool]:
        """One iteration. Returns its statistics and whether any process was asked to stop."""
        start = time.perf_counter()
        snapshot = _Snapshot(
            {name: buffer.detach().clone() for name, buffer in self.module.named_buffers()}, capture_rng_state()
        )
        accumulate = self.solver.accumulate_grad_batches
        data_time, loss_sums, stop = 0.0, {}, False
        self.optimizer.zero_grad(set_to_none=True)
        for micro_batch in range(accumulate):
            fetched = time.perf_counter()
            batch = self._next_batch(data, snapshot)
            data_time += time.perf_counter() - fetched
            losses, stop_here = self._forward_backward(batch, micro_batch == accumulate - 1, stop_requested, snapshot)
            stop = stop or stop_here
            for name, value in losses.items():
                loss_sums[name] = loss_sums.get(name, 0.0) + value / accumulate

        self.precision.scaler.unscale_(self.optimizer)
        grad_norm = self._gradient_norm()
        if not math.isfinite(grad_norm) and not self.precision.scales_gradients:
            self._stop_diverged(snapshot, "gradient norm", {**loss_sums, "grad_norm": grad_norm})
        lr = self.optimizer.param_groups[0]["lr"]
        self.precision.scaler.step(self.optimizer)
        self.precision.scaler.update()
        self.scheduler.step()

        stats = {f"loss/{name.removeprefix('loss_')}": value for name, value in loss_sums.items()}
        stats.update({"loss/total": sum(loss_sums.values()), "lr": lr, "grad_norm": grad_norm, "time/data": data_time})
        stats["time/iteration"] = time.perf_counter() - start
        return stats, stop

    def _forward_backward(
        self, batch: Batch, sync: bool, stop_requested: bool, snapshot: _Snapshot
    ) -> tuple[dict[str, float], bool]:
        """Losses of one batch (means over processes) into the gradients; and whether any process must stop.

        Args:
            sync: all-reduce the gradients in this backward pass (the last accumulated batch).
        """
        images = [image.to(self.device, non_blocking=True) for image in batch[0]]
        targets = [
            {k: v.to(self.device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in t.items()}
            for t in batch[1]
        ]
        distributed = isinstance(self.model, DistributedDataParallel)
        with self.model.no_sync() if distributed and not sync else contextlib.nullcontext():
            with self.precision.autocast():
                loss_dict = self.model(images, targets)
            # One reduction per batch: every process sees the same losses and stop flag, so they all
            # take the same branch below.
            flag = torch.tensor(float(stop_requested), device=self.device)
            reduced = all_reduce_mean(torch.stack([*(v.detach().float() for v in loss_dict.values()), flag])).tolist()
            losses = dict(zip(loss_dict, reduced[:-1]))
            if not all(math.isfinite(value) for value in losses.values()):
                self._stop_diverged(snapshot, "loss", losses)
            loss = sum(loss_dict.values()) / self.solver.accumulate_grad_batches
            self.precision.scaler.scale(loss).backward()
        return losses, reduced[-1] > 0

    def _gradient_norm(self) -> float:
        """The total L2 norm of the gradients, after clipping them to ``solver.clip_grad_norm`` if set."""
        parameters = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        norm = torch.nn.utils.get_total_norm([p.grad for p in parameters])
        if self.solver.clip_grad_norm is not None:
            torch.nn.utils.clip_grads_with_norm_(parameters, self.solver.clip_grad_norm, norm)
        return float(norm)

    def _next_batch(self, data: Iterator[Batch], snapshot: _Snapshot | None) -> Batch:
        """The next batch. Where a process cannot read its batch, every process saves the state the iteration
        started from (``snapshot``; None: before the first iteration) and raises :class:`TrainingDataError`."""
        error = None
        try:
            batch = next(data)
        except UserError as caught:  # an unreadable image, with data.on_bad_image: raise
            error = caught
        if not any_process(error is not None):
            return batch
        message = next(text for text in all_gather_object(None if error is None else str(error)) if text is not None)
        path = self._undo_iteration(snapshot) if snapshot is not None else self.save_resume_point(rng=self.state.rng)
        raise TrainingDataError(
            f"{message}; stopped before iteration {self.state.iteration + 1}, saved the state after iteration "
            f"{self.state.iteration} to {path}: repair or replace that file (or skip unreadable images: --opts "
            "data.on_bad_image=skip), then continue with --resume"
        ) from error

    def _stop_diverged(self, snapshot: _Snapshot, what: str, values: dict[str, float]) -> None:
        """Saves the state the iteration started from and raises :class:`NonFiniteLossError`."""
        path = self._undo_iteration(snapshot)
        terms = ", ".join(f"{name}={value:.4g}" for name, value in values.items())
        raise NonFiniteLossError(
            f"non-finite {what} in iteration {self.state.iteration + 1}: {terms}; saved the last good state "
            f"(after iteration {self.state.iteration}) to {path}; lower solver.base_lr, lengthen solver.warmup_iters "
            "or set solver.clip_grad_norm, then continue with --resume"
        )

    def _undo_iteration(self, snapshot: _Snapshot) -> str:
        """Restores the state the current iteration started from (no optimizer step has been taken) and saves
        it to resume from; returns the checkpoint's path."""
        with torch.no_grad():
            for name, buffer in self.module.named_buffers():
                buffer.copy_(snapshot.buffers[name])
        self.optimizer.zero_grad(set_to_none=True)
        return self.save_resume_point(rng=snapshot.rng)
