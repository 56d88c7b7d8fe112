"""The training loop's hooks: called in order around every iteration, and new work added without editing the loop."""

import itertools
import logging
import math

import pytest
import torch
from torch import nn
from training_helpers import tiny_config

from detection.config import Config, SolverConfig
from detection.data.errors import ImageReadError
from detection.engine import (
    Checkpointer,
    HookBase,
    HookError,
    NonFiniteLossError,
    PeriodicCheckpointer,
    Trainer,
    TrainingState,
    run_training,
)
from detection.engine.precision import Precision


class QuadraticModel(nn.Module):
    """Stands in for a detector: ``model(images, targets)`` returns a dict of losses."""

    def __init__(self, poisoned_call: int | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3))
        self.calls = 0
        self.poisoned_call = poisoned_call

    def forward(self, images: list[torch.Tensor], targets: list[dict]) -> dict[str, torch.Tensor]:
        self.calls += 1
        loss = ((self.weight - torch.stack(images).mean()) ** 2).sum()
        return {"loss_quadratic": loss * math.nan if self.calls == self.poisoned_call else loss}


def batches():
    generator = torch.Generator().manual_seed(0)
    while True:
        yield [torch.rand(3, generator=generator)], [{}]


def make_trainer(tmp_path, hooks, max_iter=4, model=None) -> Trainer:
    model = model or QuadraticModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=100)
    precision = Precision("off", torch.device("cpu"))
    checkpointer = Checkpointer(str(tmp_path), model, optimizer, scheduler, precision.scaler, Config(), ["thing"])
    solver = SolverConfig(max_iter=max_iter, checkpoint_period=2)
    return Trainer(model, optimizer, scheduler, solver, precision, checkpointer, torch.device("cpu"), hooks)


class Recorder(HookBase):
    def __init__(self, name: str, calls: list[tuple[str, str, int]]) -> None:
        self.name = name
        self.calls = calls

    def before_train(self) -> None:
        self.calls.append((self.name, "before_train", self.trainer.iteration))

    def after_step(self) -> None:
        self.calls.append((self.name, "after_step", self.trainer.iteration))

    def after_train(self) -> None:
        self.calls.append((self.name, "after_train", self.trainer.iteration))


