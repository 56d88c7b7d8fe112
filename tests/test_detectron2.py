"""detectron2 parity, rule by rule: anchors, stride placement, pixel convention, caffe2 and detectron2
checkpoint names, class rows, and a round trip through detectron2's checkpoint layout.

The layouts are written from their descriptions (detectron2_helpers.py); the parity against detectron2's
own code is in docs/detectron2.md.
"""

import json
import math
import os
import pickle
import re
import sys

import numpy as np
import pytest
import torch
from detectron2_helpers import photo, pil_resize, randomize_frozen_bn, rgb_01, round_trip_image, write_msra_file
from PIL import Image
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
from detection.modeling.factory import architecture_differences, resolve_model_config

CONVERT_TOOL = REPO / "tools" / "convert_detectron2.py"
SIZES, RATIOS = (32, 64, 128, 256, 512), (0.5, 1.0, 2.0)
C4_SETTINGS = dict(anchor_sizes=SIZES, aspect_ratios=RATIOS, size_divisible=1, min_size=330, max_size=500)


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


# --- images that need resizing -------------------------------------------------------------------------------


def detectron2_postprocess(detections: dict[str, torch.Tensor], size: tuple[int, int], original: tuple[int, int]):
    """detectron2's ``detector_postprocess``: boxes scaled by the ratio of sizes (float32, as ``Boxes.scale``),
    clipped to the original image, the empty ones dropped."""
    boxes = detections["boxes"] * torch.tensor([original[1] / size[1], original[0] / size[0]] * 2)
    boxes = torch.stack(
        [
            boxes[:, 0].clamp(0, original[1]),
            boxes[:, 1].clamp(0, original[0]),
            boxes[:, 2].clamp(0, original[1]),
            boxes[:, 3].clamp(0, original[0]),
        ],
        dim=1,
    )
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return {"boxes": boxes[keep], "scores": detections["scores"][keep], "labels": detections["labels"][keep]}


@pytest.mark.slow
def test_a_converted_model_gives_default_predictors_detections_on_an_image_it_resizes(detectron2_r101, tmp_path):
    """detectron2's DefaultPredictor on a 243 x 365 photo: ResizeShortestEdge(800, 1333) with PIL to 800 x 1202
    (torchvision's resize: 800 x 1201), the model at that size (the path proven identical to detectron2's), then
    detector_postprocess. The converted model gives the same through model([image]) and tools/infer.py."""
    _, folder = detectron2_r101
    converted = tmp_path / "converted.pth"
    assert (
        run_tool([sys.executable, str(CONVERT_TOOL), str(folder / "model_final.pkl"), str(converted)]).returncode == 0
    )
    model = load_detector(converted).model
    pixels = photo(243, 365, seed=3)
    with torch.no_grad():
        at_detectron2_size = model([rgb_01(pil_resize(pixels, (800, 1202)))])[
            0
        ]  # no resize there: 800 is the test size
        actual = model([rgb_01(pixels)])[0]
    expected = detectron2_postprocess(at_detectron2_size, (800, 1202), (243, 365))
    assert len(expected["boxes"]) >= 50  # spread_scores makes a random model score boxes above 0.05
    for key in ("boxes", "scores", "labels"):
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0)

    Image.fromarray(pixels).save(tmp_path / "photo.png")
    infer = [
        sys.executable,
        str(REPO / "tools" / "infer.py"),
        "--checkpoint",
        str(converted),
        str(tmp_path / "photo.png"),
    ]
    result = run_tool(
        [*infer, "--output-dir", str(tmp_path / "out"), "--score-thresh", "0", "--device", "cpu", "--precision", "fp32"]
    )
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / "out" / "detections.json").read_text())["images"][0]
    assert written["labels"] == expected["labels"].tolist()
    np.testing.assert_allclose(written["boxes"], expected["boxes"].numpy(), atol=0.006)  # written to 2 decimals
    np.testing.assert_allclose(written["scores"], expected["scores"].numpy(), atol=6e-5)  # 4 decimals


@pytest.mark.parametrize(
    "recipe",
    ["coco/resnet101_3x_detectron2.yaml", "voc/resnet50_c4_detectron2.yaml", "custom/resnet101_c4_detectron2.yaml"],
)
def test_detectron2_recipes_train_and_resize_as_detectron2(recipe):
    """The settings converted models get (the converter's config) and detectron2's recipes train with; the
    paper's recipes keep torchvision's resize and losses."""
    config = load_config(recipe, ["model.weights=null"])
    model, solver = config.model, config.solver
    assert (model.resize, model.rpn_smooth_l1_beta, model.box_smooth_l1_beta) == ("detectron2", 0.0, 0.0)
    assert (solver.momentum, solver.weight_decay_norm, solver.weight_decay_bias, solver.bias_lr_factor) == (
        0.9,
        0.0,
        None,
        1.0,
    )
    assert detectron2_c4_config(50).model.resize == "detectron2"
    for paper in ("coco/resnet101.yaml", "voc/resnet101.yaml", "voc/vgg16.yaml", "coco/vgg16.yaml"):
        model = load_config(paper).model
        assert (model.resize, model.rpn_smooth_l1_beta, model.box_smooth_l1_beta) == ("torchvision", 1 / 9, 1 / 9)
