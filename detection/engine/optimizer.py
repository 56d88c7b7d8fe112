"""SGD with momentum over the trainable parameters, in detectron2's parameter groups (weight decay and learning
rate of normalisation layers and biases)."""

from typing import Any

from torch import nn
from torch.optim import SGD

from ..config import SolverConfig

NORM_TYPES = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.RMSNorm,
)  # torchvision's FrozenBatchNorm2d has no parameters


def parameter_groups(model: nn.Module, solver: SolverConfig) -> list[dict[str, Any]]:
    """The trainable parameters in groups of equal learning rate and weight decay, by detectron2's rules
    (``solver/build.py: get_default_optimizer_params``): ``solver.weight_decay`` and the batch-scaled
    ``solver.lr``; the parameters of normalisation layers decay by ``weight_decay_norm``; a bias (a norm's too)
    gets ``bias_lr_factor`` times the learning rate and decays by ``weight_decay_bias`` (``None``: unchanged).

    Frozen parameters (``requires_grad = False``) are left out; a shared one counts once. The group of
    ``(lr, weight_decay)`` comes first, the others in the order their first parameter appears (so a run
    saved by an earlier version, whose groups were "decayed" then "not decayed", resumes into the same ones).
    """
    default = (solver.lr, solver.weight_decay)
    groups: dict[tuple[float, float], list[nn.Parameter]] = {default: []}
    seen: set[int] = set()
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad or id(parameter) in seen:
                continue
            seen.add(id(parameter))
            lr, weight_decay = default
            if isinstance(module, NORM_TYPES) and solver.weight_decay_norm is not None:
                weight_decay = solver.weight_decay_norm
            if name == "bias":
                lr = solver.lr * solver.bias_lr_factor
                if solver.weight_decay_bias is not None:
                    weight_decay = solver.weight_decay_bias
            groups.setdefault((lr, weight_decay), []).append(parameter)
    return [
        {"params": parameters, "lr": lr, "weight_decay": weight_decay}
        for (lr, weight_decay), parameters in groups.items()
        if parameters
    ]


def build_optimizer(model: nn.Module, solver: SolverConfig) -> SGD:
    """SGD with ``solver.momentum`` (no Nesterov, no dampening, as detectron2's) over
    :func:`parameter_groups`."""
    return SGD(
        parameter_groups(model, solver),
        lr=solver.lr,
        momentum=solver.momentum,
        weight_decay=solver.weight_decay,
        nesterov=False,
    )
