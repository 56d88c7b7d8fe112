"""Pictures of evaluations: per-class precision/recall curves, per-class AP bars, the COCO error breakdown,
and the grouped bars of a comparison. PNG files, drawn with matplotlib's object API (the Agg renderer,
never a display).

An evaluation writes, next to its results:

- ``pr_curves.png``: one panel per class, its curve at each IoU threshold (COCO: 0.50 and 0.75; VOC: 0.5)
  with the evaluator's AP in the legend;
- ``ap_per_class.png``: the per-class AP as bars (COCO: AP and AP50), best first, the mean on top;
- ``coco_error_analysis.png`` (COCO only): the stacked curves of ``coco_analysis`` over all classes,
  then per class.
"""

import itertools
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .coco_analysis import ERROR_TYPES, ErrorBreakdown
from .curves import PrecisionRecall

PR_CURVES_FILE = "pr_curves.png"
AP_BARS_FILE = "ap_per_class.png"
ERROR_ANALYSIS_FILE = "coco_error_analysis.png"
FIGURE_FILES = (PR_CURVES_FILE, AP_BARS_FILE, ERROR_ANALYSIS_FILE)
DPI = 100
_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")
# C75, C50, Loc, Sim, Oth, BG, FN: from the strictest curve (dark) to the most forgiving (light).
_ERROR_COLOURS = ("#2b5d8a", "#4c9ad0", "#c44e52", "#55a868", "#8172b3", "#f0a150", "#e6e6e6")


