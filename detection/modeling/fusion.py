"""Inference-time model rewrites: BatchNorm folded into the preceding convolution, channels_last.

A BatchNorm with fixed statistics (``FrozenBatchNorm2d``, or ``BatchNorm2d`` in eval mode) is a
per-channel affine map, ``y = (x - mean) / sqrt(var + eps) * gamma + beta``; applied right after a
convolution it can be merged into the convolution's weight and bias, which saves one pass over every
activation. The model keeps its structure: each folded BatchNorm becomes ``nn.Identity``, so the
rewritten model is still a torchvision ``FasterRCNN``, scriptable and exportable (its state dict loses
the BatchNorm entries and gains conv biases: save the trained model, not the folded one).
"""

import copy
import warnings
from collections import Counter

import torch
from torch import fx, nn
from torchvision.ops import FrozenBatchNorm2d

# Detector submodules that hold conv + BatchNorm pairs (trunk, FPN, per-RoI head); each is traced alone
# because the full detector (data-dependent proposal selection) is not FX-traceable.
FOLDABLE_PARTS = ("backbone", "roi_heads.box_head")


def optimize_for_inference(model: nn.Module, *, fold_bn: bool = True, channels_last: bool = False) -> nn.Module:
    """A copy of ``model`` in eval mode with BatchNorm folded and/or channels_last weights.

    Run the result under ``torch.inference_mode()``. ``channels_last`` stores 4-D weights as NHWC,
    which makes the convolutions produce NHWC activations; it pays off on GPUs with tensor cores and on
    CPUs with oneDNN, and costs a layout conversion where an op does not support it.
    """
    model = copy.deepcopy(model).eval()
    if fold_bn:
        fold_detector_batchnorm(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def fold_detector_batchnorm(model: nn.Module) -> int:
    """Folds BatchNorm into the preceding convolutions of a detector's trunk and box head, in place.

    Returns:
        The number of BatchNorm layers folded.
    """
    return sum(fold_batchnorm(model.get_submodule(path)) for path in FOLDABLE_PARTS if _has_submodule(model, path))


def fold_batchnorm(module: nn.Module) -> int:
    """Folds every BatchNorm that only consumes a ``Conv2d``'s output into that conv, in place.

    The pairs are found on ``module``'s FX graph (data flow, not attribute order). A conv whose
    output is used elsewhere too, or a BatchNorm in training mode, is left alone. A module that FX
    cannot trace is left unchanged with a warning.

    Returns:
        The number of BatchNorm layers folded (each replaced by ``nn.Identity``).
    """
    try:
        graph = _BatchNormLeafTracer().trace(module)
    except Exception as error:  # FX raises many types on untraceable Python control flow
        warnings.warn(
            f"BatchNorm not folded in {type(module).__name__}: not FX-traceable ({type(error).__name__}: {error})",
            stacklevel=2,
        )
        return 0
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")  # shared modules stay
    folded = 0
    for node in graph.nodes:
        if node.op != "call_module" or not _is_fixed_batchnorm(module.get_submodule(node.target)):
            continue
        source = node.args[0]
        if not isinstance(source, fx.Node) or source.op != "call_module" or len(source.users) != 1:
            continue
        conv = module.get_submodule(source.target)
        if not isinstance(conv, nn.Conv2d) or calls[source.target] != 1 or calls[node.target] != 1:
            continue
        _fold_into_conv(conv, module.get_submodule(node.target))
        module.set_submodule(node.target, nn.Identity())
        folded += 1
    return folded


class _BatchNormLeafTracer(fx.Tracer):
    """FX tracer that keeps torchvision's ``FrozenBatchNorm2d`` as one call (FX only keeps
    ``torch.nn`` modules whole by default)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, FrozenBatchNorm2d) or super().is_leaf_module(m, module_qualified_name)


def _is_fixed_batchnorm(module: nn.Module) -> bool:
    if isinstance(module, FrozenBatchNorm2d):
        return True
    return isinstance(module, nn.BatchNorm2d) and not module.training and module.track_running_stats


@torch.no_grad()
def _fold_into_conv(conv: nn.Conv2d, bn: nn.Module) -> None:
    """``conv`` becomes ``bn(conv(x))``: weight ``[O, I, k, k]`` scaled per output channel, bias shifted."""
    gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
    scale = gamma * torch.rsqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1).to(conv.weight.dtype))
    conv.bias = nn.Parameter(
        (beta + (bias - bn.running_mean) * scale).to(conv.weight.dtype), requires_grad=conv.weight.requires_grad
    )


def _has_submodule(model: nn.Module, path: str) -> bool:
    try:
        model.get_submodule(path)
    except AttributeError:
        return False
    return True
