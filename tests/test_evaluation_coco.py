"""COCO evaluation through COCOeval: category ids, subsets, crowd, results file, both backends."""

import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from detection.evaluation import COCO_RESULTS_FILE, COCO_SUMMARY_NAMES, evaluate_predictions

# Category ids with gaps, listed unsorted; image ids not contiguous.
CATEGORIES = [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 12, "name": "bird"}]
IMAGE_IDS = [101, 205, 307, 400]


def build_annotation_file(path, seed: int = 0) -> None:
    """Four 640 x 480 images with 2..5 objects each of small, medium and large size, and one crowd region."""
    rng = np.random.default_rng(seed)
    annotations = []
    for image_id in IMAGE_IDS:
        for _ in range(rng.integers(2, 6)):
            size = rng.choice([20.0, 60.0, 150.0]) * rng.uniform(0.8, 1.2, 2)
            x, y = rng.uniform(0, [640 - size[0], 480 - size[1]])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(rng.choice([7, 3, 12])),
                    "bbox": [float(x), float(y), float(size[0]), float(size[1])],
                    "area": float(size[0] * size[1]),
                    "iscrowd": 0,
                }
            )
    annotations.append(
        {
            "id": len(annotations) + 1,
            "image_id": 205,
            "category_id": 7,
            "bbox": [400.0, 300.0, 200.0, 150.0],
            "area": 30000.0,
            "iscrowd": 1,
        }
    )
    images = [{"id": i, "width": 640, "height": 480, "file_name": f"{i}.jpg"} for i in IMAGE_IDS]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))


class FakeCoco:
    """The COCO dataset contract evaluation reads, over the images ``image_ids`` of an annotation file."""

    def __init__(self, annotation_file, image_ids=IMAGE_IDS, category_ids=None) -> None:
        self.coco = COCO(str(annotation_file))
        category_ids = sorted(category_ids or self.coco.getCatIds())
        self.label_to_category_id = {label: c for label, c in enumerate(category_ids, start=1)}
        self.category_id_to_label = {c: label for label, c in self.label_to_category_id.items()}
        self.class_names = tuple(self.coco.cats[c]["name"] for c in category_ids)
        self.image_ids = list(image_ids)

    def __len__(self) -> int:
        return len(self.image_ids)

    def get_annotation(self, index: int) -> dict:
        image = self.coco.imgs[self.image_ids[index]]
        objects = self.coco.loadAnns(self.coco.getAnnIds(imgIds=image["id"], catIds=list(self.category_id_to_label)))
        xywh = np.array([o["bbox"] for o in objects], dtype=np.float32).reshape(-1, 4)
        return {
            "boxes": np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1),
            "labels": np.array([self.category_id_to_label[o["category_id"]] for o in objects], dtype=np.int64),
            "iscrowd": np.array([o["iscrowd"] for o in objects], dtype=bool),
            "difficult": np.zeros(len(objects), dtype=bool),
            "height": image["height"],
            "width": image["width"],
            "file_name": image["file_name"],
            "image_id": image["id"],
        }


def perfect_predictions(dataset, indices=None) -> dict:
    """The non-crowd ground truth of each image as detections of score 1."""
    predictions = {}
    for index in range(len(dataset)) if indices is None else indices:
        annotation = dataset.get_annotation(index)
        keep = ~annotation["iscrowd"]
        predictions[index] = {
            "boxes": annotation["boxes"][keep],
            "scores": np.ones(keep.sum(), dtype=np.float32),
            "labels": annotation["labels"][keep],
        }
    return predictions


