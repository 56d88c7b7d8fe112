"""tools/benchmark.py in a tiny configuration, and the fixed-RoI measurement it relies on."""

import json
import math

import pytest
import torch
from inference_helpers import load_tool

from detection.benchmark.runner import VARIANTS, Setting, build_benchmark_model, configure, count_flops, summarize
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
        "--output",
        str(output),
    ]
    assert benchmark.main(argv) == 0

    result = json.loads(output.read_text(), parse_constant=_refuse_non_standard)  # strict JSON: no NaN
    assert result["command"].startswith("python tools/benchmark.py --backbones resnet18")
    assert result["machine"]["device"] == "cpu" and result["machine"]["matmul_flops_per_s"] > 0
    (model,) = result["models"]
    assert model["name"] == "resnet18"
    assert model["parameters"]["total"] >= model["parameters"]["trainable"] > 0
    (inference,) = model["inference"]
    assert inference["setting"] == {"min_size": 64, "max_size": 96, "num_rois": 6}
    flops = inference["flops"]
    assert min(flops["trunk"], flops["rpn"], flops["head"]) > 0
    assert flops["trunk"] + flops["rpn"] + flops["head"] == pytest.approx(flops["total"], rel=0.01)
    assert flops["head_per_roi"] == pytest.approx(flops["head"] / 6)
    assert inference["latency_s"]["n"] == 1 and inference["latency_s"]["median"] > 0
    assert inference["images_per_s"] == pytest.approx(1 / inference["latency_s"]["median"])
    assert all(math.isfinite(v) and v > 0 for v in inference["matmul_fraction"].values())
    variants = inference["variants"]
    assert set(variants["latency_s"]) == set(VARIANTS) and set(variants["speedup"]) == set(VARIANTS) - {"plain"}
    assert variants["folded_bn_layers"] == 20
    train = model["train"]
    assert train["rois_per_image"] == 8 and train["batch_size"] == 1 and train["step_s"]["median"] > 0
    assert train["peak_memory_mib"] >= train["baseline_memory_mib"] > 0
    assert "| resnet18 | 64/96, 6 |" in capsys.readouterr().out


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
    ],
)
def test_bad_arguments_are_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(benchmark.main, argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
