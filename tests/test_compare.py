"""tools/compare.py on evaluations of the shapes dataset: tables, differences, winners, the chart, refusals."""

import math
import re
import subprocess
import sys

import pytest
from inference_helpers import TOOLS, load_tool
from matplotlib.image import imread
from test_plots import noisy_predictions

from detection.config import load_config
from detection.data import build_dataset
from detection.evaluation import evaluate_predictions
from detection.evaluation.records import load_evaluation, save_evaluation

compare = load_tool("compare")


def evaluate(shapes_root, folder, backbone, seed, split="val", iteration=100):
    """An evaluation folder as tools/eval_det.py leaves it, of noisy predictions on the tiny shapes split."""
    dataset = build_dataset("shapes", split, root=shapes_root, train=False)
    metrics = evaluate_predictions(dataset, noisy_predictions(dataset, seed), "coco", folder)
    config = load_config(None, [f"model.backbone={backbone}", f"data.test_split={split}"])
    save_evaluation(folder, metrics, config, split, images=len(dataset), checkpoint="model.pth", iteration=iteration)
    return metrics


def test_two_evaluations_side_by_side(shapes_root, tmp_path, capsys):
    first = evaluate(shapes_root, tmp_path / "r18", "resnet18", seed=1)
    second = evaluate(shapes_root, tmp_path / "r34", "resnet34", seed=2)
    out = tmp_path / "report"
    capsys.readouterr()
    assert compare.main([str(tmp_path / "r18"), str(tmp_path / "r34" / "metrics.json"), "--output-dir", str(out)]) == 0
    markdown = (out / compare.MARKDOWN_FILE).read_text()
    assert markdown == capsys.readouterr().out.split(f"wrote {out}")[0].rstrip("\n") + "\n"
    assert markdown.startswith("# shapes val: resnet18, resnet34 (COCO metrics, 4 images)")
    assert "| metric | resnet18 | resnet34 | resnet34 − resnet18 |" in re.sub(" +", " ", markdown)
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| "):
            name, *cells = (cell.strip() for cell in line.split("|")[1:-1])
            rows[name] = cells
    ap = f"{first['bbox/AP']:.3f}", f"{second['bbox/AP']:.3f}"
    assert rows["AP"] == [*ap, f"{second['bbox/AP'] - first['bbox/AP']:+.3f}"]
    for name in ("rectangle", "ellipse", "triangle"):
        a, b = first[f"bbox/AP_{name}"], second[f"bbox/AP_{name}"]
        if math.isnan(a) or math.isnan(b):
            continue
        winner = "tie" if round(a, 3) == round(b, 3) else ("resnet18" if a > b else "resnet34")
        assert rows[name] == [f"{a:.3f}", f"{b:.3f}", f"{b - a:+.3f}", winner]
    assert "Classes won: resnet18 " in markdown
    assert imread(out / compare.CHART_FILE).shape[2] in (3, 4)


def test_a_run_folder_and_labels(shapes_root, tmp_path):
    evaluate(shapes_root, tmp_path / "run" / "inference", "resnet18", seed=1, iteration=200)
    evaluate(shapes_root, tmp_path / "run2" / "inference", "resnet18", seed=2, iteration=400)
    records = [load_evaluation(tmp_path / "run"), load_evaluation(tmp_path / "run2")]
    assert [record.iteration for record in records] == [200, 400]
    from detection.evaluation.comparison import comparison_labels

    assert comparison_labels(records) == ["resnet18 @200", "resnet18 @400"]
    out = tmp_path / "report"
    argv = [str(tmp_path / "run"), str(tmp_path / "run2"), "--labels", "early", "late", "--output-dir", str(out)]
    assert compare.main(argv) == 0
    assert "| metric | early | late | late − early |" in re.sub(" +", " ", (out / compare.MARKDOWN_FILE).read_text())


@pytest.mark.parametrize("case", ["other split", "not an evaluation", "one evaluation"])
def test_refusals_are_one_line(shapes_root, tmp_path, case):
    evaluate(shapes_root, tmp_path / "val", "resnet18", seed=1)
    if case == "other split":
        evaluate(shapes_root, tmp_path / "train", "resnet18", seed=1, split="train")
        arguments, message = [tmp_path / "val", tmp_path / "train"], "cannot compare evaluations of different splits"
    elif case == "not an evaluation":
        arguments, message = [tmp_path / "val", tmp_path], "no evaluation there"
    else:
        arguments, message = [tmp_path / "val"], "give two or more evaluations"
    result = subprocess.run(
        [sys.executable, str(TOOLS / "compare.py"), *map(str, arguments), "--output-dir", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
