"""Optimizer parameter groups, the warm-up + step schedule, batch-size scaling of the learning rate."""

import bisect
from pathlib import Path

import pytest
import torch
from torch import nn

from detection.config import SolverConfig, config_from_dict, config_to_dict, load_config, override_config
from detection.engine import WarmupMultiStepLR, build_lr_scheduler, build_optimizer, images_per_process
from detection.engine.resume import resume_changes
from detection.errors import CheckpointError, ConfigError


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


# --- detectron2's solver (solver/build.py, solver/lr_scheduler.py, fvcore's param schedulers) ---------------

DETECTRON2_RECIPE = Path(__file__).resolve().parents[1] / "configs" / "coco" / "resnet101_3x_detectron2.yaml"


def head_net() -> nn.Module:
    """A conv with a bias, a trainable BatchNorm, a GroupNorm and a linear layer: every group detectron2 forms."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.GroupNorm(2, 4), nn.Flatten(), nn.Linear(4, 2))
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.copy_(torch.randn_like(parameter))
    return net


def detectron2_hyperparameters(module: nn.Module, name: str, solver: SolverConfig) -> tuple[float, float]:
    """(lr, weight decay) of one parameter as detectron2's get_default_optimizer_params sets them."""
    lr, weight_decay = solver.lr, solver.weight_decay
    if isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)) and solver.weight_decay_norm is not None:
        weight_decay = solver.weight_decay_norm
    if name == "bias":
        lr *= solver.bias_lr_factor
        weight_decay = weight_decay if solver.weight_decay_bias is None else solver.weight_decay_bias
    return lr, weight_decay


@pytest.mark.parametrize(
    "settings",
    [
        {"weight_decay_norm": 0.0},  # detectron2's C4 recipe: norms not decayed, biases as weights
        {"weight_decay_norm": 0.0, "weight_decay_bias": 5e-5, "bias_lr_factor": 2.0},  # a norm's bias too
        {"weight_decay_norm": 1e-3, "bias_lr_factor": 2.0},
        {},  # the default: every parameter as a weight, one group
    ],
)
def test_parameter_groups_follow_detectron2s_rules(settings):
    solver = SolverConfig(base_lr=0.1, weight_decay=1e-4, **settings)
    net = head_net()
    optimizer = build_optimizer(net, solver)
    for module in net.modules():
        for name, parameter in module.named_parameters(recurse=False):
            group = group_of(optimizer, parameter)
            assert (group["lr"], group["weight_decay"]) == detectron2_hyperparameters(module, name, solver), name
    expected_groups = {
        detectron2_hyperparameters(m, n, solver) for m in net.modules() for n, _ in m.named_parameters(recurse=False)
    }
    assert len(optimizer.param_groups) == len(expected_groups)
    assert all(group["nesterov"] is False and group["dampening"] == 0 for group in optimizer.param_groups)


def test_one_sgd_step_of_detectron2s_recipe_gives_its_weights():
    """Two iterations of the shipped detectron2 recipe's optimizer and schedule against detectron2's update:
    lr = BASE_LR x warm-up factor (x BIAS_LR_FACTOR), v = MOMENTUM v + (g + wd w), w -= lr v; wd 0 on norms."""
    solver = load_config(str(DETECTRON2_RECIPE)).solver
    assert (solver.lr, solver.momentum, solver.weight_decay, solver.weight_decay_norm) == (0.02, 0.9, 1e-4, 0.0)
    net = head_net()
    named = [(m, n, p) for m in net.modules() for n, p in m.named_parameters(recurse=False)]
    expected = {id(p): p.detach().clone() for _, _, p in named}
    velocity = {}
    optimizer = build_optimizer(net, solver)
    scheduler = build_lr_scheduler(optimizer, solver)
    generator = torch.Generator().manual_seed(1)
    for iteration in range(2):
        warmup = 0.001 * (1 - iteration / 1000) + iteration / 1000  # linear from WARMUP_FACTOR over WARMUP_ITERS
        for module, name, parameter in named:
            parameter.grad = torch.randn(parameter.shape, generator=generator)
            lr, weight_decay = detectron2_hyperparameters(module, name, solver)
            step = parameter.grad + weight_decay * expected[id(parameter)]
            velocity[id(parameter)] = step if iteration == 0 else 0.9 * velocity[id(parameter)] + step
            expected[id(parameter)] = expected[id(parameter)] - lr * warmup * velocity[id(parameter)]
        optimizer.step()
        scheduler.step()
        for _, name, parameter in named:
            torch.testing.assert_close(parameter.detach(), expected[id(parameter)], rtol=1e-6, atol=1e-9, msg=name)


