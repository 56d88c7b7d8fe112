"""torchvision-style builders: detection.fasterrcnn_resnet*_c4 and fasterrcnn_vgg16."""

import pytest
import torch
from torchvision.models import ResNet18_Weights, ResNet50_Weights
from torchvision.models.detection import FasterRCNN
from torchvision.ops import FrozenBatchNorm2d

import detection
from detection.checkpoint import load_detector, save_checkpoint
from detection.config import config_to_dict, load_config
from detection.errors import CheckpointError
from detection.modeling.factory import detector_from_config

TINY = {"min_size": 64, "max_size": 96, "rpn_post_nms_top_n_test": 20, "box_score_thresh": 0.0}


def test_every_builder_is_a_public_name():
    names = ["resnet18_c4", "resnet34_c4", "resnet50_c4", "resnet101_c4", "resnet152_c4", "vgg16"]
    assert {f"fasterrcnn_{name}" for name in names} <= set(detection.__all__)


def test_untrained_builder_takes_torchvisions_arguments():
    model = detection.fasterrcnn_resnet18_c4(
        weights_backbone=None, num_classes=4, trainable_backbone_layers=2, min_size=128, box_detections_per_img=7
    )
    assert isinstance(model, FasterRCNN)
    assert model.roi_heads.box_predictor.cls_score.out_features == 4
    assert model.transform.min_size == (128,) and model.roi_heads.detections_per_img == 7
    frozen = {name.split(".")[1] for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"conv1", "layer1", "layer2"}  # 2 trainable layers: layer3 and layer4
    default = detection.fasterrcnn_resnet18_c4(weights_backbone=None)
    assert default.roi_heads.box_predictor.cls_score.out_features == 81  # COCO's 80 classes and the background


def test_unknown_option_and_wrong_backbone_weights_are_refused():
    with pytest.raises(TypeError, match="unknown detector option"):
        detection.fasterrcnn_resnet18_c4(weights_backbone=None, box_score_threshold=0.3)
    with pytest.raises(ValueError, match="loads ResNet18_Weights.IMAGENET1K_V1"):
        detection.fasterrcnn_resnet18_c4(weights_backbone=ResNet50_Weights.IMAGENET1K_V1)
    with pytest.raises(ValueError, match="loads ResNet50_Weights.IMAGENET1K_V1"):
        detection.fasterrcnn_resnet50_c4(weights_backbone=ResNet50_Weights.IMAGENET1K_V2)


def test_imagenet_enum_is_the_builders_imagenet(monkeypatch):
    asked = []
    monkeypatch.setattr(
        "detection.modeling.zoo.build_detector", lambda backbone, n, backbone_kwargs, **o: asked.append(backbone_kwargs)
    )
    detection.fasterrcnn_resnet18_c4(weights_backbone=ResNet18_Weights.IMAGENET1K_V1)
    detection.fasterrcnn_resnet18_c4(weights_backbone="IMAGENET1K_V1")
    detection.fasterrcnn_resnet18_c4()
    assert [kwargs["weights"] for kwargs in asked] == ["imagenet", "imagenet", "imagenet"]


@pytest.fixture
def trained_checkpoint(tmp_path):
    """A ResNet-18 checkpoint for two classes, with non-trivial BatchNorm statistics."""
    config = load_config(None, ["model.backbone=resnet18", *(f"model.{k}={v}" for k, v in TINY.items())])
    torch.manual_seed(0)
    model = detector_from_config(config.model, 3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "model_final.pth"
    state = {"model": model.state_dict(), "config": config_to_dict(config), "class_names": ["cat", "dog"]}
    save_checkpoint(path, state)
    return path


def test_weights_load_a_checkpoint_as_torchvision_loads_trained_weights(trained_checkpoint):
    model = detection.fasterrcnn_resnet18_c4(weights=trained_checkpoint).eval()
    assert model.roi_heads.box_predictor.cls_score.out_features == 3  # num_classes follows the weights
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())  # torchvision: frozen with weights
    reference = load_detector(trained_checkpoint).model
    image = torch.rand(3, 64, 80, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model([image])[0], reference([image])[0]
    assert len(ours["boxes"]) > 0
    torch.testing.assert_close(ours["boxes"], theirs["boxes"])
    torch.testing.assert_close(ours["scores"], theirs["scores"])
    fewer = detection.fasterrcnn_resnet18_c4(weights=str(trained_checkpoint), box_detections_per_img=2).eval()
    with torch.no_grad():
        assert len(fewer([image])[0]["boxes"]) <= 2  # keyword arguments override the checkpoint's settings


def test_weights_for_another_model_or_class_count_are_refused(trained_checkpoint):
    with pytest.raises(ValueError, match="trained for 3 \\(background included\\), got 81"):
        detection.fasterrcnn_resnet18_c4(weights=trained_checkpoint, num_classes=81)
    with pytest.raises(CheckpointError, match="a resnet18 detector, not resnet50; use fasterrcnn_resnet18_c4"):
        detection.fasterrcnn_resnet50_c4(weights=trained_checkpoint)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        detection.fasterrcnn_vgg16(weights=trained_checkpoint.parent / "missing.pth")
