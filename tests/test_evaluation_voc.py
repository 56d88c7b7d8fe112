"""PASCAL VOC evaluation: the devkit's AP, its matching rules, result files, and input checks."""

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from detection.evaluation import (
    average_precision,
    devkit_iou,
    evaluate_predictions,
    to_devkit_boxes,
    voc_average_precisions,
)


class FakeVOC:
    """Just the dataset contract evaluation reads; every image is 100 x 100."""

    class_names = ("cat", "dog", "bird")

    def __init__(self, images: list[dict]) -> None:
        self.images = images
        self.get_annotation_calls = 0

    def __len__(self) -> int:
        return len(self.images)

    def get_annotation(self, index: int) -> dict:
        self.get_annotation_calls += 1
        image = self.images[index]
        num = len(image["labels"])
        return {
            "boxes": np.asarray(image["boxes"], dtype=np.float32).reshape(-1, 4),
            "labels": np.asarray(image["labels"], dtype=np.int64),
            "difficult": np.asarray(image.get("difficult", [False] * num), dtype=bool),
            "iscrowd": np.zeros(num, dtype=bool),
            "height": 100,
            "width": 100,
            "file_name": f"{index:06d}.jpg",
            "image_id": index,
        }

    def image_name(self, index: int) -> str:
        return f"{index:06d}"


def detections(boxes, scores, labels) -> dict:
    return {
        "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        "scores": np.asarray(scores, dtype=np.float32),
        "labels": np.asarray(labels, dtype=np.int64),
    }


NO_DETECTIONS = detections([], [], [])

# "cat" (label 1): 4 positives (g1, g2, g4, g5) and one difficult object; "dog" (2): one object.
HAND_DATASET = [
    {
        "boxes": [[0, 0, 10, 10], [50, 50, 60, 60], [20, 0, 30, 10]],  # g1, g2 (never found), difficult
        "labels": [1, 1, 1],
        "difficult": [False, False, True],
    },
    {"boxes": [[0, 0, 10, 10], [30, 30, 40, 40], [50, 50, 90, 90]], "labels": [1, 1, 2]},  # g4, g5, dog
]
HAND_PREDICTIONS = {
    0: detections(
        [[0, 0, 10, 10], [0, 0, 10, 9], [20, 0, 30, 10]],  # TP on g1; duplicate of g1 (FP); on the difficult one
        [0.9, 0.8, 0.7],
        [1, 1, 1],
    ),
    1: detections(
        [[0, 0, 10, 10], [70, 70, 80, 80], [30, 30, 40, 40], [50, 50, 90, 90]],  # TP g4; FP; TP g5; dog TP
        [0.6, 0.5, 0.4, 0.3],
        [1, 1, 1, 2],
    ),
}
# cat, in score order (the difficult hit is dropped): TP, FP, TP, FP, TP over 4 positives, i.e.
# (recall, precision) = (1/4, 1), (1/4, 1/2), (2/4, 2/3), (2/4, 2/4), (3/4, 3/5).
# 11-point: t = 0, .1, .2 -> 1; t = .3, .4, .5 -> 2/3; t = .6, .7 -> 3/5; t = .8, .9, 1 -> 0.
CAT_AP_11POINT = (3 * 1 + 3 * 2 / 3 + 2 * 3 / 5) / 11
# Area: recall 0 -> 1/4 at precision 1, 1/4 -> 2/4 at 2/3, 2/4 -> 3/4 at 3/5.
CAT_AP_AREA = 1 / 4 * 1 + 1 / 4 * 2 / 3 + 1 / 4 * 3 / 5


@pytest.mark.parametrize("method, cat_ap", [("11point", CAT_AP_11POINT), ("area", CAT_AP_AREA)])
def test_hand_computed_ap_with_difficult_and_duplicates(method, cat_ap):
    metrics = evaluate_predictions(FakeVOC(HAND_DATASET), HAND_PREDICTIONS, "voc", voc_method=method)
    assert metrics["voc/AP_cat"] == pytest.approx(cat_ap, abs=1e-12)
    assert metrics["voc/AP_dog"] == pytest.approx(1.0, abs=1e-15)  # 11 * (1/11) is 1.0000000000000002
    assert np.isnan(metrics["voc/AP_bird"])  # no positives: left out of the mean
    assert metrics["voc/mAP"] == pytest.approx((cat_ap + 1.0) / 2, abs=1e-12)


def test_hand_computed_methods_differ():
    assert CAT_AP_11POINT == pytest.approx(0.563636, abs=1e-6)
    assert CAT_AP_AREA == pytest.approx(0.566667, abs=1e-6)


