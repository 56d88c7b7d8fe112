"""detectron2's file layouts, written here from their descriptions (detectron2's ``c2_model_loading`` names,
its model-zoo pickle and Checkpointer formats), random models in them, and the resize of its data loader:
what the detectron2 tests share (conftest.py builds the models once per session)."""

import pickle
import re
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.models import resnet
from torchvision.ops import FrozenBatchNorm2d

from detection.modeling.detectron2 import detectron2_c4_config
from detection.modeling.factory import detector_from_config


def detectron2_resnet_key(key: str) -> str:
    """torchvision ResNet key -> detectron2's (``layer1.0.bn1.weight`` -> ``res2.0.conv1.norm.weight``)."""
    if key == "conv1.weight":
        return "stem.conv1.weight"
    if key.startswith("bn1."):
        return "stem.conv1.norm." + key[4:]
    stage, index, part, rest = re.fullmatch(r"layer(\d)\.(\d+)\.(\w+?)\.(.+)", key).groups()
    prefix = f"res{int(stage) + 1}.{index}"
    if part == "downsample":
        which, leaf = rest.split(".", 1)
        return f"{prefix}.shortcut.weight" if which == "0" else f"{prefix}.shortcut.norm.{leaf}"
    if part.startswith("bn"):
        return f"{prefix}.conv{part[2:]}.norm.{rest}"
    return f"{prefix}.{part}.{rest}"


def caffe2_blob(detectron2_key: str) -> str:
    """detectron2 ResNet key -> MSRA caffe2 blob (``res2.0.conv1.norm.weight`` -> ``res2_0_branch2a_bn_s``)."""
    norm = {"weight": "s", "bias": "b"}
    if detectron2_key == "stem.conv1.weight":
        return "conv1_w"
    if detectron2_key.startswith("stem.conv1.norm."):
        return "res_conv1_bn_" + norm[detectron2_key.rsplit(".", 1)[1]]
    stage, index, conv, rest = re.fullmatch(r"res(\d)\.(\d+)\.(conv\d|shortcut)\.(.+)", detectron2_key).groups()
    branch = {"conv1": "branch2a", "conv2": "branch2b", "conv3": "branch2c", "shortcut": "branch1"}[conv]
    suffix = "w" if rest == "weight" else "bn_" + norm[rest.rsplit(".", 1)[1]]
    return f"res{stage}_{index}_{branch}_{suffix}"