def detectron2_lr_factor(iteration: int, solver: SolverConfig) -> float:
    """fvcore's WarmupParamScheduler(MultiStepParamScheduler) as detectron2's build_lr_scheduler composes it,
    at ``where = iteration / MAX_ITER``."""
    where, epsilon, length = iteration / solver.max_iter, 1e-6, min(solver.warmup_iters / solver.max_iter, 1.0)

    def multi_step(at: float) -> float:
        return solver.gamma ** bisect.bisect_right(solver.steps, int((at + epsilon) * solver.max_iter))

    if where + epsilon <= length:
        t = where / length
        return multi_step(length) * t + solver.warmup_factor * multi_step(0.0) * (1 - t)
    return multi_step(where)


def test_schedule_is_detectron2s_warmup_multistep():
    solver = load_config(str(DETECTRON2_RECIPE)).solver
    scheduler = build_lr_scheduler(build_optimizer(head_net(), solver), solver)
    for iteration in (0, 1, 2, 500, 998, 999, 1000, 1001, 209999, 210000, 210001, 249999, 250000, 269999):
        assert scheduler.lr_factor(iteration) == pytest.approx(detectron2_lr_factor(iteration, solver), rel=1e-12)
    assert scheduler.lr_factor(0) == 0.001 and scheduler.lr_factor(1000) == 1.0 and scheduler.lr_factor(210000) == 0.1


# --- the solver key of earlier versions --------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new"), [(True, None), (False, 0.0)])
def test_weight_decay_norm_and_bias_is_read_as_detectron2s_keys(old, new, caplog):
    with caplog.at_level("WARNING", logger="detection.config"):
        solver = config_from_dict({"solver": {"weight_decay_norm_and_bias": old}}, source="model.pth").solver
    assert (solver.weight_decay_norm, solver.weight_decay_bias) == (new, new)
    assert caplog.messages == [
        f"model.pth: solver.weight_decay_norm_and_bias is deprecated; read as solver.weight_decay_norm="
        f"{'null' if new is None else new} solver.weight_decay_bias={'null' if new is None else new}"
    ]
    with pytest.raises(ConfigError, match="weight_decay_norm_and_bias \\(deprecated\\) and .* both given"):
        config_from_dict({"solver": {"weight_decay_norm_and_bias": old, "weight_decay_norm": 0.0}})


def test_a_run_saved_with_the_old_key_resumes_into_the_same_groups():
    """Earlier versions made a decayed group and then a not decayed one, whatever came first."""
    net = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3))  # a norm's parameters first
    old = config_from_dict({"solver": {"weight_decay_norm_and_bias": False, "weight_decay": 1e-4}}).solver
    groups = build_optimizer(net, old).param_groups
    assert [group["weight_decay"] for group in groups] == [1e-4, 0.0]
    assert groups[0]["params"] == [net[1].weight] and groups[1]["params"] == [net[0].weight, net[0].bias, net[1].bias]


@pytest.mark.parametrize(
    "change", ["solver.weight_decay_norm=0.001", "solver.weight_decay_bias=0.001", "solver.bias_lr_factor=2.0"]
)
def test_resume_refuses_to_change_the_parameter_groups(change):
    stored = config_from_dict({"solver": {"weight_decay_norm_and_bias": False}})  # an earlier version's run
    resumed = config_from_dict(config_to_dict(stored))  # as its checkpoint stores it and --resume reads it
    assert resume_changes(stored, resumed, 10, "model.pth") == []
    with pytest.raises(CheckpointError, match=f"refused {change.split('=')[0]} "):
        resume_changes(stored, override_config(stored, [change]), 10, "model.pth")
