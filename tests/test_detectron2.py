"""detectron2 parity, rule by rule: anchors, stride placement, pixel convention, caffe2 and detectron2
checkpoint names, class rows, and a round trip through detectron2's checkpoint layout.

The layouts are written here from their descriptions (detectron2's ``c2_model_loading`` names, its
model-zoo pickle and Checkpointer formats); the parity against detectron2's own code is in
docs/detectron2.md.
"""

import math
import os
import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models import resnet
from torchvision.ops import FrozenBatchNorm2d
from training_helpers import REPO, run_tool

import backbones
from backbones.detectron2_names import MSRA_BGR_MEAN, MSRA_PIXELS
from detection import build_detector
from detection.checkpoint import load_detector
from detection.config import load_config
from detection.errors import ConfigError
from detection.modeling.anchors import cell_anchors
from detection.modeling.detectron2 import ConversionError, detectron2_c4_config, detectron2_depth
from detection.modeling.factory import architecture_differences, detector_from_config, resolve_model_config

CONVERT_TOOL = REPO / "tools" / "convert_detectron2.py"
SIZES, RATIOS = (32, 64, 128, 256, 512), (0.5, 1.0, 2.0)
C4_SETTINGS = dict(anchor_sizes=SIZES, aspect_ratios=RATIOS, size_divisible=1, min_size=330, max_size=500)


# --- the layouts, written from their descriptions ---------------------------------------------------


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


