"""Faster R-CNN assembly: the wiring of torchvision's FasterRCNN and the options."""

import pytest
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.ops import roi_align, roi_pool

import backbones
from detection import DetectorOptions, SingleLevelRoIAlign, SingleLevelRoIPool, build_detector
from detection.modeling.poolers import roi_align_by_matmul


def rpn_top_n(model: FasterRCNN) -> dict[str, tuple[int, int]]:
    """The RPN's (pre-NMS, post-NMS) top-N in training and in testing, through its public methods."""
    values = {}
    for mode, training in (("training", True), ("testing", False)):
        model.rpn.train(training)
        values[mode] = (model.rpn.pre_nms_top_n(), model.rpn.post_nms_top_n())
    return values


def test_resnet_c4_detector_is_wired_as_the_paper():
    model = build_detector("resnet18", num_classes=21)
    assert type(model) is FasterRCNN
    assert model.transform.min_size == (600,) and model.transform.max_size == 1000
    assert model.rpn.anchor_generator.sizes == (128, 256, 512)
    assert model.rpn.anchor_generator.aspect_ratios == (0.5, 1.0, 2.0)
    assert model.rpn.anchor_generator.stride == 16
    assert rpn_top_n(model) == {"training": (12000, 2000), "testing": (6000, 300)}
    assert model.transform.size_divisible == 32
    pooler = model.roi_heads.box_roi_pool
    assert isinstance(pooler, SingleLevelRoIAlign) and pooler.output_size == 14 and pooler.aligned
    assert model.roi_heads.box_predictor.cls_score.out_features == 21
    assert model.roi_heads.box_predictor.bbox_pred.out_features == 21 * 4
    assert model.roi_heads.box_predictor.cls_score.in_features == 512


def test_vgg16_detector_uses_roi_pool_7x7():
    model = build_detector("vgg16", num_classes=81)
    pooler = model.roi_heads.box_roi_pool
    assert isinstance(pooler, SingleLevelRoIPool) and pooler.output_size == 7
    assert model.roi_heads.box_predictor.cls_score.in_features == 4096


def test_options_reach_torchvision():
    model = build_detector(
        "resnet18",
        num_classes=3,
        min_size=(640, 672, 704),
        max_size=1333,
        anchor_sizes=(32, 64, 128, 256, 512),
        rpn_post_nms_top_n_test=1000,
        box_batch_size_per_image=512,
        box_score_thresh=0.2,
        box_nms_thresh=0.5,
        box_detections_per_img=50,
        backbone_kwargs={"aligned": False},
    )
    assert model.transform.min_size == (640, 672, 704)
    assert model.rpn.anchor_generator.num_anchors_per_location() == [15]
    assert rpn_top_n(model)["testing"][1] == 1000
    assert model.roi_heads.fg_bg_sampler.batch_size_per_image == 512
    assert (model.roi_heads.score_thresh, model.roi_heads.nms_thresh, model.roi_heads.detections_per_img) == (
        0.2,
        0.5,
        50,
    )
    assert model.roi_heads.box_roi_pool.aligned is False


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(TypeError, match="unknown detector option.*rpn_top_n.*valid options: min_size"):
        build_detector("resnet18", num_classes=3, rpn_top_n=5)


def test_num_classes_counts_background():
    with pytest.raises(ValueError, match="must be >= 2"):
        build_detector("resnet18", num_classes=1)


def test_inconsistent_options_are_refused():
    with pytest.raises(ValueError, match="post-NMS top-N"):
        DetectorOptions(rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=300)


def test_built_spec_is_accepted_and_kwargs_only_with_names():
    spec = backbones.build("resnet18")
    assert build_detector(spec, num_classes=2).backbone is spec.trunk
    with pytest.raises(ValueError, match="backbone_kwargs"):
        build_detector(spec, num_classes=2, backbone_kwargs={"weights": None})


