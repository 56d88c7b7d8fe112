"""Evaluation figures: written as PNGs, one curve per class and IoU, the evaluator's AP; the COCO error breakdown."""

import json
import math

import numpy as np
import pytest
from matplotlib.image import imread

from detection.data import build_dataset
from detection.evaluation import evaluate_predictions, plots
from detection.evaluation.coco_analysis import ERROR_TYPES, analyze_coco_errors

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def noisy_predictions(dataset, seed: int = 0) -> dict:
    """Each object found with a jittered box (some poorly placed, some as another class), plus background
    false positives and some misses, with random scores."""
    rng = np.random.default_rng(seed)
    predictions = {}
    num_classes = len(dataset.class_names)
    for index in range(len(dataset)):
        annotation = dataset.get_annotation(index)
        boxes, labels = [], []
        for box, label in zip(annotation["boxes"], annotation["labels"]):
            if rng.random() < 0.15:
                continue  # missed
            size = np.array([box[2] - box[0], box[3] - box[1]] * 2)
            jitter = rng.normal(0.0, 0.04 if rng.random() < 0.7 else 0.25, 4) * size
            boxes.append(box + jitter)
            labels.append(label if rng.random() < 0.8 else rng.integers(1, num_classes + 1))
        for _ in range(2):  # background
            x, y = rng.uniform(0, [annotation["width"] - 20, annotation["height"] - 20])
            boxes.append(np.array([x, y, x + 20, y + 20]))
            labels.append(rng.integers(1, num_classes + 1))
        boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        predictions[index] = {"boxes": boxes, "scores": rng.uniform(0.05, 1.0, len(boxes)), "labels": np.array(labels)}
    return predictions


@pytest.fixture
def captured_figures(monkeypatch):
    """What the evaluators hand to ``write_evaluation_figures`` (which still writes the files)."""
    captured = {}
    original = plots.write_evaluation_figures

    def capture(output_dir, curves, per_class_ap, title, breakdown=None):
        captured.update(curves=curves, per_class_ap=per_class_ap, breakdown=breakdown)
        return original(output_dir, curves, per_class_ap, title, breakdown)

    monkeypatch.setattr(plots, "write_evaluation_figures", capture)
    return captured


def assert_png(path, max_bytes=150_000):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) < max_bytes, (path, len(data))
    height, width, channels = imread(path).shape
    assert height > 100 and width > 100 and channels in (3, 4)


def lines_and_labels(figure):
    lines = [line for ax in figure.axes for line in ax.get_lines()]
    return lines, [line.get_label() for line in lines]


def test_coco_figures_draw_the_evaluators_curves(shapes_root, tmp_path, captured_figures):
    dataset = build_dataset("shapes", "train", root=shapes_root, train=False)
    metrics = evaluate_predictions(dataset, noisy_predictions(dataset), "coco", tmp_path, figures=True)
    for name in (plots.PR_CURVES_FILE, plots.AP_BARS_FILE, plots.ERROR_ANALYSIS_FILE):
        assert_png(tmp_path / name)

    curves = captured_figures["curves"]
    assert [(c.class_name, c.iou) for c in curves] == [(n, iou) for n in dataset.class_names for iou in (0.5, 0.75)]
    measured = [curve for curve in curves if not math.isnan(curve.ap)]
    assert len(measured) >= 4
    for curve in measured:
        assert curve.ap == pytest.approx(float(np.mean(curve.precision)), abs=1e-12)
        assert curve.recall.shape == curve.precision.shape == (101,)
        if curve.iou == 0.5:
            assert curve.ap == pytest.approx(metrics[f"bbox/AP50_{curve.class_name}"], abs=1e-12)
    lines, labels = lines_and_labels(plots.pr_curves_figure(curves, "test"))
    assert len(lines) == len(measured)
    assert labels == [f"IoU {c.iou:.2f}: AP {100 * c.ap:.1f}" for c in measured]
    assert captured_figures["per_class_ap"]["AP"] == {n: metrics[f"bbox/AP_{n}"] for n in dataset.class_names}

    breakdown = captured_figures["breakdown"]
    overall = breakdown.overall()
    assert overall.shape == (len(ERROR_TYPES), 101)
    assert overall[1].mean() == pytest.approx(metrics["bbox/AP50"], abs=1e-9)
    assert overall[0].mean() == pytest.approx(metrics["bbox/AP75"], abs=1e-9)
    assert np.all(np.diff(overall, axis=0) >= -1e-12)  # each curve forgives more than the one before
    assert np.all(overall[-1] == 1.0)


