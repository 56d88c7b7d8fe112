"""What the inference, export, fusion and benchmark tests share: a tiny checkpoint, tool loading."""

import importlib.util
from pathlib import Path
from types import ModuleType

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from detection.checkpoint import save_checkpoint
from detection.config import config_from_dict, config_to_dict
from detection.modeling.factory import detector_from_config

TOOLS = Path(__file__).resolve().parents[1] / "tools"
CLASS_NAMES = ["circle", "square"]
# ResNet-18 C4 at 64 px; every RoI scored so that a random model still detects something.
TINY_MODEL = {
    "backbone": "resnet18",
    "min_size": 64,
    "max_size": 96,
    "rpn_post_nms_top_n_test": 20,
    "box_score_thresh": 0.0,
    "box_detections_per_img": 20,
}


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` as a module (the tools folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Gives every BatchNorm non-trivial statistics and affine parameters (a fresh one is ~identity)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                size = module.running_mean.shape
                module.running_mean.copy_(torch.rand(size, generator=generator) * 0.2 - 0.1)
                module.running_var.copy_(torch.rand(size, generator=generator) * 1.5 + 0.5)
                module.weight.copy_(torch.rand(size, generator=generator) * 0.5 + 0.5)
                module.bias.copy_(torch.rand(size, generator=generator) * 0.2 - 0.1)
    return model


def write_tiny_checkpoint(path: Path, seed: int = 0, **model_options) -> Path:
    """A checkpoint of the tiny ResNet-18 detector with random weights, as training would write it;
    ``model_options`` change its config's ``model`` section."""
    torch.manual_seed(seed)
    config = config_from_dict({"model": {**TINY_MODEL, **model_options}})
    model = randomize_batchnorm(detector_from_config(config.model, len(CLASS_NAMES) + 1), seed)
    save_checkpoint(
        path,
        {"model": model.state_dict(), "config": config_to_dict(config), "class_names": CLASS_NAMES, "iteration": 0},
    )
    return path
