"""``evaluate_predictions``: the one evaluation that training and ``tools/eval_det.py`` both call.

The evaluated images are the keys of the predictions: on a subset of a dataset (or of a COCO json) the
images that were not predicted are left out, not counted as misses, while a predicted image with no
detections (empty arrays) counts. What evaluation reads from a dataset (annotations, COCO API objects)
is read once per dataset object and kept while the dataset lives, not rebuilt per evaluation.
"""

import logging
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..files import json_text
from ..modeling.outputs import Predictions
from .coco_evaluation import COCO_BACKENDS, coco_ground_truth_json, coco_results, evaluate_coco, load_coco_api
from .voc_evaluation import VOC_METHODS, evaluate_voc, write_devkit_results

METRICS = ("coco", "voc")
COCO_RESULTS_FILE = "coco_instances_results.json"

logger = logging.getLogger(__name__)


class DatasetGroundTruth:
    """What evaluation needs from a dataset, read once: the annotations of every image, the class names,
    the devkit image names and the COCO API objects (built on first use, one per backend).

    Holds no reference to the dataset, so that it can be cached weakly by dataset.
    """

    def __init__(self, dataset: Any) -> None:
        self.class_names: tuple[str, ...] = tuple(dataset.class_names)
        self.annotations: list[Mapping[str, Any]] = [dataset.get_annotation(i) for i in range(len(dataset))]
        if hasattr(dataset, "image_name"):
            self.image_names = [str(dataset.image_name(i)) for i in range(len(dataset))]
        else:
            self.image_names = [Path(annotation["file_name"]).stem for annotation in self.annotations]
        self._coco_apis: dict[str, Any] = {}
        if hasattr(dataset, "coco"):
            self._coco_json = dataset.coco.dataset
            self._coco_apis["pycocotools"] = dataset.coco
            self.label_to_category_id = {int(k): int(v) for k, v in dataset.label_to_category_id.items()}
        else:
            self._coco_json = None
            self.label_to_category_id = {label: label for label in range(1, len(self.class_names) + 1)}

    def coco_api(self, backend: str) -> Any:
        """The ground truth's COCO API object of ``backend`` (see ``coco_evaluation``)."""
        if backend not in self._coco_apis:
            if self._coco_json is None:
                self._coco_json = coco_ground_truth_json(self.annotations, self.class_names)
            self._coco_apis[backend] = load_coco_api(self._coco_json, backend)
        return self._coco_apis[backend]

    def voc_ground_truth(self, index: int) -> dict[str, np.ndarray]:
        """Image ``index``'s ``boxes`` ``[M, 4]``, ``labels`` ``[M]`` and ``ignore`` ``[M]``: difficult or crowd."""
        annotation = self.annotations[index]
        return {
            "boxes": np.asarray(annotation["boxes"], dtype=np.float64).reshape(-1, 4),
            "labels": np.asarray(annotation["labels"], dtype=np.int64),
            "ignore": np.asarray(annotation["difficult"], dtype=bool) | np.asarray(annotation["iscrowd"], dtype=bool),
        }


_GROUND_TRUTH: "weakref.WeakKeyDictionary[Any, DatasetGroundTruth]" = weakref.WeakKeyDictionary()


def dataset_ground_truth(dataset: Any) -> DatasetGroundTruth:
    """The :class:`DatasetGroundTruth` of ``dataset``, built on the first call for this dataset object."""
    ground_truth = _GROUND_TRUTH.get(dataset)
    if ground_truth is None:
        ground_truth = _GROUND_TRUTH[dataset] = DatasetGroundTruth(dataset)
    return ground_truth


