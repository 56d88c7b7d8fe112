"""run_inference: eval mode under inference_mode, predictions keyed by dataset index, gathering."""

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

from detection.evaluation import evaluate_predictions, run_inference


class FakeDetector(nn.Module):
    """Detects the whole image as class 1 and its top-left quarter as class 2; records its mode."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        self.calls.append((self.training, torch.is_inference_mode_enabled()))
        outputs = []
        for image in images:
            h, w = image.shape[-2:]
            outputs.append(
                {
                    "boxes": self.scale * torch.tensor([[0.0, 0, w, h], [0, 0, w / 2, h / 2]]),
                    "scores": torch.tensor([0.9, 0.4]),
                    "labels": torch.tensor([1, 2]),
                }
            )
        return outputs


def loader() -> list:
    """Two batches as a test loader yields them, images of different sizes, indices out of order."""
    sizes = {3: (20, 30), 0: (40, 10), 1: (16, 16), 2: (8, 24)}
    images = {index: torch.rand(3, *size) for index, size in sizes.items()}
    return [
        ([images[3], images[0]], [{"index": 3}, {"index": 0}]),
        ([images[1], images[2]], [{"index": 1}, {"index": 2}]),
    ]


def test_predictions_by_index_in_eval_mode_and_training_mode_restored():
    model = FakeDetector().train()
    predictions = run_inference(model, loader(), "cpu", progress=False)
    assert model.calls == [(False, True), (False, True)]
    assert model.training
    assert list(predictions) == [0, 1, 2, 3]
    assert predictions[0]["boxes"].dtype == np.float32 and predictions[0]["labels"].dtype == np.int64
    np.testing.assert_array_equal(predictions[0]["boxes"], [[0, 0, 10, 40], [0, 0, 5, 20]])
    np.testing.assert_array_equal(predictions[3]["scores"], np.float32([0.9, 0.4]))
    np.testing.assert_array_equal(predictions[3]["labels"], [1, 2])


def test_gathers_when_distributed(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        predictions = run_inference(FakeDetector(), loader(), "cpu", progress=False)
    finally:
        dist.destroy_process_group()
    assert list(predictions) == [0, 1, 2, 3]
    np.testing.assert_array_equal(predictions[2]["boxes"], [[0, 0, 24, 8], [0, 0, 12, 4]])


class WholeImageDataset:
    """One whole-image object of class 1 per image of ``loader()``."""

    class_names = ("thing", "corner")
    sizes = [(40, 10), (16, 16), (8, 24), (20, 30)]

    def __len__(self) -> int:
        return len(self.sizes)

    def get_annotation(self, index: int) -> dict:
        h, w = self.sizes[index]
        return {
            "boxes": np.array([[0, 0, w, h]], np.float32),
            "labels": np.array([1]),
            "difficult": np.zeros(1, bool),
            "iscrowd": np.zeros(1, bool),
            "height": h,
            "width": w,
            "file_name": f"{index}.png",
            "image_id": index,
        }


def test_predictions_feed_evaluation():
    predictions = run_inference(FakeDetector(), loader(), "cpu", progress=False)
    metrics = evaluate_predictions(WholeImageDataset(), predictions, "voc")
    assert metrics["voc/AP_thing"] == pytest.approx(1.0, abs=1e-15)  # 11 * (1/11), as detectron2
    assert np.isnan(metrics["voc/AP_corner"]) and metrics["voc/mAP"] == pytest.approx(1.0, abs=1e-15)