def test_a_trunk_without_out_channels_is_used_as_given():
    trunk = nn.Sequential(nn.Conv2d(3, 8, 3, stride=16, padding=1), nn.ReLU())
    head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 7 * 7, 32), nn.ReLU())
    spec = backbones.BackboneSpec(trunk, 8, head, 32, backbones.PoolerSpec("roi_align", 7))
    model = build_detector(spec, num_classes=3, min_size=64, max_size=96).eval()
    assert model.backbone is trunk and not hasattr(trunk, "out_channels")
    assert [key for key in model.state_dict() if key.startswith("backbone.")] == [
        "backbone.0.weight",
        "backbone.0.bias",
    ]
    assert model.rpn.head.conv[0][0].in_channels == 8
    with torch.no_grad():
        assert model([torch.rand(3, 64, 80)])[0]["boxes"].shape[1] == 4


def test_poolers_match_torchvision_ops():
    features = {"0": torch.rand(2, 8, 10, 12)}
    boxes = [torch.tensor([[0.0, 0.0, 64.0, 64.0]]), torch.tensor([[16.0, 8.0, 120.0, 150.0], [3.0, 5.0, 30.0, 40.0]])]
    shapes = [(160, 192), (160, 192)]
    aligned = SingleLevelRoIAlign(14, 1 / 16, 0, True)(features, boxes, shapes)
    torch.testing.assert_close(aligned, roi_align(features["0"], boxes, 14, 1 / 16, 0, True))
    pooled = SingleLevelRoIPool(7, 1 / 16)(features, boxes, shapes)
    torch.testing.assert_close(pooled, roi_pool(features["0"], boxes, 7, 1 / 16))
    assert aligned.shape == (3, 8, 14, 14) and pooled.shape == (3, 8, 7, 7)


@pytest.mark.parametrize("aligned", [True, False], ids=["aligned", "legacy"])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_roi_align_by_matmul_is_torchvisions_roi_align(aligned, sampling_ratio):
    """The separable form samples where torchvision's kernel samples, with its weights and border rules:
    RoIs inside, across and beyond the map's edges, empty ones, two images (one without RoIs)."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(3, 6, 13, 21, generator=generator)
    corners = torch.rand(40, 2, generator=generator) * torch.tensor([400.0, 260.0]) - 40
    sizes = torch.rand(40, 2, generator=generator) * torch.tensor([300.0, 200.0])
    sizes[::7] = 0
    boxes = torch.cat([corners, corners + sizes], dim=1)
    boxes[0] = torch.tensor([-500.0, -500.0, -300.0, -300.0])
    boxes[1] = torch.tensor([-30.0, -30.0, 700.0, 500.0])
    for output_size in (7, 14):
        # one cell per bin, the last sample exactly on the map's right edge (still read, as the edge cell)
        samples = sampling_ratio or 1
        left = (features.shape[-1] - output_size + 0.5 / samples + (0.5 if aligned else 0.0)) * 16
        boxes[2] = torch.tensor([left, 20.0, left + output_size * 16, 90.0])
        per_image = [boxes[:25], boxes[:0], boxes[25:]]
        expected = roi_align(features, per_image, output_size, 1 / 16, sampling_ratio, aligned)
        pooled = roi_align_by_matmul(features, per_image, output_size, 1 / 16, sampling_ratio, aligned)
        torch.testing.assert_close(pooled, expected, rtol=1e-5, atol=1e-5)
        assert pooled.is_contiguous(memory_format=torch.channels_last)


def test_detector_is_scriptable():
    model = build_detector("resnet18", num_classes=3, min_size=64, max_size=96).eval()
    scripted = torch.jit.script(model)
    image = [torch.rand(3, 64, 80)]
    with torch.no_grad():
        _, scripted_out = scripted(image)
        eager_out = model(image)
    torch.testing.assert_close(scripted_out[0]["boxes"], eager_out[0]["boxes"])