def evaluate_predictions(
    dataset: Any,
    predictions: Predictions,
    metric: str,
    output_dir: str | Path | None = None,
    *,
    coco_backend: str = "pycocotools",
    voc_method: str = "11point",
    voc_coco_style: bool = False,
    figures: bool = False,
) -> dict[str, float]:
    """Evaluates ``predictions`` on the ground truth of ``dataset``, logs the tables, returns the metrics.

    Args:
        dataset: a detection dataset (``class_names``, ``get_annotation``, ``len``; ``coco`` and
            ``label_to_category_id`` for a COCO json, ``image_name`` for VOC).
        predictions: dataset index -> ``boxes`` ``[n, 4]`` xyxy in original-image pixels, ``scores``
            ``[n]``, ``labels`` ``[n]`` in ``1..K``. Only these images are evaluated.
        metric: ``"coco"`` (``COCOeval`` on the dataset's categories; for a dataset without a COCO
            json, one is built from its annotations with difficult objects as crowd regions) or ``"voc"``
            (the devkit's AP; crowd objects are treated like difficult ones).
        output_dir: where to write the results: ``coco_instances_results.json`` (the official results
            format, original category ids) or the devkit files ``comp4_det_test_<class>.txt``.
        coco_backend: ``"pycocotools"`` or ``"faster"`` (faster-coco-eval).
        voc_method: ``"11point"`` (VOC2007) or ``"area"`` (VOC2010+).
        voc_coco_style: also report the VOC AP averaged over IoU 0.50:0.05:0.95 (as detectron2 does).
        figures: also write the PNG figures of ``plots`` (precision/recall curves, per-class AP and, for
            ``coco``, the error breakdown) to ``output_dir``.

    Returns:
        Metrics in ``[0, 1]``, ``nan`` where undefined. ``coco``: ``bbox/AP``, ``bbox/AP50``,
        ``bbox/AP75``, ``bbox/APs``, ``bbox/APm``, ``bbox/APl``, ``bbox/AR1``, ``bbox/AR10``,
        ``bbox/AR100``, ``bbox/ARs``, ``bbox/ARm``, ``bbox/ARl``, ``bbox/AP_<class>``,
        ``bbox/AP50_<class>``. ``voc``: ``voc/mAP``, ``voc/AP_<class>``, and with ``voc_coco_style``
        ``voc/AP``, ``voc/AP50``, ``voc/AP75``.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    if coco_backend not in COCO_BACKENDS:
        raise ValueError(f"unknown COCO backend {coco_backend!r}; expected one of {COCO_BACKENDS}")
    if voc_method not in VOC_METHODS:
        raise ValueError(f"unknown VOC AP method {voc_method!r}; expected one of {VOC_METHODS}")
    ground_truth = dataset_ground_truth(dataset)
    predictions = check_predictions(predictions, ground_truth)
    if len(predictions) < len(ground_truth.annotations):
        logger.info(f"Evaluating the {len(predictions)} predicted images of {len(ground_truth.annotations)}.")
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
    figures_dir = output_dir if figures else None
    if metric == "coco":
        return _evaluate_coco(ground_truth, predictions, output_dir, coco_backend, figures_dir)
    return _evaluate_voc(ground_truth, predictions, output_dir, voc_method, voc_coco_style, figures_dir)


def check_predictions(predictions: Predictions, ground_truth: DatasetGroundTruth) -> dict[int, dict[str, np.ndarray]]:
    """Validated copy of ``predictions`` in index order, as ``boxes`` float64 ``[n, 4]``, ``scores``
    float64 ``[n]``, ``labels`` int64 ``[n]``; a clear error naming the image for anything malformed."""
    if not predictions:
        raise ValueError(
            "no predictions: nothing to evaluate (an image without detections needs an entry with empty arrays)"
        )
    num_images = len(ground_truth.annotations)
    for index in predictions:
        if not isinstance(index, (int, np.integer)) or not 0 <= index < num_images:
            raise ValueError(f"prediction key {index!r} is not an index of the dataset (0..{num_images - 1})")
    checked = {}
    for index in sorted(predictions):
        annotation = ground_truth.annotations[index]
        where = f"predictions[{index}] (image {annotation['file_name']!r}, image_id {annotation['image_id']})"
        checked[int(index)] = _check_prediction(predictions[index], where, len(ground_truth.class_names))
    image_ids = [int(ground_truth.annotations[index]["image_id"]) for index in checked]
    if len(set(image_ids)) != len(image_ids):
        raise ValueError("the dataset gives the same image_id to several of the predicted images")
    return checked


def _check_prediction(prediction: Mapping[str, Any], where: str, num_classes: int) -> dict[str, np.ndarray]:
    missing = {"boxes", "scores", "labels"} - set(prediction)
    if missing:
        raise ValueError(f"{where}: missing {sorted(missing)}")
    boxes = np.asarray(prediction["boxes"], dtype=np.float64)
    scores = np.asarray(prediction["scores"], dtype=np.float64)
    labels = np.asarray(prediction["labels"])
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != (len(boxes),) or labels.shape != (len(boxes),):
        raise ValueError(
            f"{where}: expected boxes [n, 4], scores [n], labels [n]; "
            f"got {list(boxes.shape)}, {list(scores.shape)}, {list(labels.shape)}"
        )
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{where}: labels must be integers, got dtype {labels.dtype}")
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise ValueError(f"{where}: boxes and scores must be finite")
    if (boxes[:, 2:] < boxes[:, :2]).any():
        raise ValueError(f"{where}: boxes must be xyxy with x2 >= x1 and y2 >= y1")
    outside = labels[(labels < 1) | (labels > num_classes)]
    if outside.size:
        raise ValueError(f"{where}: label {int(outside[0])} is outside 1..{num_classes} (0 is the background)")
    return {"boxes": boxes, "scores": scores, "labels": labels.astype(np.int64)}


def _evaluate_coco(
    ground_truth: DatasetGroundTruth,
    predictions: dict[int, dict[str, np.ndarray]],
    output_dir: str | Path | None,
    backend: str,
    figures_dir: str | Path | None,
) -> dict[str, float]:
    image_ids = {index: int(ground_truth.annotations[index]["image_id"]) for index in predictions}
    results = coco_results(predictions, image_ids, ground_truth.label_to_category_id)
    if output_dir is not None:
        (Path(output_dir) / COCO_RESULTS_FILE).write_text(json_text(results))
    coco_gt = ground_truth.coco_api(backend)
    category_ids = list(ground_truth.label_to_category_id.values())
    return evaluate_coco(coco_gt, results, list(image_ids.values()), category_ids, backend, figures_dir=figures_dir)


def _evaluate_voc(
    ground_truth: DatasetGroundTruth,
    predictions: dict[int, dict[str, np.ndarray]],
    output_dir: str | Path | None,
    method: str,
    coco_style: bool,
    figures_dir: str | Path | None,
) -> dict[str, float]:
    indices = list(predictions)
    detections = [predictions[index] for index in indices]
    if output_dir is not None:
        image_names = [ground_truth.image_names[index] for index in indices]
        write_devkit_results(output_dir, image_names, detections, ground_truth.class_names)
    gt = [ground_truth.voc_ground_truth(index) for index in indices]
    return evaluate_voc(
        gt, detections, ground_truth.class_names, method=method, coco_style=coco_style, figures_dir=figures_dir
    )