def resnet_trunk(model: resnet.ResNet, image: torch.Tensor) -> torch.Tensor:
    """conv1..conv4 of a torchvision ResNet."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(image))))
    return model.layer3(model.layer2(model.layer1(x)))


# --- anchors ---------------------------------------------------------------------------------------


def test_cell_anchors_follow_detectron2_formula():
    anchors = cell_anchors(SIZES, RATIOS)
    expected = []
    for size in SIZES:  # size-major: anchor i * 3 + j has size i and ratio j
        for ratio in RATIOS:
            w = math.sqrt(size**2 / ratio)
            expected.append([-w / 2, -ratio * w / 2, w / 2, ratio * w / 2])
    torch.testing.assert_close(anchors, torch.tensor(expected, dtype=torch.float32), rtol=0, atol=0)
    # Not rounded: torchvision's AnchorGenerator gives [-23, -11, 23, 11] for the first one.
    torch.testing.assert_close(anchors[0], torch.tensor([-22.627417, -11.313708, 22.627417, 11.313708]))


def test_anchors_of_a_330x500_image_sit_on_the_stride_16_grid():
    model = build_detector("resnet18", num_classes=3, **C4_SETTINGS).eval()
    images, _ = model.transform([torch.rand(3, 330, 500)])
    assert images.tensors.shape[-2:] == (330, 500)  # size_divisible=1: not padded to 352 x 512
    features = model.backbone(images.tensors)
    height, width = features.shape[-2:]
    assert (height, width) == (21, 32)  # 330 // 16 would give 15 as torchvision's derived stride
    anchors = model.rpn.anchor_generator(images, [features])[0]
    assert anchors.shape == (21 * 32 * 15, 4)
    cell = cell_anchors(SIZES, RATIOS)
    for y, x, k in [(0, 0, 0), (2, 5, 7), (20, 31, 14)]:
        expected = cell[k] + torch.tensor([16.0 * x, 16.0 * y, 16.0 * x, 16.0 * y])
        torch.testing.assert_close(anchors[(y * width + x) * 15 + k], expected, rtol=0, atol=0)


# --- the ResNet's conventions ----------------------------------------------------------------------


def test_stride_in_1x1_moves_the_stride_of_the_downsampling_blocks():
    torch.manual_seed(0)
    reference = resnet.resnet50(weights=None).eval()
    for stage in (reference.layer2, reference.layer3, reference.layer4):
        stage[0].conv1.stride, stage[0].conv2.stride = (2, 2), (1, 1)
    path_state = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    spec = backbones.build("resnet50", stride_in_1x1=True, norm="bn")
    spec.trunk.load_state_dict({k: v for k, v in path_state.items() if not k.startswith("layer4")})
    spec.trunk.eval()
    image = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        expected = resnet_trunk(reference, image)
        torch.testing.assert_close(spec.trunk(image), expected)
        default = backbones.build("resnet50", norm="bn").trunk.eval()
        default.load_state_dict(spec.trunk.state_dict())
        assert not torch.allclose(default(image), expected, atol=1e-3)
    assert spec.head.layer4[0].conv1.stride == (2, 2) and spec.head.layer4[0].conv2.stride == (1, 1)
    with pytest.raises(ValueError, match="Bottleneck"):
        backbones.build("resnet18", stride_in_1x1=True)


def test_rgb_01_images_reach_a_bgr_255_trunk_exactly_as_detectron2_feeds_it():
    torch.manual_seed(0)
    spec = backbones.build("resnet50", stride_in_1x1=True, norm="frozen_bn")
    randomize_frozen_bn(spec.trunk)
    spec = backbones.BackboneSpec(spec.trunk.eval(), 1024, spec.head, 2048, spec.pooler, MSRA_PIXELS)
    model = build_detector(spec, num_classes=2, min_size=64, max_size=96, size_divisible=1).eval()
    pixels = torch.randint(0, 256, (64, 96, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    rgb = pixels.permute(2, 0, 1).float() / 255.0  # what a reader gives the detector
    bgr_255 = pixels.permute(2, 0, 1).flip(0).float() - torch.tensor(MSRA_BGR_MEAN).view(3, 1, 1)  # detectron2's
    with torch.no_grad():
        images, _ = model.transform([rgb])
        torch.testing.assert_close(images.tensors[0], bgr_255, rtol=0, atol=0)
        torch.testing.assert_close(model.backbone(images.tensors), spec.trunk(bgr_255[None]), rtol=0, atol=0)


# --- MSRA caffe2 ImageNet files ----------------------------------------------------------------------


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


@pytest.fixture(scope="module")
def msra_resnet50(tmp_path_factory):
    """A random ResNet-50 trained 'as MSRA' (stride in the 1x1, norms with mean 0 / variance 1) and its
    caffe2 file."""
    torch.manual_seed(1)
    model = resnet.resnet50(weights=None).eval()
    for stage in (model.layer2, model.layer3, model.layer4):
        stage[0].conv1.stride, stage[0].conv2.stride = (2, 2), (1, 1)
    randomize_frozen_bn(model, seed=1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.zero_(), module.running_var.fill_(1.0)
    path = tmp_path_factory.mktemp("msra") / "R-50.pkl"
    write_msra_file(model, path)
    return model, path


@pytest.mark.parametrize("wrap_in_blobs", [False, True])
def test_msra_caffe2_file_loads_with_its_conventions(msra_resnet50, tmp_path, wrap_in_blobs):
    reference, path = msra_resnet50
    if wrap_in_blobs:
        path = tmp_path / "R-50-blobs.pkl"
        write_msra_file(reference, path, wrap_in_blobs=True)
    spec = backbones.build("resnet50", weights=path)
    assert spec.pixels == MSRA_PIXELS
    assert spec.trunk.layer2[0].conv1.stride == (2, 2)  # stride_in_1x1 switched on by the file
    assert isinstance(spec.trunk.bn1, FrozenBatchNorm2d)
    model = build_detector(spec, num_classes=2, min_size=64, max_size=96, size_divisible=1).eval()
    rgb = torch.randint(0, 256, (3, 64, 96), generator=torch.Generator().manual_seed(0)).float() / 255.0
    with torch.no_grad():
        bgr = rgb.flip(0) * 255.0 - torch.tensor(MSRA_BGR_MEAN).view(3, 1, 1)
        expected = resnet_trunk(reference, bgr[None])
        actual = model.backbone(model.transform([rgb])[0].tensors)
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_msra_file_settles_the_config(msra_resnet50):
    _, path = msra_resnet50
    cfg = load_config(None, ["model.backbone=resnet50", f"model.weights={path}"]).model
    resolved = resolve_model_config(cfg)
    assert resolved.backbone_kwargs["stride_in_1x1"] is True
    assert (resolved.image_mean, resolved.image_std) == (MSRA_PIXELS.mean, MSRA_PIXELS.std)
    assert (resolved.pixel_scale, resolved.channel_order) == (255.0, "BGR")
    with pytest.raises(ConfigError, match="stride_in_1x1"):
        resolve_model_config(
            load_config(None, [f"model.weights={path}", "model.backbone_kwargs={stride_in_1x1: false}"]).model
        )
    with pytest.raises(ValueError, match="stride_in_1x1=True"):
        backbones.build("resnet50", weights=path, stride_in_1x1=False)


def test_crafted_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    crafted = tmp_path / "R-50.pkl"
    crafted.write_bytes(pickle.dumps({"conv1_w": Payload()}, protocol=2))
    with pytest.raises(ValueError, match=r"refused to unpickle: the file refers to (posix|os)\.system"):
        backbones.build("resnet50", weights=crafted)
    result = run_tool([sys.executable, str(CONVERT_TOOL), str(crafted), str(tmp_path / "out.pth")])
    assert result.returncode == 2 and not marker.exists()
    assert result.stderr.count("\n") == 1 and "refused to unpickle" in result.stderr


# --- detectron2 detector checkpoints ---------------------------------------------------------------


def fake_detectron2_keys(res4_blocks: int, extra: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Names of a C4 model's parts (res4 blocks, res5, an 80-class predictor), with placeholder values."""
    keys = ["roi_heads.res5.0.conv1.weight", *extra, *(f"backbone.res4.{i}.conv1.weight" for i in range(res4_blocks))]
    return {**{key: torch.zeros(1) for key in keys}, "roi_heads.box_predictor.cls_score.weight": torch.zeros(81, 8)}


