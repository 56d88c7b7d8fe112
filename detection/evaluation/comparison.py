"""Evaluations of one dataset split side by side (``tools/compare.py``): summary metrics, per-class AP with
the differences and the winner of each class, as Markdown tables and as grouped bars."""

import math
from collections.abc import Sequence

from ..errors import UserError
from .records import EvaluationRecord
from .tables import format_metric, format_table

SUMMARY_METRICS = {
    "coco": ("bbox/AP", "bbox/AP50", "bbox/AP75", "bbox/APs", "bbox/APm", "bbox/APl", "bbox/AR100"),
    "voc": ("voc/mAP", "voc/AP", "voc/AP50", "voc/AP75"),
}
PER_CLASS_AP = {"coco": "AP@[.50:.95]", "voc": "AP@0.5"}


def check_comparable(records: Sequence[EvaluationRecord]) -> None:
    """A :class:`UserError` unless there are two or more evaluations, all of the same dataset, split and metric."""
    if len(records) < 2:
        raise UserError(f"give two or more evaluations to compare, got {len(records)}")
    first = records[0]
    for other in records[1:]:
        for key in ("dataset", "split", "metric"):
            if getattr(other, key) != getattr(first, key):
                raise UserError(
                    f"cannot compare evaluations of different {key}s: {first.folder} is {_what(first)}, "
                    f"{other.folder} is {_what(other)}"
                )


def comparison_labels(records: Sequence[EvaluationRecord]) -> list[str]:
    """A short name per evaluation: its model; where models repeat, with its iteration (or its folder)."""
    labels = []
    for record in records:
        same_model = [other for other in records if other.model == record.model]
        iterations = {other.iteration for other in same_model}
        if len(same_model) == 1:
            labels.append(record.model)
        elif None not in iterations and len(iterations) == len(same_model):
            labels.append(f"{record.model} @{record.iteration}")
        else:
            labels.append(f"{record.model} ({record.folder})")
    return [label if labels.count(label) == 1 else f"{label} #{i + 1}" for i, label in enumerate(labels)]


def comparison_markdown(records: Sequence[EvaluationRecord], labels: Sequence[str]) -> str:
    """The report: a title line, the summary metrics and the per-class AP, each with the difference of
    every evaluation to the first, and the winner of each class (percent)."""
    first = records[0]
    deltas = [f"{label} − {labels[0]}" for label in labels[1:]]
    summary_rows = []
    for key in SUMMARY_METRICS[first.metric]:
        values = [record.metrics.get(key, math.nan) for record in records]
        if not all(math.isnan(value) for value in values):
            summary_rows.append([key.split("/", 1)[1], *_cells(values)])
    per_class = [record.per_class_ap() for record in records]
    class_rows, wins = [], dict.fromkeys(labels, 0)
    for name in per_class[0]:
        values = [aps.get(name, math.nan) for aps in per_class]
        winner = _winner(values, labels)
        wins[winner] = wins.get(winner, 0) + 1
        class_rows.append([name, *_cells(values), winner])
    lines = [
        f"# {first.dataset} {first.split}: {', '.join(labels)} ({first.metric.upper()} metrics, {first.images} images)",
        "",
        "## Summary",
        "",
        format_table(["metric", *labels, *deltas], summary_rows),
        "",
        f"## Per-class {PER_CLASS_AP[first.metric]}",
        "",
        format_table(["class", *labels, *deltas, "winner"], class_rows),
        "",
        "Classes won: " + ", ".join(f"{label} {count}" for label, count in wins.items() if label != "tie"),
    ]
    if wins.get("tie"):
        lines[-1] += f", ties {wins['tie']}"
    return "\n".join(lines) + "\n"


def _cells(values: Sequence[float]) -> list[str]:
    """The values, then each one's difference to the first (signed, in the same units)."""
    differences = [value - values[0] for value in values[1:]]
    return [format_metric(value) for value in values] + ["nan" if math.isnan(d) else f"{d:+.3f}" for d in differences]


def _winner(values: Sequence[float], labels: Sequence[str]) -> str:
    measured = [(round(value, 3), label) for value, label in zip(values, labels) if not math.isnan(value)]
    if not measured:
        return ""
    best = max(score for score, _ in measured)
    leaders = [label for score, label in measured if score == best]
    return leaders[0] if len(leaders) == 1 else "tie"


def _what(record: EvaluationRecord) -> str:
    return f"{record.dataset} {record.split} ({record.metric})"
