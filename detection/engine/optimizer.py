"""SGD with momentum over the trainable parameters, optionally without weight decay on norms and biases."""

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


def build_optimizer(model: nn.Module, solver: SolverConfig) -> SGD:
    """SGD at ``solver.lr`` (batch-scaled) with ``solver.momentum`` and ``solver.weight_decay``.

    With ``solver.weight_decay_norm_and_bias = False`` the weights of normalisation layers and every
    bias go to a second group without decay (as detectron2's ``WEIGHT_DECAY_NORM = 0``). Frozen
    parameters (``requires_grad = False``) are left out.
    """
    decay, no_decay = [], []
    seen: set[int] = set()
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad or id(parameter) in seen:
                continue
            seen.add(id(parameter))
            exempt = isinstance(module, NORM_TYPES) or name == "bias"
            (no_decay if exempt and not solver.weight_decay_norm_and_bias else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": solver.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return SGD(groups, lr=solver.lr, momentum=solver.momentum, weight_decay=solver.weight_decay)
