"""tools/eval_det.py end to end on the generated dataset, and its one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from detection.checkpoint import load_checkpoint, save_checkpoint
from detection.config import config_to_dict, load_config
from detection.data import build_dataset
from detection.errors import CheckpointError
from detection.modeling.factory import detector_from_config

TOOL = Path(__file__).resolve().parents[1] / "tools" / "eval_det.py"


def _write_checkpoint(path: Path, shapes_root: Path, class_names: list[str]) -> None:
    config = load_config(
        None,
        [
            "model.backbone=resnet18",
            "model.min_size=128",
            "model.max_size=160",
            f"data.root={shapes_root}",
            "data.num_workers=0",
        ],
    )
    torch.manual_seed(0)
    model = detector_from_config(config.model, len(class_names) + 1)
    save_checkpoint(
        path,
        {"model": model.state_dict(), "config": config_to_dict(config), "class_names": class_names, "iteration": 0},
    )


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=300)


def _refuse_non_standard(constant: str):
    raise ValueError(f"not standard JSON: {constant}")


@pytest.mark.slow
def test_eval_tool_writes_results_and_metrics(shapes_root, tmp_path):
    class_names = list(build_dataset("shapes", "val", root=shapes_root, train=False).class_names)
    checkpoint = tmp_path / "model.pth"
    _write_checkpoint(checkpoint, shapes_root, class_names)
    out = tmp_path / "eval"
    result = _run("--checkpoint", str(checkpoint), "--dataset", "shapes", "--output-dir", str(out))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text(), parse_constant=_refuse_non_standard)
    assert {"bbox/AP", "bbox/AP50", "bbox/AR100"} <= set(metrics)
    assert metrics["bbox/APl"] is None  # no large objects in the tiny shapes: nothing to measure, null (not NaN)
    assert all(0.0 <= value <= 1.0 for value in metrics.values() if value is not None)
    results = json.loads((out / "coco_instances_results.json").read_text())
    assert isinstance(results, list) and all({"image_id", "category_id", "bbox", "score"} <= set(r) for r in results)
    assert "Average Precision  (AP) @[ IoU=0.50:0.95" in result.stdout


def test_missing_checkpoint_is_one_line(tmp_path):
    result = _run("--checkpoint", str(tmp_path / "nope.pth"), "--dataset", "shapes")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: checkpoint not found: {tmp_path / 'nope.pth'}"


def test_checkpoint_for_other_classes_is_refused(shapes_root, tmp_path):
    checkpoint = tmp_path / "model.pth"
    _write_checkpoint(checkpoint, shapes_root, ["cat", "dog"])
    result = _run("--checkpoint", str(checkpoint), "--dataset", "shapes")
    assert result.returncode == 2
    assert "trained for 2 classes (cat, dog), but the dataset has 3" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_corrupt_checkpoint_is_refused(tmp_path):
    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(b"\x00garbage")
    result = _run("--checkpoint", str(checkpoint))
    assert result.returncode == 2 and "not a readable checkpoint" in result.stderr


def test_empty_checkpoint_is_one_line(tmp_path):
    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(b"")  # an interrupted copy
    result = _run("--checkpoint", str(checkpoint))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {checkpoint}: not a readable checkpoint (the file is empty, 0 bytes)"


def test_unreadable_checkpoint_with_an_empty_error_message_is_one_line(tmp_path, monkeypatch):
    def eof(*args, **kwargs):
        raise EOFError  # what torch.load raises for a file cut short, with no message

    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(b"\x80\x02")
    monkeypatch.setattr(torch, "load", eof)
    with pytest.raises(CheckpointError, match=r"model.pth: not a readable checkpoint \(EOFError\)$"):
        load_checkpoint(checkpoint)
