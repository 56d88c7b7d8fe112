"""Built-in backbones: shapes, weight parity with torchvision, freezing."""

import socket
from urllib.error import URLError

import pytest
import torch
from torch import nn
from torchvision.models import WeightsEnum, resnet, vgg
from torchvision.ops import FrozenBatchNorm2d

import backbones
from detection import build_detector
from detection.config import config_from_dict
from detection.errors import ConfigError
from detection.modeling.factory import detector_from_config

SMALL_DETECTOR = dict(
    min_size=64, max_size=96, rpn_post_nms_top_n_train=32, rpn_post_nms_top_n_test=16, box_batch_size_per_image=16
)


@pytest.fixture(scope="module", params=backbones.list_backbones())
def backbone_name(request) -> str:
    return request.param


def test_trunk_is_stride_16_with_declared_channels(backbone_name):
    spec = backbones.build(backbone_name)
    spec.trunk.eval()
    with torch.no_grad():
        features = spec.trunk(torch.rand(1, 3, 128, 192))
    assert features.shape == (1, spec.out_channels, 128 // 16, 192 // 16)


def test_head_maps_pooled_rois_to_vectors(backbone_name):
    spec = backbones.build(backbone_name)
    p = spec.pooler.output_size
    spec.head.eval()
    with torch.no_grad():
        out = spec.head(torch.rand(5, spec.out_channels, p, p))
    assert out.shape == (5, spec.head_out_channels)


def test_detector_trains_and_predicts(backbone_name):
    torch.manual_seed(0)
    model = build_detector(backbone_name, num_classes=4, **SMALL_DETECTOR)
    images = [torch.rand(3, 64, 80), torch.rand(3, 72, 64)]
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0], [30.0, 10.0, 70.0, 60.0]]), "labels": torch.tensor([1, 3])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # an image with no objects
    ]
    model.train()
    losses = model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())

    model.eval()
    with torch.no_grad():
        detections = model(images)
    assert len(detections) == 2
    for det in detections:
        n = det["boxes"].shape[0]
        assert det["boxes"].shape == (n, 4) and det["labels"].shape == (n,) and det["scores"].shape == (n,)
        assert bool(((det["labels"] >= 1) & (det["labels"] < 4)).all())


def _randomize_batchnorm(model: nn.Module) -> None:
    """Non-trivial BN statistics, so that a BN that is not loaded (or loaded wrongly) shows."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            c = module.num_features
            module.running_mean.copy_(torch.randn(c, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(c, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(c, generator=generator) * 0.1)


@pytest.fixture(scope="module")
def torchvision_resnet101(tmp_path_factory):
    torch.manual_seed(0)
    model = resnet.resnet101(weights=None)
    _randomize_batchnorm(model)
    path = tmp_path_factory.mktemp("weights") / "resnet101.pth"
    torch.save(model.state_dict(), path)
    return model.eval(), path


def test_resnet101_weights_match_torchvision(torchvision_resnet101):
    reference, path = torchvision_resnet101
    spec = backbones.build("resnet101", weights=path)
    spec.trunk.eval(), spec.head.eval()
    image, rois = torch.rand(1, 3, 96, 128), torch.rand(3, 1024, 14, 14)
    with torch.no_grad():
        x = reference.maxpool(reference.relu(reference.bn1(reference.conv1(image))))
        expected_trunk = reference.layer3(reference.layer2(reference.layer1(x)))
        expected_head = torch.flatten(reference.avgpool(reference.layer4(rois)), 1)
        _assert_close_to_scale(spec.trunk(image), expected_trunk)
        _assert_close_to_scale(spec.head(rois), expected_head)


def _assert_close_to_scale(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to float32 rounding relative to the tensor's magnitude: FrozenBatchNorm2d folds the
    statistics into one scale and shift, so rounding differs from BatchNorm2d's after ~100 layers."""
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5 * scale)


