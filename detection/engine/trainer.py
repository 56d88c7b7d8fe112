"""The training loop: one optimizer step per iteration, with periodic logging, evaluation and checkpoints."""

import contextlib
import itertools
import logging
import math
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import capture_rng_state, restore_rng_state
from ..config import Config
from ..distributed import all_reduce_mean
from ..errors import UserError
from .events import EventWriter
from .meters import TrainingMeter, memory_mb
from .precision import Precision
from .run_checkpoints import BEST_CHECKPOINT, FINAL_CHECKPOINT, Checkpointer, TrainingState, periodic_checkpoint_name
from .signals import StopRequest

Batch = tuple[list[Tensor], list[dict[str, Any]]]


class NonFiniteLossError(UserError):
    """Training diverged; the message names the iteration, the loss terms and the checkpoint saved."""


@dataclass
class _Snapshot:
    """What an iteration may spoil before the check that stops it: BatchNorm statistics and RNG state."""

    buffers: dict[str, Tensor]
    rng: dict[str, Any]


class Trainer:
    """Runs iterations ``state.iteration .. max_iter`` of SGD on a detector.

    An iteration takes ``solver.accumulate_grad_batches`` batches from the data iterator (forward
    and backward each, gradients summed over them at ``1 / accumulate`` weight), then clips the
    gradient norm if configured and takes one optimizer and scheduler step. Before any backward the
    loss is checked on every process: a non-finite one (or a non-finite gradient norm outside fp16)
    restores the iteration's starting state, saves it and raises :class:`NonFiniteLossError`.
    SIGINT/SIGTERM end the loop after the current iteration with a checkpoint.

    Args:
        model: the detector, possibly wrapped in ``DistributedDataParallel``.
        evaluate: ``evaluate(unwrapped_model, iteration) -> metrics`` (every process).
    """

    def __init__(
        self,
        config: Config,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        precision: Precision,
        checkpointer: Checkpointer,
        evaluate: Callable[[nn.Module, int], dict[str, float]],
        writer: EventWriter,
        logger: logging.Logger,
        device: torch.device,
    ) -> None:
        self.config = config
        self.solver = config.solver
        self.model = model
        self.module = model.module if isinstance(model, DistributedDataParallel) else model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.precision = precision
        self.checkpointer = checkpointer
        self.evaluate = evaluate
        self.writer = writer
        self.logger = logger
        self.device = device
        self.state = TrainingState()
        self.meter = TrainingMeter(self.solver.max_iter, config.log_period)

    def train(self, data: Iterator[Batch], state: TrainingState) -> int:
        """Trains to ``solver.max_iter``; returns the process exit code (0, or 128 + signal when stopped)."""
        self.state = state
        self.model.train()
        self.logger.info(f"training from iteration {state.iteration} to {self.solver.max_iter}")
        # Data loader workers forked from here on inherit the handlers, so a signal sent to the whole
        # process group (Ctrl+C, a job scheduler) does not kill them under the main process.
        with StopRequest() as stop:
            # Starting the loader draws worker seeds from the global RNG, so the stream starts before
            # the RNG state is restored: a resumed run then draws exactly what the uninterrupted one did.
            data = itertools.chain([next(data)], data)
            if state.rng is not None:
                restore_rng_state(state.rng)
            while state.iteration < self.solver.max_iter:
                stats, stop_everywhere = self.run_step(data, stop.requested)
                state.iteration += 1
                self.meter.update(stats)
                self._after_step()
                if stop_everywhere and state.iteration < self.solver.max_iter:
                    path = self.checkpointer.save(periodic_checkpoint_name(state.iteration), state)
                    self.logger.info(
                        f"stopped by a signal after iteration {state.iteration}; saved {path}; continue with --resume"
                    )
                    self.writer.flush()
                    return stop.exit_code if stop.requested else 128 + signal.SIGTERM
        self.writer.flush()
        return 0

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
            batch = next(data)
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

    def _stop_diverged(self, snapshot: _Snapshot, what: str, values: dict[str, float]) -> None:
        """Saves the state the iteration started from and raises :class:`NonFiniteLossError`."""
        with torch.no_grad():
            for name, buffer in self.module.named_buffers():
                buffer.copy_(snapshot.buffers[name])
        self.optimizer.zero_grad(set_to_none=True)
        path = self.checkpointer.save(periodic_checkpoint_name(self.state.iteration), self.state, rng=snapshot.rng)
        self.writer.flush()
        terms = ", ".join(f"{name}={value:.4g}" for name, value in values.items())
        raise NonFiniteLossError(
            f"non-finite {what} in iteration {self.state.iteration + 1}: {terms}; saved the last good state "
            f"(after iteration {self.state.iteration}) to {path}; lower solver.base_lr, lengthen solver.warmup_iters "
            "or set solver.clip_grad_norm, then continue with --resume"
        )

    def _after_step(self) -> None:
        iteration, solver = self.state.iteration, self.solver
        last = iteration == solver.max_iter
        if iteration % self.config.log_period == 0 or last:
            self._log()
        if last or (self.config.test.eval_period > 0 and iteration % self.config.test.eval_period == 0):
            self._evaluate()
        if last:
            self.checkpointer.save(FINAL_CHECKPOINT, self.state)
        elif iteration % solver.checkpoint_period == 0:
            self.checkpointer.save(periodic_checkpoint_name(iteration), self.state)

    def _log(self) -> None:
        iteration = self.state.iteration
        values = self.meter.means()
        values["lr"] = self.meter.latest("lr")
        memory_tag, memory = memory_mb(self.device)
        values[memory_tag] = memory
        self.writer.write_scalars(values, iteration)
        terms = " ".join(
            f"{tag.removeprefix('loss/')} {value:.4f}"
            for tag, value in values.items()
            if tag.startswith("loss/") and tag != "loss/total"
        )
        self.logger.info(
            f"iter {iteration}/{self.solver.max_iter}  loss {values['loss/total']:.4f} ({terms})  "
            f"lr {values['lr']:.3g}  "
            f"time {values['time/iteration']:.3f}s  data {values['time/data']:.3f}s  mem {memory:.0f}MB  "
            f"eta {self.meter.eta(iteration)}"
        )

    def _evaluate(self) -> None:
        metrics = self.evaluate(self.module, self.state.iteration)
        name = self.config.best_metric_name
        value = metrics.get(name)
        if value is None or not math.isfinite(value):
            self.logger.warning(f"best_metric {name!r} is not among the finite evaluation results; no best checkpoint")
            return
        best = self.state.best
        if best is None or best["name"] != name or value > best["value"]:
            self.state.best = {"name": name, "value": float(value), "iteration": self.state.iteration}
            path = self.checkpointer.save(BEST_CHECKPOINT, self.state, update_pointer=False)
            self.logger.info(f"new best {name} {value:.4f} at iteration {self.state.iteration}: saved {path}")