def to_detectron2_layout(state_dict: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """A detector of this toolkit in detectron2's names: background row last, no background box deltas."""
    rpn = {"conv.0.0": "conv", "cls_logits": "objectness_logits", "bbox_pred": "anchor_deltas"}
    out = {}
    for key, value in state_dict.items():
        value = value.detach().clone()
        if key.startswith("backbone."):
            name = "backbone." + detectron2_resnet_key(key.removeprefix("backbone."))
        elif key.startswith("roi_heads.box_head.layer4."):
            name = "roi_heads." + detectron2_resnet_key(key.removeprefix("roi_heads.box_head."))
        elif key.startswith("rpn.head."):
            part, leaf = key.removeprefix("rpn.head.").rsplit(".", 1)
            name = f"proposal_generator.rpn_head.{rpn[part]}.{leaf}"
        elif key.startswith("roi_heads.box_predictor.cls_score."):
            name, value = key, torch.cat([value[1:], value[:1]])
        elif key.startswith("roi_heads.box_predictor.bbox_pred."):
            name, value = key, value[4:]
        else:
            raise AssertionError(f"unexpected key {key}")
        out[name] = value.numpy()
    return out


def randomize_frozen_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Statistics that change the output if a norm is mapped to the wrong place, yet keep ~100 layers sane."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (FrozenBatchNorm2d, torch.nn.BatchNorm2d)):
                c = module.weight.shape[0]
                module.running_mean.copy_(torch.randn(c, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
                module.weight.copy_((torch.rand(c, generator=generator) + 0.5) * 0.5)
                module.bias.copy_(torch.randn(c, generator=generator) * 0.1)


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """An 8-bit RGB image with structure at several scales (waves and noise), which features respond to."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    waves = 127 + 100 * np.sin(xx[..., None] / 7.0 + np.arange(3)) * np.cos(yy[..., None] / 11.0)
    return np.clip(waves + rng.normal(0, 30, (height, width, 3)), 0, 255).astype(np.uint8)


def rgb_01(pixels: np.ndarray) -> torch.Tensor:
    """What the readers give the model for 8-bit RGB ``pixels``: ``[3, H, W]`` float32, the values / 255."""
    return torch.from_numpy(np.array(pixels)).permute(2, 0, 1).float() / 255.0


def pil_resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """PIL's bilinear resize as detectron2's published models were run with it: the horizontal pass, then the
    vertical one (PIL up to 12 always; 13 starts with the vertical pass for some reductions of tall images,
    1 apart in a few values). Two single-axis resizes are exactly PIL's two passes in any version."""
    image = Image.fromarray(pixels)
    if size[1] != image.width:
        image = image.resize((size[1], image.height), Image.BILINEAR)
    if size[0] != image.height:
        image = image.resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(image)


def write_msra_file(model: resnet.ResNet, path: Path, wrap_in_blobs: bool = False) -> None:
    """``model`` (which takes BGR input) as detectron2's ``ImageNetPretrained/MSRA/R-50.pkl``: caffe2 blob
    names, norm as scale and bias only, the 1000-class classifier and solver blobs beside, a protocol-2 pickle."""
    blobs = {}
    for key, value in model.state_dict().items():
        if key.startswith("fc.") or key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        blobs[caffe2_blob(detectron2_resnet_key(key))] = value.numpy()
    blobs["pred_w"], blobs["pred_b"] = model.fc.weight.detach().numpy(), model.fc.bias.detach().numpy()
    blobs["conv1_w_momentum"] = np.zeros_like(blobs["conv1_w"])
    with open(path, "wb") as file:
        pickle.dump({"blobs": blobs} if wrap_in_blobs else blobs, file, protocol=2)


def make_msra_resnet50(path: Path) -> resnet.ResNet:
    """A random ResNet-50 trained 'as MSRA' (stride in the 1x1, norms with mean 0 / variance 1), written as its
    caffe2 file at ``path``."""
    torch.manual_seed(1)
    model = resnet.resnet50(weights=None).eval()
    for stage in (model.layer2, model.layer3, model.layer4):
        stage[0].conv1.stride, stage[0].conv2.stride = (2, 2), (1, 1)
    randomize_frozen_bn(model, seed=1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.zero_(), module.running_var.fill_(1.0)
    write_msra_file(model, path)
    return model


def make_detectron2_r101(folder: Path) -> dict[str, torch.Tensor]:
    """A random R101-C4 of this toolkit (detectron2's config, 80 classes, non-trivial frozen BN, a box
    predictor that scores some boxes above 0.05) written in detectron2's two file formats in ``folder``
    (``model_final.pkl``, ``model.pth``); returns its detections on the round-trip image."""
    torch.manual_seed(0)
    config = detectron2_c4_config(101)
    model = detector_from_config(config.model, 81, backbone_weights=False).eval()
    model.transform.min_size, model.transform.max_size = (320,), 500  # test images are not resized: faster
    randomize_frozen_bn(model)
    spread_scores(model, round_trip_image())
    layout = write_model_zoo_file(model, folder / "model_final.pkl")
    torch.save({"model": {k: torch.from_numpy(v) for k, v in layout.items()}, "iteration": 89999}, folder / "model.pth")
    with torch.no_grad():
        detections = model([round_trip_image()])[0]
    return detections


def write_model_zoo_file(model: torch.nn.Module, path: Path) -> dict[str, np.ndarray]:
    """``model`` (a C4 detector of this toolkit) as a detectron2 model-zoo pickle at ``path``; returns its layout."""
    layout = to_detectron2_layout(model.state_dict())
    with open(path, "wb") as file:
        pickle.dump({"model": layout, "__author__": "Detectron2 Model Zoo"}, file)
    return layout


def round_trip_image() -> torch.Tensor:
    return torch.rand(3, 320, 500, generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def spread_scores(model: torch.nn.Module, image: torch.Tensor) -> None:
    """Random weights give RoI features that differ little from each other and objectness logits near 0:
    scale the RPN's logits, and make the class scores a random function of each feature's deviation from
    the mean, so that many RoIs score above 0.05 for various classes."""
    model.rpn.head.cls_logits.weight.mul_(30.0)
    features = model.backbone(model.transform([image])[0].tensors)
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(32, 2, generator=generator) * torch.tensor([400.0, 240.0])
    boxes = torch.cat([corners, corners + 16 + 80 * torch.rand(32, 2, generator=generator)], dim=1)
    pooled = model.roi_heads.box_head(model.roi_heads.box_roi_pool({"0": features}, [boxes], None))
    cls_score = model.roi_heads.box_predictor.cls_score
    weight = 2.0 * torch.randn(cls_score.weight.shape, generator=generator) / (pooled.std(0) + 1e-2)
    cls_score.weight.copy_(weight / pooled.shape[1] ** 0.5)
    cls_score.bias.copy_(-cls_score.weight @ pooled.mean(0))


if __name__ == "__main__":
    # A random R101-C4 model-zoo file of the real size (212 MB), e.g. for tools/benchmark_weights.py:
    #   python tests/detectron2_helpers.py /tmp/zoo/hub/checkpoints/model_final_298dad.pkl
    target = Path(sys.argv[1])
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    random_model = detector_from_config(detectron2_c4_config(101).model, 81, backbone_weights=False)
    randomize_frozen_bn(random_model)
    write_model_zoo_file(random_model, target)
    print(f"wrote {target} ({target.stat().st_size:,} bytes)")
