"""Optimizer parameter groups, the warm-up + step schedule, batch-size scaling of the learning rate."""

from pathlib import Path

import pytest
import torch
from torch import nn

from detection.config import SolverConfig, load_config
from detection.engine import WarmupMultiStepLR, build_lr_scheduler, build_optimizer, images_per_process
from detection.errors import ConfigError


def small_net() -> nn.Module:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1, bias=False), nn.GroupNorm(1, 2))
    net[0].weight.requires_grad_(False)
    return net


def group_of(optimizer: torch.optim.Optimizer, parameter: torch.Tensor) -> dict:
    return next(group for group in optimizer.param_groups if any(p is parameter for p in group["params"]))


def test_no_weight_decay_on_norms_and_biases_when_configured():
    net = small_net()
    optimizer = build_optimizer(
        net, SolverConfig(weight_decay=1e-4, weight_decay_norm=0.0, weight_decay_bias=0.0, momentum=0.9)
    )
    assert group_of(optimizer, net[2].weight)["weight_decay"] == 1e-4
    for parameter in (net[0].bias, net[1].weight, net[1].bias, net[3].weight, net[3].bias):
        assert group_of(optimizer, parameter)["weight_decay"] == 0.0
    assert all(p is not net[0].weight for group in optimizer.param_groups for p in group["params"])  # frozen
    assert all(group["momentum"] == 0.9 for group in optimizer.param_groups)


def test_one_decayed_group_by_default():
    optimizer = build_optimizer(small_net(), SolverConfig(weight_decay=5e-4))
    assert len(optimizer.param_groups) == 1 and optimizer.param_groups[0]["weight_decay"] == 5e-4
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 6


def test_learning_rate_scales_linearly_with_the_batch():
    assert SolverConfig(base_lr=0.02, images_per_batch=16, reference_batch_size=16).lr == pytest.approx(0.02)
    assert SolverConfig(base_lr=0.02, images_per_batch=4, reference_batch_size=16).lr == pytest.approx(0.005)
    optimizer = build_optimizer(small_net(), SolverConfig(base_lr=0.001, images_per_batch=16, reference_batch_size=8))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.002)


def lrs(solver: SolverConfig, iterations: int) -> list[float]:
    optimizer = build_optimizer(small_net(), solver)
    scheduler = build_lr_scheduler(optimizer, solver)
    values = []
    for _ in range(iterations):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


def test_linear_warmup_then_steps():
    solver = SolverConfig(base_lr=1.0, max_iter=10, warmup_iters=4, warmup_factor=0.2, steps=(6, 8), gamma=0.1)
    expected = [0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    assert lrs(solver, 10) == pytest.approx(expected)


def test_scheduler_state_is_the_iteration_and_resumes():
    solver = SolverConfig(base_lr=1.0, max_iter=10, warmup_iters=4, warmup_factor=0.2, steps=(6,))
    optimizer = build_optimizer(small_net(), solver)
    scheduler = build_lr_scheduler(optimizer, solver)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()
    assert state == {"last_epoch": 5}
    # A new run with an edited schedule continues from iteration 5 on the new schedule.
    edited = SolverConfig(base_lr=2.0, max_iter=10, steps=(5,))
    optimizer = build_optimizer(small_net(), edited)
    resumed = build_lr_scheduler(optimizer, edited)
    resumed.load_state_dict(state)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.2)
    assert isinstance(resumed, WarmupMultiStepLR) and resumed.get_last_lr() == pytest.approx([0.2])


def test_images_per_process_splits_the_batch():
    assert images_per_process(SolverConfig(images_per_batch=16), world_size=8) == 2
    assert images_per_process(SolverConfig(images_per_batch=16, accumulate_grad_batches=4), world_size=2) == 2
    with pytest.raises(ConfigError, match="images_per_batch=6 must be a multiple"):
        images_per_process(SolverConfig(images_per_batch=6, accumulate_grad_batches=4), world_size=1)


def test_max_iter_alone_below_the_recipe_steps_names_both_keys_and_the_fix():
    recipe = str(Path(__file__).resolve().parents[1] / "configs" / "shapes" / "base.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(recipe, ["solver.max_iter=20"])
    assert str(info.value) == (
        f"{recipe}: solver: steps=[600] must be increasing and inside (0, max_iter=20); with solver.max_iter=20 "
        "also set solver.steps, e.g. --opts solver.max_iter=20 solver.steps=[15] or solver.steps=[] (no decay)"
    )
    assert load_config(recipe, ["solver.max_iter=20", "solver.steps=[]"]).solver.max_iter == 20
