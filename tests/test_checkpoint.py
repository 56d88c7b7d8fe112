"""detection.checkpoint: a checkpoint's weights and classes checked against the model and the dataset."""

import pytest
import torch
from torch import nn

from detection.checkpoint import check_class_names, load_model_state
from detection.errors import CheckpointError


class TinyDetector(nn.Module):
    """Ten layers and a box predictor for ``num_classes`` classes: state-dict keys like a detector's."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(2, 2) for _ in range(10))
        self.roi_heads = nn.Module()
        self.roi_heads.box_predictor = nn.Linear(2, num_classes)


def test_every_bad_key_is_counted_and_the_first_ones_named():
    state_dict = {k: v for k, v in TinyDetector().state_dict().items() if not k.startswith("layers.")}
    state_dict["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as error:
        load_model_state(TinyDetector(), state_dict, "model.pth")
    message = str(error.value)
    assert message.startswith("model.pth: weights do not fit the model (missing: layers.0.bias, layers.0.weight, ")
    assert ", ... (20 in all); unexpected: extra.weight)" in message
    assert message.count("layers.") == 8


def test_a_predictor_for_other_classes_is_skipped_only_when_fine_tuning():
    trained, model = TinyDetector(num_classes=5), TinyDetector(num_classes=3)
    with pytest.raises(
        CheckpointError, match=r"wrong shape: roi_heads\.box_predictor\.bias \(checkpoint \(5,\), model"
    ):
        load_model_state(model, trained.state_dict(), "model.pth")
    skipped = load_model_state(model, trained.state_dict(), "model.pth", skip_mismatched_predictor=True)
    assert skipped == ["roi_heads.box_predictor.bias", "roi_heads.box_predictor.weight"]
    assert torch.equal(model.layers[3].weight, trained.layers[3].weight)


def test_class_names_must_be_the_datasets():
    check_class_names("model.pth", ["cat", "dog"], ("cat", "dog"))
    with pytest.raises(
        CheckpointError, match=r"^model\.pth: trained for 2 classes \(cat, dog\), but the dataset has 3"
    ):
        check_class_names("model.pth", ["cat", "dog"], ["cat", "dog", "bird"])
    with pytest.raises(CheckpointError, match="label 1 is 'cat' there, 'dog' here$"):
        check_class_names("model.pth", ["cat", "dog"], ["dog", "cat"])