def test_depth_is_found_from_the_res4_blocks():
    assert detectron2_depth(fake_detectron2_keys(6), "r50") == 50
    assert detectron2_depth(fake_detectron2_keys(23), "r101") == 101
    with pytest.raises(ConversionError, match="10 res4 blocks"):
        detectron2_depth(fake_detectron2_keys(10), "odd")
    with pytest.raises(ConversionError, match="FPN"):
        detectron2_depth(fake_detectron2_keys(6, ("backbone.bottom_up.stem.conv1.weight",)), "fpn")


@pytest.fixture(scope="module")
def detectron2_r101(tmp_path_factory):
    """A random R101-C4 of this toolkit (detectron2's config, 80 classes, non-trivial frozen BN, a box
    predictor that scores some boxes above 0.05), its detections on the round-trip image, and the same
    weights in detectron2's two file formats."""
    torch.manual_seed(0)
    config = detectron2_c4_config(101)
    model = detector_from_config(config.model, 81, backbone_weights=False).eval()
    model.transform.min_size, model.transform.max_size = (320,), 500  # test images are not resized: faster
    randomize_frozen_bn(model)
    spread_scores(model, round_trip_image())
    folder = tmp_path_factory.mktemp("detectron2")
    layout = to_detectron2_layout(model.state_dict())
    with open(folder / "model_final.pkl", "wb") as file:
        pickle.dump({"model": layout, "__author__": "Detectron2 Model Zoo"}, file)
    torch.save({"model": {k: torch.from_numpy(v) for k, v in layout.items()}, "iteration": 89999}, folder / "model.pth")
    with torch.no_grad():
        detections = model([round_trip_image()])[0]
    return detections, folder


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