def test_voc_figures_draw_the_devkit_curves(shapes_root, tmp_path, captured_figures):
    dataset = build_dataset(
        "voc", "shapes_train", root=shapes_root / "VOCdevkit", train=False, classes=("rectangle", "ellipse", "triangle")
    )
    (tmp_path / plots.ERROR_ANALYSIS_FILE).write_bytes(b"stale")
    metrics = evaluate_predictions(dataset, noisy_predictions(dataset), "voc", tmp_path, figures=True)
    assert_png(tmp_path / plots.PR_CURVES_FILE)
    assert_png(tmp_path / plots.AP_BARS_FILE)
    assert not (tmp_path / plots.ERROR_ANALYSIS_FILE).exists()
    curves = captured_figures["curves"]
    assert [curve.class_name for curve in curves] == list(dataset.class_names)
    for curve in curves:
        assert curve.iou == 0.5 and curve.ap == metrics[f"voc/AP_{curve.class_name}"]
        assert curve.recall.shape == curve.precision.shape and np.all(np.diff(curve.recall) >= 0)
    lines, labels = lines_and_labels(plots.pr_curves_figure(curves, "test"))
    assert len(lines) == sum(not math.isnan(curve.ap) for curve in curves)
    assert all(label.startswith("IoU 0.50: AP ") for label in labels)


def test_no_figures_unless_asked(shapes_root, tmp_path):
    dataset = build_dataset("shapes", "val", root=shapes_root, train=False)
    evaluate_predictions(dataset, noisy_predictions(dataset), "coco", tmp_path)
    assert not list(tmp_path.glob("*.png"))


def test_figures_read_back_for_tensorboard(tmp_path):
    figure = plots.ap_bars_figure({"AP": {"a": 0.5, "b": math.nan}, "AP50": {"a": 0.7, "b": 0.2}}, "bars")
    plots.save_figure(figure, tmp_path / plots.AP_BARS_FILE)
    images = plots.read_figures(tmp_path)
    assert list(images) == ["ap_per_class"]
    assert images["ap_per_class"].dtype == np.uint8 and images["ap_per_class"].shape[2] == 3


def test_error_breakdown_forgives_each_kind_of_error():
    """cat on a dog (same supercategory), car on a dog (another supercategory), dog on background."""
    categories = [
        {"id": 1, "name": "cat", "supercategory": "animal"},
        {"id": 2, "name": "dog", "supercategory": "animal"},
        {"id": 3, "name": "car", "supercategory": "vehicle"},
    ]
    dog, cat, car = [10.0, 10.0, 50.0, 40.0], [60.0, 10.0, 40.0, 40.0], [10.0, 60.0, 60.0, 30.0]
    objects = [(1, 2, dog), (2, 1, cat), (3, 3, car)]  # (image, category, xywh)
    dataset = {
        "images": [{"id": i, "width": 200, "height": 100, "file_name": f"{i}.jpg"} for i in (1, 2, 3)],
        "categories": categories,
        "annotations": [
            {"id": k + 1, "image_id": i, "category_id": c, "bbox": box, "area": box[2] * box[3], "iscrowd": 0}
            for k, (i, c, box) in enumerate(objects)
        ],
    }
    results = [
        {"image_id": 1, "category_id": 1, "bbox": dog, "score": 0.9},  # cat on the dog
        {"image_id": 2, "category_id": 1, "bbox": cat, "score": 0.8},
        {"image_id": 1, "category_id": 3, "bbox": dog, "score": 0.9},  # car on the dog
        {"image_id": 3, "category_id": 3, "bbox": car, "score": 0.8},
        {"image_id": 3, "category_id": 2, "bbox": [150.0, 10.0, 30.0, 30.0], "score": 0.95},  # dog on nothing
        {"image_id": 1, "category_id": 2, "bbox": dog, "score": 0.7},
    ]
    before = json.dumps(dataset)
    breakdown = analyze_coco_errors(dataset, results, [1, 2, 3], [1, 2, 3])
    ap = {
        name: dict(zip(ERROR_TYPES, breakdown.precision[:, :, k].mean(axis=1)))
        for k, name in enumerate(breakdown.class_names)
    }
    assert ap["cat"]["Loc"] == pytest.approx(0.5) and ap["cat"]["Sim"] == pytest.approx(1.0)
    assert ap["car"]["Sim"] == pytest.approx(0.5) and ap["car"]["Oth"] == pytest.approx(1.0)
    assert ap["dog"]["Oth"] == pytest.approx(0.5) and ap["dog"]["BG"] == pytest.approx(1.0)
    assert all(ap[name]["FN"] == 1.0 for name in ap)
    assert json.dumps(dataset) == before  # the ground truth is read, not changed