def write_evaluation_figures(
    output_dir: str | os.PathLike,
    curves: Sequence[PrecisionRecall],
    per_class_ap: Mapping[str, Mapping[str, float]],
    title: str,
    breakdown: ErrorBreakdown | None = None,
) -> list[Path]:
    """Writes :data:`PR_CURVES_FILE`, :data:`AP_BARS_FILE` and, with a ``breakdown``,
    :data:`ERROR_ANALYSIS_FILE` into ``output_dir`` (an older error analysis there is removed without one).

    Args:
        curves: the evaluator's curves, class by class.
        per_class_ap: ``{series: {class: AP in [0, 1]}}``, e.g. ``{"AP": ..., "AP50": ...}``.
        title: what was evaluated, for the figure titles.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        save_figure(pr_curves_figure(curves, title), output_dir / PR_CURVES_FILE),
        save_figure(ap_bars_figure(per_class_ap, f"Per-class AP, {title}"), output_dir / AP_BARS_FILE),
    ]
    if breakdown is not None:
        paths.append(save_figure(error_breakdown_figure(breakdown, title), output_dir / ERROR_ANALYSIS_FILE))
    else:
        (output_dir / ERROR_ANALYSIS_FILE).unlink(missing_ok=True)
    return paths


def pr_curves_figure(curves: Sequence[PrecisionRecall], title: str) -> Figure:
    """One panel per class with its curves (one line each) and ``IoU t: AP x`` (percent) in the legend; a
    class without ground truth gets a note instead."""
    by_class: dict[str, list[PrecisionRecall]] = {}
    for curve in curves:
        by_class.setdefault(curve.class_name, []).append(curve)
    figure, axes = _panels(len(by_class), size=3.0)
    for ax, (name, class_curves) in zip(axes, by_class.items()):
        measured = [curve for curve in class_curves if not math.isnan(curve.ap)]
        for curve, colour in zip(measured, _COLOURS):
            ax.plot(curve.recall, curve.precision, color=colour, label=f"IoU {curve.iou:.2f}: AP {100 * curve.ap:.1f}")
        if measured:
            ax.legend(loc="lower left", fontsize="small")
        else:
            ax.text(0.5, 0.5, "no ground truth", ha="center", va="center", transform=ax.transAxes)
        ax.set(xlim=(0.0, 1.0), ylim=(0.0, 1.02), title=name, xlabel="recall", ylabel="precision")
        ax.grid(alpha=0.3)
    figure.suptitle(f"Precision/recall, {title}")
    return figure


def ap_bars_figure(series: Mapping[str, Mapping[str, float]], title: str) -> Figure:
    """Horizontal grouped bars, in percent: one group per class, one bar per series (``{series: {class:
    AP in [0, 1]}}``), classes by decreasing AP of the first series, their mean on top. NaN: no bar."""
    names = list(next(iter(series.values())))
    first = next(iter(series.values()))
    order = sorted(names, key=lambda name: -1.0 if math.isnan(first[name]) else first[name], reverse=True)
    rows = ["mean", *order]
    values = {
        label: [_nanmean(list(per_class.values())), *(per_class.get(name, math.nan) for name in order)]
        for label, per_class in series.items()
    }
    height = 0.8 / len(series)
    figure = Figure(figsize=(7.0, 0.8 + 0.22 * len(rows) * max(1.0, 0.6 * len(series))), layout="constrained")
    ax = figure.subplots()
    positions = np.arange(len(rows))
    annotate = len(rows) * len(series) <= 60
    for j, ((label, row_values), colour) in enumerate(zip(values.items(), itertools.cycle(_COLOURS))):
        percent = np.array([100.0 * value for value in row_values])
        y = positions - 0.4 + height * (j + 0.5)
        bars = ax.barh(y, np.nan_to_num(percent), height=height, color=colour, label=label)
        if annotate:
            labels = ["" if math.isnan(p) else f"{p:.1f}" for p in percent]
            ax.bar_label(bars, labels=labels, padding=2, fontsize="x-small")
    ax.set_yticks(positions, rows)
    ax.invert_yaxis()
    ax.set(xlim=(0.0, 105.0), xlabel="AP (%)", title=title)
    ax.grid(axis="x", alpha=0.3)
    if len(series) > 1:
        ax.legend(loc="lower right", fontsize="small")
    return figure


def error_breakdown_figure(breakdown: ErrorBreakdown, title: str) -> Figure:
    """The stacked curves of :data:`~detection.evaluation.coco_analysis.ERROR_TYPES` over all classes, then
    per class; ``[AP] type`` in the legend, the area between two curves being what that error costs."""
    panels = [("all classes", breakdown.overall())]
    panels += [(name, breakdown.precision[:, :, k]) for k, name in enumerate(breakdown.class_names)]
    figure, axes = _panels(len(panels), size=3.2)
    for ax, (name, curves) in zip(axes, panels):
        if np.isnan(curves).all():
            ax.text(0.5, 0.5, "no ground truth", ha="center", va="center", transform=ax.transAxes)
        else:
            lower = np.zeros_like(breakdown.recall)
            for error_type, curve, colour in zip(ERROR_TYPES, curves, _ERROR_COLOURS):
                upper = np.maximum(curve, lower)  # the curves nest; max only guards the drawing
                label = f"[{curve.mean():.3f}] {error_type}"
                ax.fill_between(breakdown.recall, lower, upper, color=colour, label=label, linewidth=0)
                lower = upper
            ax.legend(loc="lower left", fontsize="x-small")
        ax.set(xlim=(0.0, 1.0), ylim=(0.0, 1.0), title=name, xlabel="recall", ylabel="precision")
    figure.suptitle(f"COCO error analysis, {title}")
    return figure


def save_figure(figure: Figure, path: str | os.PathLike) -> Path:
    """Writes ``figure`` as a PNG at :data:`DPI`."""
    path = Path(path)
    figure.savefig(path, dpi=DPI, format="png")
    return path


def read_figures(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """The evaluation figures in ``folder`` as ``uint8 [H, W, 3]`` RGB, by file stem (for TensorBoard)."""
    from matplotlib.image import imread

    images = {}
    for name in FIGURE_FILES:
        path = Path(folder) / name
        if path.is_file():
            pixels = imread(path)[..., :3]
            images[path.stem] = np.ascontiguousarray((pixels * 255.0).round().astype(np.uint8))
    return images


def _panels(count: int, size: float) -> tuple[Figure, list]:
    """A figure with ``count`` square-ish panels in a grid (unused grid cells hidden)."""
    columns = min(count, max(3, math.ceil(math.sqrt(count))))
    rows = math.ceil(count / columns)
    size = size if count <= 16 else size * 0.75
    figure = Figure(figsize=(columns * size, rows * size * 0.92 + 0.4), layout="constrained")
    axes = list(figure.subplots(rows, columns, squeeze=False).flat)
    for ax in axes[count:]:
        ax.set_axis_off()
    return figure, axes[:count]


def _nanmean(values: Sequence[float]) -> float:
    finite = [value for value in values if not math.isnan(value)]
    return sum(finite) / len(finite) if finite else math.nan