def noisy_predictions(dataset, seed: int = 1) -> dict:
    """Jittered ground truth with random scores, some wrong labels and some false positives."""
    rng = np.random.default_rng(seed)
    predictions = {}
    for index, prediction in perfect_predictions(dataset).items():
        boxes = prediction["boxes"] + rng.normal(0, 4, prediction["boxes"].shape)
        extra = rng.uniform(0, 300, (3, 2))
        boxes = np.concatenate([boxes, np.concatenate([extra, extra + rng.uniform(10, 200, (3, 2))], axis=1)])
        labels = np.concatenate([prediction["labels"], rng.integers(1, 4, 3)])
        labels[rng.uniform(size=len(labels)) < 0.2] = rng.integers(1, 4)
        predictions[index] = {
            "boxes": np.sort(boxes.reshape(-1, 2, 2), axis=1).reshape(-1, 4).astype(np.float32),
            "scores": rng.uniform(0.05, 1, len(boxes)).astype(np.float32),
            "labels": labels,
        }
    return predictions


@pytest.fixture(scope="module")
def annotation_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("coco") / "instances.json"
    build_annotation_file(path)
    return path


@pytest.fixture(scope="module")
def dataset(annotation_file):
    return FakeCoco(annotation_file)


@pytest.mark.parametrize("backend", ["pycocotools", "faster"])
def test_perfect_predictions_with_category_id_gaps_give_one(dataset, backend):
    assert dataset.label_to_category_id == {1: 3, 2: 7, 3: 12}
    metrics = evaluate_predictions(dataset, perfect_predictions(dataset), "coco", coco_backend=backend)
    for name in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"):
        assert metrics[f"bbox/{name}"] == pytest.approx(1.0), name
    for name in ("cat", "dog", "bird"):
        assert metrics[f"bbox/AP_{name}"] == pytest.approx(1.0)
        assert metrics[f"bbox/AP50_{name}"] == pytest.approx(1.0)


@pytest.mark.parametrize("backend", ["pycocotools", "faster"])
def test_no_detections_give_zero(dataset, backend):
    empty = {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32), "labels": np.zeros(0, np.int64)}
    metrics = evaluate_predictions(dataset, {i: empty for i in range(len(dataset))}, "coco", coco_backend=backend)
    assert metrics["bbox/AP"] == metrics["bbox/AP50"] == metrics["bbox/AR100"] == 0.0
    assert metrics["bbox/AP_cat"] == 0.0


def test_backends_give_the_same_twelve_numbers(dataset):
    predictions = noisy_predictions(dataset)
    reference = evaluate_predictions(dataset, predictions, "coco", coco_backend="pycocotools")
    faster = evaluate_predictions(dataset, predictions, "coco", coco_backend="faster")
    assert 0.1 < reference["bbox/AP"] < 0.9
    twelve = [f"bbox/{name}" for name in COCO_SUMMARY_NAMES]
    assert all(np.isfinite(reference[key]) for key in twelve)
    assert faster.keys() == reference.keys()
    np.testing.assert_allclose([faster[key] for key in reference], list(reference.values()), rtol=0, atol=1e-12)


def test_per_class_table_uses_fractions_as_the_summary_does(dataset, capsys):
    metrics = evaluate_predictions(dataset, noisy_predictions(dataset), "coco")
    out = capsys.readouterr().out
    summary_ap = next(line for line in out.splitlines() if "(AP) @[ IoU=0.50:0.95 | area=   all" in line)
    assert summary_ap.endswith(f" = {metrics['bbox/AP']:.3f}")  # COCOeval's summary: fractions
    table = [[cell.strip() for cell in line.strip("|").split("|")] for line in out.splitlines() if line[:1] == "|"]
    rows = {cells[0]: cells[1:] for cells in table}
    for name in dataset.class_names:
        ap, ap50 = rows[name]
        assert (ap, ap50) == (f"{metrics[f'bbox/AP_{name}']:.3f}", f"{metrics[f'bbox/AP50_{name}']:.3f}")


def test_subset_of_annotation_file_does_not_count_other_images(annotation_file):
    subset = FakeCoco(annotation_file, image_ids=[400, 205])
    assert evaluate_predictions(subset, perfect_predictions(subset), "coco")["bbox/AP"] == pytest.approx(1.0)
    # Predicting only part of a dataset evaluates that part.
    dataset = FakeCoco(annotation_file)
    assert evaluate_predictions(dataset, perfect_predictions(dataset, [0, 2]), "coco")["bbox/AP"] == pytest.approx(1.0)