def test_class_rows_are_moved_and_background_deltas_added(detectron2_r101, tmp_path):
    _, folder = detectron2_r101
    output = tmp_path / "converted.pth"
    assert run_tool([sys.executable, str(CONVERT_TOOL), str(folder / "model_final.pkl"), str(output)]).returncode == 0
    converted = torch.load(output, weights_only=True)
    layout = pickle.loads((folder / "model_final.pkl").read_bytes())["model"]
    scores = converted["model"]["roi_heads.box_predictor.cls_score.weight"]
    torch.testing.assert_close(scores[0], torch.from_numpy(layout["roi_heads.box_predictor.cls_score.weight"][80]))
    torch.testing.assert_close(scores[1:], torch.from_numpy(layout["roi_heads.box_predictor.cls_score.weight"][:80]))
    deltas = converted["model"]["roi_heads.box_predictor.bbox_pred.weight"]
    assert deltas.shape == (81 * 4, 2048) and not deltas[:4].any()
    torch.testing.assert_close(deltas[4:], torch.from_numpy(layout["roi_heads.box_predictor.bbox_pred.weight"]))
    assert converted["class_names"][0] == "person" and len(converted["class_names"]) == 80


@pytest.mark.slow
@pytest.mark.parametrize("file_name", ["model_final.pkl", "model.pth"])
def test_round_trip_through_detectron2_layout_gives_identical_detections(detectron2_r101, tmp_path, file_name):
    expected, folder = detectron2_r101
    output = tmp_path / "converted.pth"
    result = run_tool([sys.executable, str(CONVERT_TOOL), str(folder / file_name), str(output)])
    assert result.returncode == 0, result.stderr
    assert re.search(r"R101-C4 Faster R-CNN, 80 classes, [\d,]+ parameters", result.stdout)
    loaded = load_detector(output)
    assert loaded.iteration == (89999 if file_name == "model.pth" else 0)
    loaded.model.transform.min_size, loaded.model.transform.max_size = (320,), 500
    with torch.no_grad():
        actual = loaded.model([round_trip_image()])[0]
    assert len(expected["boxes"]) == 100 and len(expected["labels"].unique()) >= 10
    for key in ("boxes", "scores", "labels"):
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0)


def test_convert_tool_errors_are_one_line(tmp_path, msra_resnet50):
    _, imagenet_file = msra_resnet50
    fpn = tmp_path / "fpn.pkl"
    fpn.write_bytes(pickle.dumps({"model": {"backbone.bottom_up.stem.conv1.weight": np.zeros(1)}, "__author__": "x"}))
    unknown = tmp_path / "unknown.pth"
    torch.save({"model": fake_detectron2_keys(6, ("roi_heads.mask_head.x.weight",))}, unknown)
    incomplete = tmp_path / "incomplete.pth"  # an R50-C4's res4 and res5 names, but not its other weights
    torch.save({"model": fake_detectron2_keys(6)}, incomplete)
    scoreless = {**fake_detectron2_keys(6), "roi_heads.box_predictor.cls_score.weight": torch.zeros(1)}
    torch.save({"model": scoreless}, tmp_path / "scoreless.pth")
    cases = {
        tmp_path / "missing.pkl": "not found",
        incomplete: r"weights do not fit the model \(missing: backbone\.bn1\.bias, .*\(\d+ in all\)",
        imagenet_file: "ImageNet backbone weights",
        fpn: "an FPN model",
        unknown: "keys of no C4 Faster R-CNN part: .*roi_heads.mask_head.x.weight",
        fpn.with_name("scoreless.pth"): r"cls_score.weight is \[1\]; expected \[K \+ 1, C\]",
    }
    for source, message in cases.items():
        result = run_tool([sys.executable, str(CONVERT_TOOL), str(source), str(tmp_path / "out.pth")])
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and re.search(message, result.stderr), result.stderr


def test_weights_of_another_architecture_are_named():
    detectron2 = detectron2_c4_config(101).model
    torchvision_style = load_config(None, ["model.backbone=resnet101"]).model
    differences = architecture_differences(detectron2, torchvision_style)
    assert [d.split(":")[0] for d in differences] == [
        "model.backbone_kwargs.stride_in_1x1",
        "model.image_mean",
        "model.image_std",
        "model.pixel_scale",
        "model.channel_order",
    ]
    assert architecture_differences(detectron2, detectron2) == []