@pytest.mark.parametrize("method", ["11point", "area"])
def test_perfect_predictions_give_one(method):
    dataset = FakeVOC(HAND_DATASET)
    predictions = {}
    for index, image in enumerate(HAND_DATASET):
        boxes, labels = np.asarray(image["boxes"]), np.asarray(image["labels"])
        keep = ~np.asarray(image.get("difficult", [False] * len(labels)))
        predictions[index] = detections(boxes[keep], np.ones(keep.sum()), labels[keep])
    metrics = evaluate_predictions(dataset, predictions, "voc", voc_method=method, voc_coco_style=True)
    for key in ("voc/mAP", "voc/AP_cat", "voc/AP_dog", "voc/AP", "voc/AP50", "voc/AP75"):
        assert metrics[key] == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("method", ["11point", "area"])
def test_no_predictions_give_zero(method):
    predictions = {0: NO_DETECTIONS, 1: NO_DETECTIONS}
    metrics = evaluate_predictions(FakeVOC(HAND_DATASET), predictions, "voc", voc_method=method)
    assert metrics["voc/mAP"] == 0.0
    assert metrics["voc/AP_cat"] == metrics["voc/AP_dog"] == 0.0


def test_detection_whose_best_ground_truth_is_taken_is_a_duplicate():
    # Two overlapping objects; both detections' best match is `a` (IoU 1), the second one also overlaps
    # `b` at IoU 0.82. The devkit does not fall back to `b`: the second detection is a false positive.
    boxes = np.array([[0.0, 0, 10, 10], [0, 1, 10, 11]])  # a, b
    gt = [{"boxes": boxes, "labels": np.array([1, 1]), "ignore": np.zeros(2, bool)}]
    det = [detections([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8], [1, 1])]
    ap = voc_average_precisions(gt, det, 1, method="11point")
    assert ap[0, 0] == pytest.approx(6 / 11)  # (recall, precision) = (1/2, 1), (1/2, 1/2)
    assert voc_average_precisions(gt, det, 1, method="area")[0, 0] == pytest.approx(0.5)


def test_eleven_point_thresholds_are_numpy_arange_steps():
    # Recall reaches exactly 7/10, but the threshold np.arange puts there is 0.7000000000000001: no credit.
    recall = np.arange(1, 8) / 10
    assert average_precision(recall, np.ones(7), "11point") == pytest.approx(7 / 11)
    assert average_precision(recall, np.ones(7), "area") == pytest.approx(0.7)


def test_coco_style_averages_over_iou_thresholds():
    dataset = FakeVOC([{"boxes": [[0, 0, 10, 10]], "labels": [1]}])
    predictions = {0: detections([[0, 0, 10, 7.2]], [0.9], [1])}  # IoU 0.72: a hit at IoU 0.50 .. 0.70
    metrics = evaluate_predictions(dataset, predictions, "voc", voc_coco_style=True)
    assert metrics["voc/AP"] == pytest.approx(0.5)
    assert metrics["voc/AP50"] == metrics["voc/mAP"] == pytest.approx(1.0, abs=1e-15)
    assert metrics["voc/AP75"] == 0.0


def test_devkit_iou_adds_one_pixel_and_matches_continuous_iou():
    assert np.allclose(to_devkit_boxes(np.array([[0.0, 0, 10, 10]])), [[1, 1, 10, 10]])
    # Devkit pixels 1..10 x 1..10 (100 pixels) and 1..10 x 1..5 (50 pixels).
    assert devkit_iou(np.array([[1.0, 1, 10, 5]]), np.array([[1.0, 1, 10, 10]]))[0, 0] == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 50, (8, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(1, 30, (8, 2))], axis=1)
    continuous = box_iou(torch.from_numpy(boxes[:4]), torch.from_numpy(boxes[4:])).numpy()
    assert np.allclose(devkit_iou(to_devkit_boxes(boxes[:4]), to_devkit_boxes(boxes[4:])), continuous)


def test_devkit_result_files(tmp_path):
    evaluate_predictions(FakeVOC(HAND_DATASET), HAND_PREDICTIONS, "voc", output_dir=tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "comp4_det_test_bird.txt",
        "comp4_det_test_cat.txt",
        "comp4_det_test_dog.txt",
    ]
    assert (tmp_path / "comp4_det_test_bird.txt").read_text() == ""
    assert (tmp_path / "comp4_det_test_dog.txt").read_text() == "000001 0.300 51.0 51.0 90.0 90.0\n"
    cat_lines = (tmp_path / "comp4_det_test_cat.txt").read_text().splitlines()
    assert len(cat_lines) == 6
    assert cat_lines[0] == "000000 0.900 1.0 1.0 10.0 10.0"  # detectron2's decimals
    name, score, *box = cat_lines[4].split()
    assert (name, float(score), [float(v) for v in box]) == ("000001", 0.5, [71.0, 71.0, 80.0, 80.0])


