"""Markdown tables of a :func:`detection.benchmark.runner.run_benchmark` result."""

from collections.abc import Sequence
from typing import Any

GIGA, MEGA = 1e9, 1e6


def markdown_report(result: dict[str, Any]) -> str:
    """The machine line and four tables: size and FLOPs, latency, inference speed-ups, training step."""
    machine = result["machine"]
    header = (
        f"Device: {machine['device']} ({machine['device_name']}, {machine['threads']} threads), "
        f"torch {machine['torch']}, "
        f"torchvision {machine['torchvision']}. Measured float32 matmul ({machine['matmul_size']}^2): "
        f"{machine['matmul_flops_per_s'] / GIGA:.0f} GFLOP/s."
    )
    sections = [
        header,
        _size_table(result["models"]),
        _latency_table(result["models"]),
        _variants_table(result["models"]),
        _train_table(result["models"]),
    ]
    return "\n\n".join(sections) + "\n"


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [f"**{title}**", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _setting(entry: dict[str, Any]) -> str:
    setting = entry["setting"]
    return f"{setting['min_size']}/{setting['max_size']}"


def _size_table(models: list[dict[str, Any]]) -> str:
    rows = []
    for model in models:
        for inference in model["inference"]:
            flops, rois = inference["flops"], inference["setting"]["num_rois"]
            rows.append(
                [
                    model["name"],
                    f"{model['parameters']['total'] / MEGA:.1f}",
                    f"{model['parameters']['trainable'] / MEGA:.1f}",
                    _setting(inference),
                    f"{flops['trunk'] / GIGA:.1f}",
                    f"{flops['rpn'] / GIGA:.1f}",
                    f"{flops['head'] / GIGA:.1f} ({rois})",
                    f"{flops['head_per_roi'] / GIGA:.3f}",
                    f"{flops['total'] / GIGA:.1f}",
                ]
            )
    columns = [
        "model",
        "params (M)",
        "trainable (M)",
        "scale",
        "trunk GFLOP",
        "RPN GFLOP",
        "head GFLOP (RoIs)",
        "head GFLOP/RoI",
        "total GFLOP",
    ]
    return _table("Parameters and FLOPs per image (torch.utils.flop_counter; a multiply-add is 2 FLOPs)", columns, rows)


def _latency_table(models: list[dict[str, Any]]) -> str:
    rows = []
    for model in models:
        for inference in model["inference"]:
            latency, fraction = inference["latency_s"], inference["matmul_fraction"]
            rows.append(
                [
                    model["name"],
                    f"{_setting(inference)}, {inference['setting']['num_rois']}",
                    f"{latency['median']:.3f}",
                    f"{latency['q1']:.3f}-{latency['q3']:.3f}",
                    f"{latency['min']:.3f}-{latency['max']:.3f}",
                    f"{inference['images_per_s']:.2f}",
                    f"{inference['trunk_s']:.3f}",
                    f"{inference['head_s']:.3f}",
                    f"{fraction['total']:.0%} / {fraction['trunk']:.0%} / {fraction['head']:.0%}",
                ]
            )
    columns = [
        "model",
        "scale, RoIs",
        "latency median (s)",
        "IQR (s)",
        "min-max (s)",
        "images/s",
        "trunk (s)",
        "RoI heads (s)",
        "FLOP/s of matmul rate: all / trunk / heads",
    ]
    return _table("Inference, batch 1, eval mode under torch.no_grad (the plain model)", columns, rows)


def _variants_table(models: list[dict[str, Any]]) -> str:
    rows = []
    for model in models:
        inference = model["inference"][0]
        variants = inference["variants"]
        speedup = {name: _ratio(value) for name, value in variants["speedup"].items()}
        rows.append(
            [
                model["name"],
                f"{variants['latency_s']['plain']['median']:.3f}",
                speedup["inference_mode"],
                f"{speedup['folded_bn']} ({variants['folded_bn_layers']})",
                speedup["channels_last"],
                speedup["all"],
            ]
        )
    scale = f"{_setting(models[0]['inference'][0])}, {models[0]['inference'][0]['setting']['num_rois']} RoIs"
    columns = ["model", "plain (s)", "inference_mode", "folded BN (layers)", "channels_last", "all three"]
    title = (
        f"Inference speed-up against the plain model at {scale}: plain / variant latency within each "
        "round-robin round, median (min-max)"
    )
    return _table(title, columns, rows)


def _ratio(summary: dict[str, float]) -> str:
    return f"{summary['median']:.2f}x ({summary['min']:.2f}-{summary['max']:.2f})"


def _train_table(models: list[dict[str, Any]]) -> str:
    rows = []
    for model in models:
        train = model["train"]
        step = train["step_s"]
        rows.append(
            [
                model["name"],
                _setting(train),
                str(train["batch_size"]),
                str(train["rois_per_image"]),
                f"{step['median']:.2f}",
                f"{step['min']:.2f}-{step['max']:.2f}",
                f"{train['peak_memory_mib']:.0f} ({train['memory_kind']})",
            ]
        )
    columns = ["model", "scale", "images", "RoIs/image", "step median (s)", "min-max (s)", "peak memory (MiB)"]
    return _table("One training step: forward + backward + SGD step", columns, rows)
