"""ResNet weights named the detectron2 way, and the caffe2 (MSRA) files detectron2 reads, in torchvision's names.

Three namings of the same ResNet:

| part | caffe2 blob (``R-101.pkl``) | detectron2 | torchvision |
|---|---|---|---|
| stem conv | ``conv1_w`` | ``stem.conv1.weight`` | ``conv1.weight`` |
| stem norm | ``res_conv1_bn_{s,b}`` | ``stem.conv1.norm.{weight,bias}`` | ``bn1.{weight,bias}`` |
| block conv k=1,2,3 | ``res2_0_branch2{a,b,c}_w`` | ``res2.0.conv{k}.weight`` | ``layer1.0.conv{k}.weight`` |
| block norm | ``res2_0_branch2a_bn_{s,b}`` | ``res2.0.conv1.norm.{weight,bias}`` | ``layer1.0.bn1.{weight,bias}`` |
| shortcut | ``res2_0_branch1_{w,bn_s,bn_b}`` | ``res2.0.shortcut.{weight,norm.*}`` | ``layer1.0.downsample.{0,1}.*`` |

detectron2's stage ``res{k}`` is torchvision's ``layer{k-1}``. The caffe2 files keep frozen BatchNorm as
scale (``_bn_s``) and bias (``_bn_b``) only; detectron2 then uses mean 0 and variance 1, and so do we.
Their ``conv1`` takes BGR input in 0..255 minus a mean (:data:`MSRA_PIXELS`); the weights stay in that
order, and the detector's transform gives them such input from RGB ``[0, 1]`` images: reordering the
input reproduces detectron2's numbers exactly, where flipping conv1's channels instead would change the
order of its sums, and float32 rounding with it.
"""

import re

import numpy as np
import torch

from .spec import PixelConvention

# The MSRA ResNet weights (He et al. 2016) take BGR pixels in 0..255 minus this per-channel mean, with no
# division (the std is folded into conv1): detectron2's PIXEL_MEAN and PIXEL_STD for them.
MSRA_BGR_MEAN = (103.530, 116.280, 123.675)
MSRA_PIXELS = PixelConvention(mean=MSRA_BGR_MEAN, std=(1.0, 1.0, 1.0), scale=255.0, channel_order="BGR")

_CAFFE2_NORM = {"s": "weight", "b": "bias", "rm": "running_mean", "riv": "running_var"}
_CAFFE2_BRANCH = {"branch2a": "conv1", "branch2b": "conv2", "branch2c": "conv3", "branch1": "shortcut"}
# Blobs of an ImageNet file that a backbone does not use: the 1000-class classifier (``pred_*`` in some
# conversions, ``fc1000_*`` in others) and a stem conv bias, which detectron2's stem does not have
# either and leaves out too.
CAFFE2_UNUSED_BLOBS = ("pred_w", "pred_b", "fc1000_w", "fc1000_b", "conv1_b")


def torchvision_resnet_key(detectron2_key: str) -> str:
    """``res3.1.conv2.norm.weight`` -> ``layer2.1.bn2.weight`` (a key of detectron2's ResNet body).

    Raises:
        KeyError: the key is not part of a detectron2 ResNet.
    """
    stem = re.fullmatch(r"stem\.conv1\.(weight|norm\.(weight|bias|running_mean|running_var))", detectron2_key)
    if stem:
        return "conv1.weight" if stem.group(1) == "weight" else f"bn1.{stem.group(2)}"
    block = re.fullmatch(
        r"res([2-5])\.(\d+)\.(conv[123]|shortcut)\.(weight|norm\.(weight|bias|running_mean|running_var))",
        detectron2_key,
    )
    if not block:
        raise KeyError(detectron2_key)
    stage, index, conv, _, norm = block.groups()
    prefix = f"layer{int(stage) - 1}.{index}"
    if conv == "shortcut":
        return f"{prefix}.downsample.1.{norm}" if norm else f"{prefix}.downsample.0.weight"
    return f"{prefix}.bn{conv[-1]}.{norm}" if norm else f"{prefix}.{conv}.weight"


def detectron2_resnet_key(caffe2_blob: str) -> str:
    """``res2_0_branch2a_bn_s`` -> ``res2.0.conv1.norm.weight`` (the mapping of detectron2's
    ``c2_model_loading``, restricted to what an MSRA ResNet file holds).

    Raises:
        KeyError: the blob is not a ResNet weight.
    """
    stem = re.fullmatch(r"conv1_w|res_conv1_bn_(s|b|rm|riv)", caffe2_blob)
    if stem:
        return "stem.conv1.weight" if stem.group(1) is None else f"stem.conv1.norm.{_CAFFE2_NORM[stem.group(1)]}"
    block = re.fullmatch(r"res([2-5])_(\d+)_(branch2[abc]|branch1)_(w|bn_(s|b|rm|riv))", caffe2_blob)
    if not block:
        raise KeyError(caffe2_blob)
    stage, index, branch, _, norm = block.groups()
    prefix = f"res{stage}.{index}.{_CAFFE2_BRANCH[branch]}"
    return f"{prefix}.norm.{_CAFFE2_NORM[norm]}" if norm else f"{prefix}.weight"


def is_caffe2_resnet(blobs: dict) -> bool:
    """Whether a mapping looks like an MSRA caffe2 ResNet file (its stem and first block are there)."""
    return isinstance(blobs, dict) and "conv1_w" in blobs and "res2_0_branch2a_w" in blobs


def caffe2_resnet_state_dict(blobs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A torchvision-named ResNet state dict from the blobs of an MSRA caffe2 file.

    The weights keep their BGR input order (:data:`MSRA_PIXELS`). A norm stored as scale and bias only
    gets mean 0 and variance 1, as in detectron2. Blobs that are not ResNet weights
    (:data:`CAFFE2_UNUSED_BLOBS`, solver ``*_momentum``) are left out.

    Raises:
        KeyError: a blob is neither a ResNet weight nor one of the known extras (lists them all).
    """
    state_dict: dict[str, torch.Tensor] = {}
    unknown = []
    for blob, value in blobs.items():
        if blob in CAFFE2_UNUSED_BLOBS or blob.endswith("_momentum"):
            continue
        try:
            key = torchvision_resnet_key(detectron2_resnet_key(blob))
        except KeyError:
            unknown.append(blob)
            continue
        state_dict[key] = torch.as_tensor(np.asarray(value, dtype=np.float32))
    if unknown:
        raise KeyError(f"not ResNet weights: {', '.join(sorted(unknown))}")
    for key in [k for k in state_dict if k.endswith(".weight") and _is_norm_key(k)]:
        prefix = key.removesuffix("weight")
        channels = state_dict[key].shape[0]
        state_dict.setdefault(prefix + "running_mean", torch.zeros(channels))
        state_dict.setdefault(prefix + "running_var", torch.ones(channels))
    return state_dict


def _is_norm_key(key: str) -> bool:
    return re.search(r"(^bn1|\.bn\d|\.downsample\.1)\.weight$", key) is not None