def test_evaluates_only_predicted_images():
    # Image 0 holds an object nobody looked for; only image 1 is predicted, perfectly.
    dataset = FakeVOC([{"boxes": [[0, 0, 10, 10]], "labels": [1]}, {"boxes": [[5, 5, 20, 20]], "labels": [1]}])
    metrics = evaluate_predictions(dataset, {1: detections([[5, 5, 20, 20]], [0.5], [1])}, "voc")
    assert metrics["voc/AP_cat"] == pytest.approx(1.0, abs=1e-15)


def test_bad_label_names_the_image_and_label():
    predictions = {0: NO_DETECTIONS, 1: detections([[0, 0, 5, 5]], [0.5], [4])}
    message = r"predictions\[1\] \(image '000001.jpg', image_id 1\): label 4 is outside 1..3"
    with pytest.raises(ValueError, match=message):
        evaluate_predictions(FakeVOC(HAND_DATASET), predictions, "voc")
    with pytest.raises(ValueError, match="label 0 is outside"):
        evaluate_predictions(FakeVOC(HAND_DATASET), {0: detections([[0, 0, 5, 5]], [0.5], [0])}, "coco")


@pytest.mark.parametrize(
    "predictions, message",
    [
        ({}, "no predictions"),
        ({2: NO_DETECTIONS}, "prediction key 2 is not an index of the dataset"),
        ({0: {"boxes": np.zeros((1, 4)), "scores": np.zeros(2), "labels": np.ones(1, int)}}, r"\[0\].*expected boxes"),
        ({0: {"boxes": np.zeros((1, 4)), "labels": np.ones(1, int)}}, r"missing \['scores'\]"),
        ({0: detections([[5, 5, 1, 1]], [0.5], [1])}, "x2 >= x1"),
        ({0: detections([[0, 0, np.nan, 1]], [0.5], [1])}, "finite"),
    ],
)
def test_malformed_predictions_are_clear_errors(predictions, message):
    with pytest.raises(ValueError, match=message):
        evaluate_predictions(FakeVOC(HAND_DATASET), predictions, "voc")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"metric": "map"}, "unknown metric"),
        ({"metric": "coco", "coco_backend": "detectron2"}, "unknown COCO backend"),
        ({"metric": "voc", "voc_method": "12point"}, "unknown VOC AP method"),
    ],
)
def test_unknown_options_are_clear_errors(options, message):
    with pytest.raises(ValueError, match=message):
        evaluate_predictions(FakeVOC(HAND_DATASET), HAND_PREDICTIONS, **options)


