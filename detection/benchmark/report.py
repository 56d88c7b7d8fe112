"""Markdown tables of a :func:`detection.benchmark.runner.run_benchmark` result."""

from collections.abc import Sequence
from typing import Any

GIGA, MEGA = 1e9, 1e6


def markdown_report(result: dict[str, Any]) -> str:
    """The machine line and four tables: size and FLOPs, latency, inference speed-ups, training step."""
    machine = result["machine"]
    rates = ", ".join(f"{name} {rate / GIGA:.0f}" for name, rate in machine["matmul_flops_per_s"].items())
    native = f"; native bfloat16: {machine['native_bf16']}" if machine["native_bf16"] else "; no native bfloat16"
    header = (
        f"Device: {machine['device']} ({machine['device_name']}, {_threads(machine['threads'])}{native}), "
        f"torch {machine['torch']}, torchvision {machine['torchvision']}. "
        f"Measured matmul ({machine['matmul_size']}^2), GFLOP/s: {rates}."
    )
    sections = [
        header,
        _size_table(result["models"]),
        _latency_table(result["models"]),
        _variants_table(result["models"], result.get("reference_model")),
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


def _lower_precisions(models: list[dict[str, Any]]) -> list[str]:
    return [name for name in models[0]["inference"][0]["precisions"] if name != "fp32"]


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
            for precision, measured in inference["precisions"].items():
                latency, fraction = measured["latency_s"], measured["matmul_fraction"]
                rows.append(
                    [
                        model["name"],
                        f"{_setting(inference)}, {inference['setting']['num_rois']}",
                        precision,
                        f"{latency['median']:.3f}",
                        f"{latency['q1']:.3f}-{latency['q3']:.3f}",
                        f"{latency['min']:.3f}-{latency['max']:.3f}",
                        f"{measured['images_per_s']:.2f}",
                        f"{measured['trunk_s']:.3f}",
                        f"{measured['head_s']:.3f}",
                        f"{fraction['total']:.0%} / {fraction['trunk']:.0%} / {fraction['head']:.0%}",
                    ]
                )
    columns = [
        "model",
        "scale, RoIs",
        "precision",
        "latency median (s)",
        "IQR (s)",
        "min-max (s)",
        "images/s",
        "trunk (s)",
        "RoI heads (s)",
        "FLOP/s of that precision's matmul rate: all / trunk / heads",
    ]
    title = "Inference, batch 1, eval mode under torch.no_grad (the plain model; bf16/fp16 under torch.autocast)"
    return _table(title, columns, rows)


def _variants_table(models: list[dict[str, Any]], reference_model: str | None) -> str:
    lower = _lower_precisions(models)
    reference = next((model for model in models if model["name"] == reference_model), None)
    reference_s = reference["inference"][0]["variants"]["latency_s"]["plain"]["median"] if reference else None
    rows = []
    for model in models:
        variants = model["inference"][0]["variants"]
        speedup = {name: _ratio(value) for name, value in variants["speedup"].items()}
        row = [
            model["name"],
            f"{variants['latency_s']['plain']['median']:.3f}",
            speedup["inference_mode"],
            f"{speedup['folded_bn']} ({variants['folded_bn_layers']})",
            speedup["channels_last"],
            speedup["all"],
        ]
        for name in lower:
            fastest_s = variants["latency_s"][f"all_{name}"]["median"]
            row += [
                speedup[name],
                speedup[f"all_{name}"],
                f"{_ratio(variants['over_best_fp32'][name])} ({_VARIANT_NAMES[variants['best_fp32']]})",
                f"{fastest_s:.3f}" + (f" ({fastest_s / reference_s:.2f})" if reference_s else ""),
            ]
        rows.append(row)
    scale = f"{_setting(models[0]['inference'][0])}, {models[0]['inference'][0]['setting']['num_rois']} RoIs"
    columns = ["model", "plain (s)", "inference_mode", "folded BN (layers)", "channels_last", "all three"]
    for name in lower:
        against = f" (/ {reference_model} plain)" if reference_s else ""
        columns += [name, f"all three + {name}", f"all three + {name} over best fp32"]
        columns.append(f"all three + {name} (s){against}")
    title = (
        f"Inference speed-up against the plain model at {scale}: plain / variant latency within each "
        "round-robin round, median (min-max)"
    )
    return _table(title, columns, rows)


_VARIANT_NAMES = {
    "plain": "plain",
    "inference_mode": "inference_mode",
    "folded_bn": "folded BN",
    "channels_last": "channels_last",
    "all": "all three",
}


def _ratio(summary: dict[str, float]) -> str:
    return f"{summary['median']:.2f}x ({summary['min']:.2f}-{summary['max']:.2f})"


def _train_table(models: list[dict[str, Any]]) -> str:
    rows = []
    for model in models:
        fp32_s = model["train"]["fp32"]["step_s"]["median"]
        for precision, train in model["train"].items():
            step = train["step_s"]
            rows.append(
                [
                    model["name"],
                    _setting(train),
                    precision,
                    str(train["batch_size"]),
                    str(train["rois_per_image"]),
                    f"{step['median']:.2f}",
                    f"{step['min']:.2f}-{step['max']:.2f}",
                    f"{fp32_s / step['median']:.2f}x",
                    f"{train['peak_memory_mib']:.0f} ({train['memory_kind']})",
                ]
            )
    columns = [
        "model",
        "scale",
        "precision",
        "images",
        "RoIs/image",
        "step median (s)",
        "min-max (s)",
        "fp32 / this (medians)",
        "peak memory (MiB)",
    ]
    title = "One training step: forward + backward + SGD step (bf16/fp16: autocast; fp16 with a gradient scaler)"
    return _table(title, columns, rows)


def _threads(count: int) -> str:
    return f"{count} thread" if count == 1 else f"{count} threads"