def test_predicted_image_without_detections_counts(dataset):
    predictions = perfect_predictions(dataset)
    predictions[2] = {key: value[:0] for key, value in predictions[2].items()}
    metrics = evaluate_predictions(dataset, predictions, "coco")
    assert metrics["bbox/AR100"] < 0.99
    assert metrics["bbox/AP"] < 0.99


def test_detections_on_crowd_regions_are_ignored(dataset):
    predictions = perfect_predictions(dataset)
    crowd_index = dataset.image_ids.index(205)
    crowd = {"boxes": np.array([[420.0, 320, 580, 440]]), "scores": np.array([0.5]), "labels": np.array([2])}
    predictions[crowd_index] = {key: np.concatenate([predictions[crowd_index][key], crowd[key]]) for key in crowd}
    assert evaluate_predictions(dataset, predictions, "coco")["bbox/AP"] == pytest.approx(1.0)


def test_results_file_is_official_format_with_original_category_ids(dataset, tmp_path):
    evaluate_predictions(dataset, perfect_predictions(dataset), "coco", output_dir=tmp_path / "out")
    results = json.loads((tmp_path / "out" / COCO_RESULTS_FILE).read_text())
    gt = [a for a in dataset.coco.dataset["annotations"] if not a["iscrowd"]]
    assert len(results) == len(gt)
    assert all(set(r) == {"image_id", "category_id", "bbox", "score"} for r in results)
    key = lambda a: (a["image_id"], a["category_id"], round(a["bbox"][0], 2))  # noqa: E731
    for result, truth in zip(sorted(results, key=key), sorted(gt, key=key)):
        assert (result["image_id"], result["category_id"]) == (truth["image_id"], truth["category_id"])
        assert np.allclose(result["bbox"], truth["bbox"], atol=1e-3)
    # Loadable by the official API as it is.
    assert len(dataset.coco.loadRes(str(tmp_path / "out" / COCO_RESULTS_FILE)).anns) == len(gt)


def test_only_the_dataset_categories_are_evaluated(annotation_file):
    # A dataset of cats and dogs only: the birds of the annotation file are not the model's misses.
    dataset = FakeCoco(annotation_file, category_ids=[3, 7])
    metrics = evaluate_predictions(dataset, perfect_predictions(dataset), "coco")
    assert metrics["bbox/AP"] == pytest.approx(1.0)
    assert "bbox/AP_bird" not in metrics and metrics["bbox/AP_cat"] == pytest.approx(1.0)


class FakeVOC:
    """A dataset without a COCO json (VOC-like): its COCO ground truth is built from its annotations."""

    class_names = ("cat", "dog")

    def __init__(self) -> None:
        self.get_annotation_calls = 0

    def __len__(self) -> int:
        return 2

    def get_annotation(self, index: int) -> dict:
        self.get_annotation_calls += 1
        return {
            "boxes": np.array([[10, 10, 60, 80], [100, 50, 180, 120], [5, 5, 40, 40]], np.float32) + 7 * index,
            "labels": np.array([1, 2, 2], np.int64),
            "difficult": np.array([False, False, True]),
            "iscrowd": np.zeros(3, bool),
            "height": 200,
            "width": 300,
            "file_name": f"{index:06d}.jpg",
            "image_id": index,
        }


@pytest.mark.parametrize("backend", ["pycocotools", "faster"])
def test_coco_metric_on_dataset_without_coco_json_is_built_once(backend):
    dataset = FakeVOC()
    predictions = {}
    for index in range(2):
        annotation = dataset.get_annotation(index)
        predictions[index] = {
            "boxes": annotation["boxes"][:2],  # not the difficult object
            "scores": np.ones(2),
            "labels": annotation["labels"][:2],
        }
    calls = dataset.get_annotation_calls
    for _ in range(2):
        metrics = evaluate_predictions(dataset, predictions, "coco", coco_backend=backend)
        assert metrics["bbox/AP"] == pytest.approx(1.0)  # the unpredicted difficult object is no miss
    assert dataset.get_annotation_calls - calls == len(dataset)
