"""Exact resume, and the stop on a non-finite loss with the last good state saved."""

import itertools
import json
import math

import pytest
import torch
from torchvision.models.detection import roi_heads
from training_helpers import model_tensors, tiny_config

from detection.engine import NonFiniteLossError, RunOptions, run_training

pytestmark = pytest.mark.slow

ACCUMULATING = ("solver.accumulate_grad_batches=2", "solver.clip_grad_norm=5.0")


def assert_same_tensors(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=1e-6, msg=key)


def test_resume_continues_exactly(shapes_root, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert run_training(tiny_config(shapes_root, straight, "solver.max_iter=6", *ACCUMULATING)) == 0
    assert run_training(tiny_config(shapes_root, split, "solver.max_iter=3", *ACCUMULATING)) == 0
    halfway = model_tensors(split / "model_final.pth")
    assert (
        run_training(tiny_config(shapes_root, split, "solver.max_iter=6", *ACCUMULATING), RunOptions(resume="auto"))
        == 0
    )

    expected = torch.load(straight / "model_final.pth", weights_only=True)
    resumed = torch.load(split / "model_final.pth", weights_only=True)
    assert resumed["iteration"] == expected["iteration"] == 6
    assert_same_tensors(resumed["model"], expected["model"])
    momentum = {k: v["momentum_buffer"] for k, v in resumed["optimizer"]["state"].items()}
    assert_same_tensors(momentum, {k: v["momentum_buffer"] for k, v in expected["optimizer"]["state"].items()})
    assert resumed["scheduler"] == expected["scheduler"] == {"last_epoch": 6}
    assert not torch.equal(
        halfway["roi_heads.box_predictor.cls_score.weight"],
        expected["model"]["roi_heads.box_predictor.cls_score.weight"],
    )


def test_non_finite_loss_stops_and_saves_the_last_good_state(shapes_root, tmp_path, monkeypatch):
    assert run_training(tiny_config(shapes_root, tmp_path / "good", "solver.max_iter=2", "solver.steps=[1]")) == 0
    calls = itertools.count(1)
    original = roi_heads.fastrcnn_loss

    def poisoned_in_third_iteration(*args):
        classification, box_regression = original(*args)
        return (classification * math.nan if next(calls) == 3 else classification), box_regression

    monkeypatch.setattr(roi_heads, "fastrcnn_loss", poisoned_in_third_iteration)
    bad = tmp_path / "bad"
    with pytest.raises(
        NonFiniteLossError, match=r"non-finite loss in iteration 3: loss_classifier=nan, loss_box_reg=\S+"
    ) as error:
        run_training(tiny_config(shapes_root, bad, "solver.max_iter=4", "solver.steps=[1]"))
    assert "after iteration 2" in str(error.value) and str(bad / "model_0000002.pth") in str(error.value)
    assert (bad / "last_checkpoint").read_text().strip() == "model_0000002.pth"
    saved = torch.load(bad / "model_0000002.pth", weights_only=True)
    assert saved["iteration"] == 2
    # BatchNorm statistics updated by the poisoned forward pass are rolled back too.
    assert_same_tensors(saved["model"], model_tensors(tmp_path / "good" / "model_final.pth"))


def test_diverging_learning_rate_is_caught(shapes_root, tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"non-finite (loss|gradient norm) in iteration \d+: loss_classifier="):
        run_training(
            tiny_config(
                shapes_root,
                tmp_path,
                "solver.base_lr=1e12",
                "solver.warmup_iters=0",
                "solver.max_iter=20",
                "solver.steps=[]",
            )
        )
    saved = torch.load(tmp_path / (tmp_path / "last_checkpoint").read_text().strip(), weights_only=True)
    assert all(torch.isfinite(tensor).all() for tensor in saved["model"].values() if tensor.is_floating_point())


def test_weights_initialise_a_new_run_and_eval_only_reproduces_the_evaluation(shapes_root, tmp_path):
    assert run_training(tiny_config(shapes_root, tmp_path / "first", "solver.max_iter=2", "solver.steps=[1]")) == 0
    weights = str(tmp_path / "first" / "model_final.pth")
    first_metrics = _final_metrics(tmp_path / "first")

    assert run_training(tiny_config(shapes_root, tmp_path / "eval"), RunOptions(weights=weights, eval_only=True)) == 0
    assert _final_metrics(tmp_path / "eval") == pytest.approx(first_metrics, nan_ok=True)

    assert (
        run_training(
            tiny_config(shapes_root, tmp_path / "finetune", "solver.max_iter=1", "solver.steps=[]"),
            RunOptions(weights=weights),
        )
        == 0
    )
    log = (tmp_path / "finetune" / "log.txt").read_text()
    assert f"initialised the model from {weights}" in log and "training from iteration 0 to 1" in log
    finetuned = torch.load(tmp_path / "finetune" / "model_final.pth", weights_only=True)
    assert finetuned["iteration"] == 1 and len(finetuned["optimizer"]["state"]) > 0


def _final_metrics(output) -> dict:
    lines = [json.loads(line) for line in (output / "metrics.json").read_text().splitlines()]
    return {key: value for key, value in lines[-1].items() if key.startswith("eval/")}
