"""An evaluation on disk, as ``tools/eval_det.py`` and training's evaluations leave it in their folder:

- ``metrics.json``: the metrics, ``{"bbox/AP": 0.58, ...}`` in ``[0, 1]`` (``null`` where undefined);
- ``evaluation.json``: what was evaluated: ``dataset``, ``split``, ``metric`` (``coco``/``voc``), ``model``
  (the backbone), ``images``, ``checkpoint``, ``iteration``, ``precision`` (of the inference: ``fp32``,
  ``bf16``, ``fp16``);
- the results files and the figures next to them.

A training run keeps its last evaluation in ``<output_dir>/inference/``.
"""

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..files import write_json

METRICS_FILE = "metrics.json"
EVALUATION_FILE = "evaluation.json"
RUN_EVALUATION_FOLDER = "inference"


@dataclass(frozen=True)
class EvaluationRecord:
    """One evaluation: what was evaluated, and its metrics (``metrics.json``)."""

    dataset: str
    split: str
    metric: str
    model: str
    images: int
    checkpoint: str | None = None
    iteration: int | None = None
    precision: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    folder: str = ""

    def per_class_ap(self) -> dict[str, float]:
        """``{class: AP}``: COCO's AP over IoU 0.50:0.95 (``bbox/AP_<class>``) or VOC's (``voc/AP_<class>``)."""
        prefix = "bbox/AP_" if self.metric == "coco" else "voc/AP_"
        return {key[len(prefix) :]: value for key, value in self.metrics.items() if key.startswith(prefix)}


def save_evaluation(
    output_dir: str | os.PathLike,
    metrics: dict[str, float],
    config: Any,
    split: str,
    *,
    images: int,
    checkpoint: str | os.PathLike | None = None,
    iteration: int | None = None,
    precision: str | None = None,
) -> Path:
    """Writes ``metrics.json`` and ``evaluation.json`` for an evaluation of ``config``'s model and dataset
    (a :class:`~detection.config.Config`) on ``split``; returns the folder."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(output_dir / METRICS_FILE, metrics)
    record = EvaluationRecord(
        dataset=config.data.dataset,
        split=split,
        metric=config.metric,
        model=config.model.backbone,
        images=images,
        checkpoint=None if checkpoint is None else os.fspath(checkpoint),
        iteration=iteration,
        precision=precision,
    )
    description = {key: value for key, value in asdict(record).items() if key not in ("metrics", "folder")}
    write_json(output_dir / EVALUATION_FILE, description)
    return output_dir


def load_evaluation(path: str | os.PathLike) -> EvaluationRecord:
    """The evaluation at ``path``: an evaluation folder, its ``metrics.json`` or ``evaluation.json``, or
    a training run's output folder (its last evaluation).

    Raises:
        UserError: nothing there is an evaluation, or its files are unreadable.
    """
    path = Path(path)
    folder = path.parent if path.is_file() else path
    for candidate in (folder, folder / RUN_EVALUATION_FOLDER):
        if (candidate / EVALUATION_FILE).is_file():
            folder = candidate
            break
    else:
        raise UserError(
            f"{path}: no evaluation there (expected {EVALUATION_FILE} and {METRICS_FILE}, written by "
            f"tools/eval_det.py, or a training run's folder with {RUN_EVALUATION_FOLDER}/{EVALUATION_FILE})"
        )
    description = _read_json(folder / EVALUATION_FILE)
    metrics = _read_json(folder / METRICS_FILE)
    try:
        return EvaluationRecord(
            **description,
            metrics={key: math.nan if value is None else float(value) for key, value in metrics.items()},
            folder=os.fspath(folder),
        )
    except (TypeError, ValueError) as error:
        raise UserError(f"{folder}: not an evaluation of this toolkit ({error})") from None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path}: not found (an evaluation folder has {EVALUATION_FILE} and {METRICS_FILE})")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(content, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(content).__name__}")
    return content