def detectron2_voc_ap(ground_truth: list[dict], predictions: list[dict], label: int, threshold: float, method: str):
    """detectron2's ``voc_eval`` for one class, as its description reads: detections written to and read
    back from a result file (score %.3f, devkit box %.1f), sorted with ``np.argsort(-confidence)``, a
    detection by detection loop matching its best-IoU object when the IoU is ``> threshold``, then
    ``voc_ap`` (11 points from ``np.arange(0.0, 1.1, 0.1)``, summed in elevenths, or the area)."""
    lines = []
    for image, det in enumerate(predictions):
        for box, score, det_label in zip(det["boxes"], det["scores"], det["labels"]):
            if det_label == label:
                xmin, ymin, xmax, ymax = float(box[0]) + 1, float(box[1]) + 1, float(box[2]), float(box[3])
                lines.append(f"{image} {score:.3f} {xmin:.1f} {ymin:.1f} {xmax:.1f} {ymax:.1f}".split())
    records = {}
    for image, gt in enumerate(ground_truth):
        mask = np.asarray(gt["labels"]) == label
        boxes = np.asarray(gt["boxes"], dtype=float).reshape(-1, 4)[mask] + [1, 1, 0, 0]
        difficult = np.asarray(gt.get("difficult", [False] * len(mask)), dtype=bool)[mask]
        records[image] = {"bbox": boxes, "difficult": difficult, "det": [False] * len(boxes)}
    npos = sum(int((~r["difficult"]).sum()) for r in records.values())
    confidence = np.array([float(line[1]) for line in lines])
    boxes = np.array([[float(v) for v in line[2:]] for line in lines]).reshape(-1, 4)
    order = np.argsort(-confidence)
    tp, fp = np.zeros(len(lines)), np.zeros(len(lines))
    for d, index in enumerate(order):
        record, bb = records[int(lines[index][0])], boxes[index]
        overlap_max, best = -np.inf, -1
        if len(record["bbox"]):
            gt_boxes = record["bbox"]
            iw = np.maximum(np.minimum(gt_boxes[:, 2], bb[2]) - np.maximum(gt_boxes[:, 0], bb[0]) + 1.0, 0.0)
            ih = np.maximum(np.minimum(gt_boxes[:, 3], bb[3]) - np.maximum(gt_boxes[:, 1], bb[1]) + 1.0, 0.0)
            union = (bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
            union = union + (gt_boxes[:, 2] - gt_boxes[:, 0] + 1.0) * (gt_boxes[:, 3] - gt_boxes[:, 1] + 1.0)
            overlaps = iw * ih / (union - iw * ih)
            overlap_max, best = np.max(overlaps), int(np.argmax(overlaps))
        if overlap_max > threshold:
            if not record["difficult"][best]:
                if not record["det"][best]:
                    tp[d], record["det"][best] = 1.0, True
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall, precision = tp / float(npos), tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if method == "11point":
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            ap = ap + (np.max(precision[recall >= t]) if np.sum(recall >= t) else 0) / 11.0
        return ap
    mrec, mpre = np.concatenate(([0.0], recall, [1.0])), np.concatenate(([0.0], precision, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def random_voc_case(seed: int, num_images: int = 40) -> tuple[list[dict], list[dict]]:
    """Integer devkit-like ground truth (some difficult) and jittered and duplicated detections, enough per
    class (> 16) that numpy's default sort is not stable, with scores that tie once rounded to 3 decimals."""
    rng = np.random.default_rng(seed)
    ground_truth, predictions = [], []
    for _ in range(num_images):
        n = int(rng.integers(0, 5))
        corners = rng.integers(0, 60, (n, 2))
        boxes = np.concatenate([corners, corners + rng.integers(4, 40, (n, 2))], axis=1).astype(float)
        labels = rng.integers(1, 4, n)
        ground_truth.append({"boxes": boxes, "labels": labels, "difficult": rng.random(n) < 0.15})
        keep = rng.random(n) < 0.8
        found = boxes[keep] + rng.normal(0, 2.5, (int(keep.sum()), 4))
        false = rng.uniform(0, 80, (int(rng.integers(0, 4)), 2))
        false = np.concatenate([false, false + rng.uniform(4, 30, false.shape)], axis=1)
        det_boxes = np.concatenate([found, found[:1] + 0.3, false])
        det_labels = np.concatenate([labels[keep], labels[keep][:1], rng.integers(1, 4, len(false))])
        scores = rng.random(len(det_boxes))
        predictions.append(detections(np.clip(det_boxes, 0, None), scores, det_labels))
    return ground_truth, predictions


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("method", ["11point", "area"])
@pytest.mark.parametrize("threshold", [0.5, 0.75])
def test_ap_equals_detectron2_voc_eval_on_random_detections(seed, method, threshold):
    ground_truth, predictions = random_voc_case(seed)
    gt = [{"boxes": g["boxes"], "labels": g["labels"], "ignore": g["difficult"]} for g in ground_truth]
    ap = voc_average_precisions(gt, predictions, 3, iou_thresholds=(threshold,), method=method)
    for label in (1, 2, 3):
        expected = detectron2_voc_ap(ground_truth, predictions, label, threshold, method)
        assert ap[0, label - 1] == expected or (np.isnan(ap[0, label - 1]) and np.isnan(expected))


def test_iou_of_exactly_one_half_is_a_miss():
    # Devkit pixels 1..10 x 1..10 (100) and 1..10 x 1..5 (50): IoU 0.5, not > 0.5 (the MATLAB devkit: a hit).
    ground_truth = [{"boxes": [[0.0, 0, 10, 10]], "labels": [1]}]
    predictions = [detections([[0.0, 0, 10, 5]], [0.9], [1])]
    gt = [{"boxes": np.array([[0.0, 0, 10, 10]]), "labels": np.ones(1, int), "ignore": np.zeros(1, bool)}]
    assert voc_average_precisions(gt, predictions, 1)[0, 0] == 0.0
    assert detectron2_voc_ap(ground_truth, predictions, 1, 0.5, "11point") == 0.0


def test_recall_of_exactly_three_tenths_gets_no_credit_at_the_fourth_point():
    # 10 objects, the 3 best detections find 3 of them: recall 0.3, below np.arange's 0.30000000000000004.
    ground_truth = [{"boxes": [[10.0 * i, 0, 10.0 * i + 8, 8] for i in range(10)], "labels": [1] * 10}]
    predictions = [detections([[10.0 * i, 0, 10.0 * i + 8, 8] for i in range(3)], [0.9, 0.8, 0.7], [1, 1, 1])]
    gt = [{"boxes": np.asarray(ground_truth[0]["boxes"]), "labels": np.ones(10, int), "ignore": np.zeros(10, bool)}]
    ap = voc_average_precisions(gt, predictions, 1, method="11point")[0, 0]
    assert ap == detectron2_voc_ap(ground_truth, predictions, 1, 0.5, "11point") == pytest.approx(3 / 11)
