"""Backbone registry: registration, lookup errors, entry points, third-party backbones."""

import textwrap

import pytest
import torch
from torch import nn

import backbones
from backbones import registry
from detection import build_detector


@pytest.fixture
def isolated_registry(monkeypatch):
    """A copy of the registry that the test may add to; restored afterwards."""
    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))
    monkeypatch.setattr(registry, "_entry_points_loaded", True)


class TinyTrunk(nn.Module):
    """Two stride-4 convolutions: ``[B, 3, H, W]`` -> ``[B, 16, H/16, W/16]``."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), nn.ReLU(), nn.Conv2d(8, 16, 4, stride=4), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def build_tiny_backbone() -> backbones.BackboneSpec:
    head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU())
    return backbones.BackboneSpec(TinyTrunk(), 16, head, 32, backbones.PoolerSpec("roi_align", 4))


def test_list_is_sorted_and_has_the_builtins():
    names = backbones.list_backbones()
    assert names == sorted(names)
    assert {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg16"} <= set(names)
    assert backbones.build is backbones.build_backbone


def test_duplicate_name_is_refused(isolated_registry):
    with pytest.raises(ValueError, match="'resnet101' is already registered"):
        backbones.register_backbone("resnet101")(build_tiny_backbone)


def test_unknown_name_lists_the_known_names():
    with pytest.raises(
        KeyError, match="unknown backbone 'resnet1001'; registered backbones: resnet101, resnet152, resnet18"
    ):
        backbones.build_backbone("resnet1001")


def test_builder_must_return_a_spec(isolated_registry):
    backbones.register("not_a_spec")(lambda: nn.Identity())
    with pytest.raises(TypeError, match="returned Identity, expected BackboneSpec"):
        backbones.build("not_a_spec")


def test_third_party_backbone_builds_a_working_detector(isolated_registry):
    backbones.register_backbone("tiny_test_net")(build_tiny_backbone)
    assert "tiny_test_net" in backbones.list_backbones()
    model = build_detector("tiny_test_net", num_classes=3, min_size=64, max_size=64)
    model.train()
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 48.0]]), "labels": torch.tensor([2])}]
    losses = model([torch.rand(3, 64, 64)], targets)
    assert torch.isfinite(sum(losses.values()))
    model.eval()
    with torch.no_grad():
        (detections,) = model([torch.rand(3, 64, 64)])
    assert detections["boxes"].shape[1] == 4


def test_entry_point_backbones_load_on_first_lookup(monkeypatch, tmp_path):
    package = tmp_path / "thirdparty_nets.py"
    package.write_text(
        textwrap.dedent("""
        from torch import nn
        import backbones

        def build():
            trunk = nn.Conv2d(3, 16, 16, stride=16)
            head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 4 * 4, 32))
            return backbones.BackboneSpec(trunk, 16, head, 32, backbones.PoolerSpec("roi_pool", 4))
    """)
    )
    dist_info = tmp_path / "thirdparty_nets-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-nets\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        f"[{backbones.ENTRY_POINT_GROUP}]\nplugin_net = thirdparty_nets:build\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)

    assert "plugin_net" in backbones.list_backbones()
    assert backbones.build("plugin_net").out_channels == 16
