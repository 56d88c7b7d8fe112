"""Freezing helpers shared by the built-in backbones: frozen BatchNorm and frozen lower stages."""

from collections.abc import Sequence

import torch.nn.functional as F
import torchvision
from torch import Tensor, nn


def resolve_trainable_stages(
    trainable_layers: int | None, pretrained: bool, num_stages: int, pretrained_default: int
) -> int:
    """torchvision's rule: all stages train from scratch; ``pretrained_default`` of them otherwise."""
    if trainable_layers is None:
        return pretrained_default if pretrained else num_stages
    if not 0 <= trainable_layers <= num_stages:
        raise ValueError(f"trainable_layers must be in [0, {num_stages}], got {trainable_layers}")
    return trainable_layers


class FrozenBatchNorm2d(torchvision.ops.FrozenBatchNorm2d):
    """torchvision's ``FrozenBatchNorm2d`` that runs the fused ``batch_norm`` kernel when no gradient flows
    through it, as detectron2's does: one pass over the activations instead of two, and detectron2's
    inference numbers to the last bit (the unfused ``x * scale + shift`` rounds differently).

    Its output has the input's dtype, as detectron2's: under bf16/fp16 autocast, torchvision's float32
    ``scale`` and ``shift`` would promote every activation after a frozen BatchNorm to float32 (twice the
    memory, and a cast back before each convolution)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.requires_grad:
            scale = self.weight * (self.running_var + self.eps).rsqrt()
            shift = self.bias - self.running_mean * scale
            return x * scale.to(x.dtype).reshape(1, -1, 1, 1) + shift.to(x.dtype).reshape(1, -1, 1, 1)
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=self.eps
        )


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replaces every ``nn.BatchNorm2d`` inside ``module`` by a ``FrozenBatchNorm2d`` with its statistics.

    Returns the converted module (``module`` itself unless it is a BatchNorm2d).
    """
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        if module.affine:
            frozen.weight.copy_(module.weight.detach())
            frozen.bias.copy_(module.bias.detach())
        if module.track_running_stats:
            frozen.running_mean.copy_(module.running_mean)
            frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        converted = freeze_batchnorm(child)
        if converted is not child:
            setattr(module, name, converted)
    return module


def freeze_lower_stages(root: nn.Module, stages: Sequence[Sequence[str]], trainable_stages: int) -> None:
    """Freezes all but the top ``trainable_stages`` of ``stages``.

    Args:
        root: the module the stage paths are relative to.
        stages: submodule paths of each stage, ordered from the input upwards.
        trainable_stages: how many stages, counted from the top, keep training.

    Frozen stages get no gradients, and their BatchNorm layers become ``FrozenBatchNorm2d`` so that
    their statistics stop moving too, as detectron2 does for ``FREEZE_AT``.
    """
    for stage in stages[: len(stages) - trainable_stages]:
        for path in stage:
            module = freeze_batchnorm(root.get_submodule(path))
            module.requires_grad_(False)
            root.set_submodule(path, module)
