"""tools/benchmark.py in a tiny configuration, and the fixed-RoI measurement it relies on."""

import json
import math

import pytest
import torch
from inference_helpers import load_tool
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from detection.benchmark.runner import (
    REFERENCE_MODEL,
    VARIANTS,
    Setting,
    build_benchmark_model,
    configure,
    count_flops,
    summarize,
)
from detection.cli import run_cli

benchmark = load_tool("benchmark")
TINY = Setting(min_size=64, max_size=96, num_rois=6)


def _refuse_non_standard(constant: str):
    raise ValueError(f"not standard JSON: {constant}")


def test_tiny_benchmark_writes_well_formed_json(tmp_path, capsys):
    output = tmp_path / "benchmark.json"
    argv = [
        "--backbones",
        "resnet18",
        "--no-reference",
        "--device",
        "cpu",
        "--size",
        "64x96",
        "--rois",
        "6",
        "--warmup",
        "0",
    ]
    argv += [
        "--repeats",
        "1",
        "--train-steps",
        "1",
        "--train-batch-size",
        "1",
        "--train-rois",
        "8",
        "--matmul-size",
        "128",
        "--precision",
        "bf16",  # explicitly: auto is fp32 only on a CPU without bfloat16 instructions
        "--output",
        str(output),
    ]
    assert benchmark.main(argv) == 0

    result = json.loads(output.read_text(), parse_constant=_refuse_non_standard)  # strict JSON: no NaN
    assert result["command"].startswith("python tools/benchmark.py --backbones resnet18")
    assert result["machine"]["device"] == "cpu" and result["reference_model"] is None
    assert set(result["machine"]["matmul_flops_per_s"]) == {"fp32", "bf16"}
    assert all(rate > 0 for rate in result["machine"]["matmul_flops_per_s"].values())
    (model,) = result["models"]
    assert model["name"] == "resnet18"
    assert model["parameters"]["total"] >= model["parameters"]["trainable"] > 0
    (inference,) = model["inference"]
    assert inference["setting"] == {"min_size": 64, "max_size": 96, "num_rois": 6}
    flops = inference["flops"]
    assert min(flops["trunk"], flops["rpn"], flops["head"]) > 0
    assert flops["trunk"] + flops["rpn"] + flops["head"] == pytest.approx(flops["total"], rel=0.01)
    assert flops["head_per_roi"] == pytest.approx(flops["head"] / 6)
    assert set(inference["precisions"]) == {"fp32", "bf16"}
    for measured in inference["precisions"].values():
        assert measured["latency_s"]["n"] == 1 and measured["latency_s"]["median"] > 0
        assert measured["images_per_s"] == pytest.approx(1 / measured["latency_s"]["median"])
        assert all(math.isfinite(v) and v > 0 for v in measured["matmul_fraction"].values())
    variants = inference["variants"]
    timed = {*VARIANTS, "bf16", "all_bf16"}
    assert set(variants["latency_s"]) == timed and set(variants["speedup"]) == timed - {"plain"}
    assert variants["folded_bn_layers"] == 20
    assert variants["best_fp32"] in VARIANTS and set(variants["over_best_fp32"]) == {"bf16"}
    assert set(model["train"]) == {"fp32", "bf16"}
    for precision, train in model["train"].items():
        assert train["precision"] == precision
        assert train["rois_per_image"] == 8 and train["batch_size"] == 1 and train["step_s"]["median"] > 0
        assert train["peak_memory_mib"] >= train["baseline_memory_mib"] > 0
    out = capsys.readouterr().out
    assert "| resnet18 | 64/96, 6 | fp32 |" in out and "| resnet18 | 64/96, 6 | bf16 |" in out
    assert "| all three + bf16 | all three + bf16 over best fp32 |" in out


def test_the_head_sees_exactly_n_rois_in_inference_and_training():
    torch.manual_seed(0)
    model = configure(build_benchmark_model("resnet18", num_classes=3), TINY, TINY.num_rois, seed=0)
    seen = []
    model.roi_heads.box_head.register_forward_hook(lambda module, inputs, output: seen.append(len(output)))
    image = torch.rand(3, 64, 96)
    with torch.no_grad():
        model.eval()([image, image])
    model.roi_heads.fg_bg_sampler.batch_size_per_image = 4
    model.train()([image], [{"boxes": torch.tensor([[10.0, 10, 50, 40]]), "labels": torch.tensor([1])}])
    assert seen == [2 * TINY.num_rois, 4]


def test_head_flops_grow_linearly_with_the_rois():
    torch.manual_seed(0)
    model = build_benchmark_model("resnet18", num_classes=3).eval()
    image = torch.rand(3, 64, 96)
    few = count_flops(configure(model, TINY, 4, seed=0), image)
    many = count_flops(configure(model, TINY, 8, seed=0), image)
    assert many["trunk"] == few["trunk"] and many["rpn"] == few["rpn"]
    assert many["head"] == pytest.approx(2 * few["head"], rel=0.01)


def test_summary_statistics():
    assert summarize([3.0, 1.0, 2.0, 10.0, 4.0]) == {
        "median": 3.0,
        "q1": 2.0,
        "q3": 4.0,
        "min": 1.0,
        "max": 10.0,
        "n": 5,
    }


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--backbones", "resnet7"], "unknown backbone(s) resnet7"),
        (["--size", "64x96", "800x1333", "--rois", "1", "2", "3"], "--rois"),
        (["--device", "cpu", "--precision", "fp16"], "--precision fp16 needs a CUDA device"),
    ],
)
def test_bad_arguments_are_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(benchmark.main, argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("name", ["resnet18", REFERENCE_MODEL])
def test_pretrained_layout_freezes_the_stem_and_batchnorm_with_working_statistics(name):
    torch.manual_seed(0)
    scratch = build_benchmark_model(name, num_classes=3)
    model = build_benchmark_model(name, num_classes=3, pretrained_layout=True)
    assert not any(isinstance(module, nn.BatchNorm2d) for module in model.modules())
    frozen = [module for module in model.modules() if isinstance(module, FrozenBatchNorm2d)]
    assert len(frozen) == sum(isinstance(module, nn.BatchNorm2d) for module in scratch.modules()) > 0
    assert all(not torch.equal(module.running_var, torch.ones_like(module.running_var)) for module in frozen)
    assert not model.backbone.get_submodule("body.conv1" if name == REFERENCE_MODEL else "conv1").weight.requires_grad
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 0 < trainable < sum(p.numel() for p in scratch.parameters())