class StopAt(HookBase):
    """Early stopping, the simplest kind: ends training after a given iteration."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def after_step(self) -> None:
        if self.trainer.iteration == self.iteration:
            self.trainer.request_stop(f"StopAt({self.iteration})")


def test_hooks_are_called_in_order_around_every_iteration(tmp_path):
    calls = []
    trainer = make_trainer(tmp_path, [Recorder("a", calls), Recorder("b", calls), PeriodicCheckpointer(2)], max_iter=3)
    assert trainer.train(batches(), TrainingState()) == 0
    steps = [(name, "after_step", i) for i in (1, 2, 3) for name in "ab"]
    assert calls == [
        ("a", "before_train", 0),
        ("b", "before_train", 0),
        *steps,
        ("a", "after_train", 3),
        ("b", "after_train", 3),
    ]
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["model_0000002.pth", "model_final.pth"]
    assert set(trainer.step_stats) >= {"loss/quadratic", "loss/total", "lr", "grad_norm", "time/iteration"}


@pytest.fixture
def log_messages():
    """The messages logged under the ``detection`` logger during the test, however logging is set up."""
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("detection")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield messages
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_a_hook_stops_training_with_a_checkpoint_to_resume_from(tmp_path, log_messages):
    calls = []
    trainer = make_trainer(tmp_path, [StopAt(3), Recorder("after", calls), PeriodicCheckpointer(2)], max_iter=10)
    assert trainer.train(batches(), TrainingState()) == 0
    assert trainer.iteration == 3
    assert [call[1:] for call in calls][-2:] == [("after_step", 3), ("after_train", 3)]  # the iteration completes
    assert (tmp_path / "last_checkpoint").read_text().strip() == "model_0000003.pth"
    assert torch.load(tmp_path / "model_0000003.pth", weights_only=True)["iteration"] == 3
    assert not (tmp_path / "model_final.pth").exists()
    assert f"stopped by StopAt(3) after iteration 3; saved {tmp_path / 'model_0000003.pth'}" in log_messages[-1]


def test_after_train_runs_when_the_loss_diverges(tmp_path):
    calls = []
    trainer = make_trainer(tmp_path, [Recorder("a", calls)], model=QuadraticModel(poisoned_call=3))
    with pytest.raises(NonFiniteLossError, match="non-finite loss in iteration 3"):
        trainer.train(batches(), TrainingState())
    assert calls[-1] == ("a", "after_train", 2)
    assert (tmp_path / "last_checkpoint").read_text().strip() == "model_0000002.pth"


class UnreadableEvaluationImage(HookBase):
    """Stands in for an evaluation that cannot read an image: fails after iteration ``failing_at``."""

    def __init__(self, calls: list[tuple[str, str, int]], failing_at: int | None = None) -> None:
        self.calls = calls
        self.failing_at = failing_at

    def after_step(self) -> None:
        self.calls.append(("evaluation", "after_step", self.trainer.iteration))
        if self.trainer.iteration == self.failing_at:
            raise ImageReadError("not a decodable image", "val/000001.jpg")


def test_a_failed_hook_saves_the_iteration_and_a_resume_finishes_its_work(tmp_path, log_messages):
    straight = make_trainer(tmp_path / "straight", [PeriodicCheckpointer(2)])
    assert straight.train(batches(), TrainingState()) == 0

    def hooks(calls, failing_at=None):
        return [
            Recorder("before", calls),
            UnreadableEvaluationImage(calls, failing_at),
            Recorder("after", calls),
            PeriodicCheckpointer(2),
        ]

    calls = []
    trainer = make_trainer(tmp_path / "run", hooks(calls, failing_at=3))
    saved = tmp_path / "run" / "model_0000003.pth"
    with pytest.raises(HookError) as error:
        trainer.train(batches(), TrainingState())
    assert str(error.value) == (
        "UnreadableEvaluationImage failed after iteration 3: val/000001.jpg: not a decodable image; saved the state "
        f"after iteration 3 to {saved}: fix that, then continue with --resume, which first runs what iteration 3 had "
        "left (UnreadableEvaluationImage, Recorder, PeriodicCheckpointer)"
    )
    assert ("evaluation", "after_step", 3) in calls and ("after", "after_step", 3) not in calls
    assert calls[-2:] == [("before", "after_train", 3), ("after", "after_train", 3)]
    checkpoint = torch.load(saved, weights_only=True)
    assert checkpoint["iteration"] == 3
    assert checkpoint["unfinished_hooks"] == ["UnreadableEvaluationImage", "Recorder", "PeriodicCheckpointer"]
    assert (tmp_path / "run" / "last_checkpoint").read_text().strip() == saved.name

    calls = []
    resumed = make_trainer(tmp_path / "run", hooks(calls))
    state = resumed.checkpointer.resume(str(saved), rank=0)
    assert resumed.train(itertools.islice(batches(), 3, None), state) == 0
    after_steps = [call for call in calls if call[1] == "after_step"]
    assert after_steps == [
        ("evaluation", "after_step", 3),  # the work iteration 3 had left, once, "before" not again
        ("after", "after_step", 3),
        *[(name, "after_step", 4) for name in ("before", "evaluation", "after")],
    ]
    assert "finishing the work after iteration 3 that had not finished" in "\n".join(log_messages)
    final = torch.load(tmp_path / "run" / "model_final.pth", weights_only=True)
    assert final["unfinished_hooks"] == []
    assert torch.equal(final["model"]["weight"], straight.module.weight.detach())


class EarlyStopOnMetric(HookBase):
    """Stops at the first evaluation; sees what the built-in hooks did at that iteration."""

    def __init__(self) -> None:
        self.seen: dict[int, dict] = {}

    def after_step(self) -> None:
        iteration = self.trainer.iteration
        if iteration in self.trainer.evaluations:
            self.seen[iteration] = {
                "metrics": self.trainer.evaluations[iteration],
                "best": dict(self.trainer.state.best or {}),
            }
            self.trainer.request_stop("early stopping")


@pytest.mark.slow
def test_run_training_takes_extra_hooks_after_the_built_in_ones(shapes_root, tmp_path):
    hook = EarlyStopOnMetric()
    config = tiny_config(shapes_root, tmp_path, "solver.max_iter=3", "solver.steps=[]", "test.eval_period=1")
    assert run_training(config, extra_hooks=[hook]) == 0
    assert list(hook.seen) == [1]
    assert "bbox/AP" in hook.seen[1]["metrics"] and hook.seen[1]["best"]["iteration"] == 1
    assert (tmp_path / "model_best.pth").exists() and not (tmp_path / "model_final.pth").exists()
    assert (tmp_path / "last_checkpoint").read_text().strip() == "model_0000001.pth"
    assert "stopped by early stopping after iteration 1" in (tmp_path / "log.txt").read_text()