def test_vgg16_weights_match_torchvision(tmp_path):
    torch.manual_seed(0)
    reference = vgg.vgg16(weights=None).eval()
    path = tmp_path / "vgg16.pth"
    torch.save(reference.state_dict(), path)
    spec = backbones.build("vgg16", weights=path)
    spec.trunk.eval(), spec.head.eval()
    image, rois = torch.rand(1, 3, 64, 96), torch.rand(2, 512, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(spec.trunk(image), reference.features[:30](image))
        torch.testing.assert_close(spec.head(rois), reference.classifier[:6](torch.flatten(rois, 1)))


def test_missing_and_unexpected_keys_are_errors(torchvision_resnet101, tmp_path):
    _, path = torchvision_resnet101
    state_dict = torch.load(path, weights_only=True)
    del state_dict["layer3.0.conv1.weight"]
    state_dict["layer9.weight"] = torch.zeros(1)
    broken = tmp_path / "broken.pth"
    torch.save(state_dict, broken)
    with pytest.raises(ValueError, match=r"missing: layer3\.0\.conv1\.weight; unexpected: layer9\.weight"):
        backbones.build("resnet101", weights=broken)


def test_weights_of_another_depth_are_refused(tmp_path):
    path = tmp_path / "resnet50.pth"
    torch.save(resnet.resnet50(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match=r"missing: .*layer3\.6\.conv1\.weight"):
        backbones.build("resnet101", weights=path)


def test_weights_without_classifier_and_wrapped_in_a_checkpoint_load(tmp_path):
    reference = resnet.resnet18(weights=None)
    state_dict = {f"module.{k}": v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": state_dict}, path)
    spec = backbones.build("resnet18", weights=path)
    torch.testing.assert_close(spec.trunk.conv1.weight, reference.conv1.weight)


def test_missing_weights_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        backbones.build("resnet50", weights=tmp_path / "nowhere.pth")


def test_corrupt_weights_file_is_a_clear_error(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth: not a readable PyTorch state dict"):
        backbones.build("vgg16", weights=path)


def _frozen_conv_params(reference: nn.Module, prefixes: tuple[str, ...]) -> int:
    """Parameters of ``prefixes`` that remain parameters under FrozenBatchNorm (BN affine becomes buffers)."""
    bn_names = {name for name, m in reference.named_modules() if isinstance(m, nn.BatchNorm2d)}
    return sum(
        p.numel()
        for name, p in reference.named_parameters()
        if name.startswith(prefixes) and name.rsplit(".", 1)[0] not in bn_names
    )


@pytest.mark.parametrize(
    "trainable_layers, frozen_prefixes",
    [
        (None, ("conv1", "layer1")),  # default with weights: stem and res2 frozen
        (0, ("conv1", "layer1", "layer2", "layer3", "layer4")),
        (3, ("conv1", "layer1")),
        (5, ()),
    ],
)
def test_resnet_frozen_parameter_counts(tmp_path, trainable_layers, frozen_prefixes):
    reference = resnet.resnet50(weights=None)
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    spec = backbones.build("resnet50", weights=path, trainable_layers=trainable_layers)
    parameters = list(spec.trunk.parameters()) + list(spec.head.parameters())
    frozen = sum(p.numel() for p in parameters if not p.requires_grad)
    assert frozen == _frozen_conv_params(reference, frozen_prefixes)
    assert sum(p.numel() for p in parameters) == _frozen_conv_params(reference, ("conv1", "layer"))
    norms = [
        m for m in [*spec.trunk.modules(), *spec.head.modules()] if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d))
    ]
    assert norms and all(isinstance(m, FrozenBatchNorm2d) for m in norms)


def test_resnet_from_scratch_trains_every_batchnorm():
    spec = backbones.build("resnet18")
    assert all(p.requires_grad for p in [*spec.trunk.parameters(), *spec.head.parameters()])
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in spec.trunk.modules())


def test_frozen_stage_batchnorm_stops_updating_from_scratch():
    spec = backbones.build("resnet18", trainable_layers=4)  # conv1 stage frozen, BN trainable elsewhere
    assert isinstance(spec.trunk.bn1, FrozenBatchNorm2d) and not spec.trunk.conv1.weight.requires_grad
    assert isinstance(spec.trunk.layer1[0].bn1, nn.BatchNorm2d)


def test_vgg16_pretrained_freezes_conv1_and_conv2(tmp_path):
    reference = vgg.vgg16(weights=None)
    path = tmp_path / "vgg16.pth"
    torch.save(reference.state_dict(), path)
    spec = backbones.build("vgg16", weights=path)
    frozen = {name for name, p in spec.trunk.named_parameters() if not p.requires_grad}
    assert frozen == {f"features.{i}.{kind}" for i in (0, 2, 5, 7) for kind in ("weight", "bias")}
    assert all(p.requires_grad for p in spec.head.parameters())


def test_trainable_layers_out_of_range_is_an_error():
    with pytest.raises(ValueError, match=r"trainable_layers must be in \[0, 5\], got 6"):
        backbones.build("resnet18", trainable_layers=6)


def test_group_norm_resnet_trains_and_matches_a_groupnorm_state_dict(tmp_path):
    from functools import partial

    reference = resnet.resnet18(weights=None, norm_layer=partial(nn.GroupNorm, 32)).eval()
    path = tmp_path / "resnet18_gn.pth"
    torch.save(reference.state_dict(), path)
    spec = backbones.build("resnet18", weights=path, norm="gn")
    assert isinstance(spec.trunk.bn1, nn.GroupNorm) and spec.trunk.bn1.num_groups == 32
    assert not spec.trunk.layer1[0].bn1.weight.requires_grad and spec.trunk.layer2[0].bn1.weight.requires_grad
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        x = reference.maxpool(reference.relu(reference.bn1(reference.conv1(image))))
        torch.testing.assert_close(spec.trunk.eval()(image), reference.layer3(reference.layer2(reference.layer1(x))))


@pytest.mark.parametrize(("name", "last_norm"), [("resnet18", "bn2"), ("resnet50", "bn3")])
@pytest.mark.parametrize("norm", ["bn", "gn"])
def test_zero_init_residual_starts_every_block_as_the_identity(name, last_norm, norm):
    spec = backbones.build(name, norm=norm, zero_init_residual=True)
    blocks = [
        block
        for stage in (spec.trunk.layer1, spec.trunk.layer2, spec.trunk.layer3, spec.head.layer4)
        for block in stage
    ]
    assert all(torch.all(getattr(block, last_norm).weight == 0) for block in blocks)
    assert torch.all(blocks[0].bn1.weight == 1)
    default = backbones.build(name, norm=norm)
    assert torch.all(getattr(default.head.layer4[-1], last_norm).weight == 1)


def test_group_norm_refuses_batchnorm_weights(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(resnet.resnet18(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="unexpected: .*running_mean"):
        backbones.build("resnet18", weights=path, norm="gn")
    with pytest.raises(ValueError, match="no torchvision ImageNet weights"):
        backbones.build("resnet18", weights="imagenet", norm="gn")


def test_imagenet_weights_without_network_say_how_to_pass_the_file(monkeypatch):
    def offline(self, *args, **kwargs):
        raise URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    with pytest.raises(ValueError) as info:
        backbones.build("resnet18", weights="imagenet")
    message = str(info.value)
    assert message.startswith(
        "could not download torchvision's ImageNet weights ResNet18_Weights.IMAGENET1K_V1 from "
        "https://download.pytorch.org/models/resnet18-f37072fd.pth ([Errno -2] Name or service not known); "
    )
    assert "pass its path as the weights (e.g. weights=/path/to/resnet18-f37072fd.pth)" in message
    assert "\n" not in message
    config = config_from_dict({"model": {"backbone": "resnet18", "weights": "imagenet"}})
    with pytest.raises(ConfigError, match=r"^model \(resnet18\): could not download torchvision's ImageNet weights"):
        detector_from_config(config.model, num_classes=3)
