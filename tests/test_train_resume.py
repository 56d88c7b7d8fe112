"""Exact resume, what --resume keeps and may change, the run folder's protection, and the stops that save
the last good state (a non-finite loss, an unreadable image)."""

import itertools
import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch
from test_train_cli import assert_one_line_error
from training_helpers import TRAIN_TOOL, folder_contents, model_tensors, run_tool, tiny_config, train_command

from detection.data.build import build_train_loader, dataset_from_config
from detection.engine import NonFiniteLossError, RunOptions, run_training
from detection.engine.resume import resumed_config
from detection.modeling import roi_heads

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
    original = roi_heads.fast_rcnn_losses

    def poisoned_in_third_iteration(*args):
        classification, box_regression = original(*args)
        return (classification * math.nan if next(calls) == 3 else classification), box_regression

    monkeypatch.setattr(roi_heads, "fast_rcnn_losses", poisoned_in_third_iteration)
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


@pytest.fixture(scope="module")
def trained_run(shapes_root, tmp_path_factory) -> Path:
    """A run of the tool trained with options of its own: 2 iterations, a checkpoint after each."""
    output = tmp_path_factory.mktemp("trained") / "run"
    own = ("model.min_size=96", "solver.max_iter=2", "solver.steps=[]", "solver.checkpoint_period=1")
    result = run_tool(train_command(shapes_root, output, *own))
    assert result.returncode == 0, result.stderr
    return output


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def resume_command(output: Path, *tool_args: str) -> list[str]:
    return [sys.executable, str(TRAIN_TOOL), "--resume", *tool_args, "--output-dir", str(output)]


def test_eval_only_resume_replaces_the_evaluation_of_the_checkpoint_s_iteration(run_copy):
    def evaluations_at_2() -> list[dict]:
        lines = [json.loads(line) for line in (run_copy / "metrics.json").read_text().splitlines()]
        return [line for line in lines if line["iteration"] == 2 and any(key.startswith("eval/") for key in line)]

    assert len(evaluations_at_2()) == 1  # the run's own, after its last iteration
    final = str(run_copy / "model_final.pth")
    config = resumed_config(final, [f"output_dir={run_copy}", "test.vis_images=0"])
    assert run_training(config, RunOptions(resume=final, eval_only=True)) == 0
    assert len(evaluations_at_2()) == 1
    lines = (run_copy / "metrics.json").read_text().splitlines()
    assert any("loss/total" in line for line in lines)  # training's own lines stay


def test_resume_continues_the_run_as_it_was_configured(run_copy):
    oldest = str(run_copy / "model_0000001.pth")
    result = run_tool(resume_command(run_copy, oldest, "--opts", "solver.max_iter=3"))
    assert result.returncode == 0, result.stderr
    assert "resume: solver.max_iter 2 -> 3" in result.stdout and "model.min_size" not in result.stdout
    assert f"resumed from {oldest} at iteration 1" in result.stdout
    final = torch.load(run_copy / "model_final.pth", weights_only=True)
    assert final["iteration"] == 3 and final["config"]["model"]["min_size"] == 96
    assert final["config"]["solver"]["warmup_iters"] == 2 and final["scheduler"] == {"last_epoch": 3}
    # config.yaml is the continued run's; the one it replaced is kept.
    assert "resume: config.yaml updated; the config it replaces is kept as config.0000001.yaml" in result.stdout
    assert "max_iter: 3\n" in (run_copy / "config.yaml").read_text()
    assert "max_iter: 2\n" in (run_copy / "config.0000001.yaml").read_text()
    # What the run wrote after iteration 1 (iteration 2 and its evaluation) is replaced, not repeated.
    assert "resume: dropped 2 line(s) of metrics.json after iteration 1" in result.stdout
    records = [json.loads(line) for line in (run_copy / "metrics.json").read_text().splitlines()]
    keys = [(record["iteration"], key) for record in records for key in record if key != "iteration"]
    assert len(keys) == len(set(keys)) and max(iteration for iteration, _ in keys) == 3


@pytest.mark.parametrize(
    "tool_args, message",
    [
        (
            ["--opts", "model.min_size=128", "solver.max_iter=4"],
            "refused model.min_size 96 -> 128: a resumed run keeps its network, training data, batch, seed",
        ),
        (["--dataset", "shapes"], "--resume continues a run with the config stored in its checkpoint, so --dataset"),
    ],
    ids=["architecture", "recipe"],
)
def test_resume_refuses_to_change_the_run_in_one_line(run_copy, tool_args, message):
    before = folder_contents(run_copy)
    result = run_tool(resume_command(run_copy, *tool_args))
    assert_one_line_error(result, message)
    assert folder_contents(run_copy) == before


def test_a_new_run_in_a_run_folder_is_refused_until_overwrite(shapes_root, run_copy):
    (run_copy / "notes.txt").write_text("not the run's")
    before = folder_contents(run_copy)
    command = train_command(shapes_root, run_copy, "solver.max_iter=1", "solver.steps=[]")
    result = run_tool(command)
    assert_one_line_error(result, f"{run_copy} holds a training run", "--resume", "--overwrite")
    assert folder_contents(run_copy) == before

    result = run_tool([*command[:2], "--overwrite", *command[2:]])
    assert result.returncode == 0, result.stderr
    assert f"--overwrite: deleted the earlier run's files in {run_copy}" in result.stdout
    assert (run_copy / "notes.txt").read_text() == "not the run's"
    assert not (run_copy / "model_0000001.pth").exists()
    assert torch.load(run_copy / "model_final.pth", weights_only=True)["iteration"] == 1
    assert {json.loads(line)["iteration"] for line in (run_copy / "metrics.json").read_text().splitlines()} == {1}


@pytest.fixture(scope="module")
def straight_run(shapes_root, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("straight")
    # In a process like the runs it is compared with: one thread, one reduction order.
    result = run_tool(train_command(shapes_root, output, *ACCUMULATING))
    assert result.returncode == 0, result.stderr
    return output


def training_image(root: Path, micro_batch: int) -> Path:
    """The image the tiny config's training reads in ``micro_batch`` (0-based), read there first."""
    config = tiny_config(root, root, *ACCUMULATING)
    dataset = dataset_from_config(config.data, config.data.train_split, train=True)
    loader = build_train_loader(dataset, 1, num_workers=0, seed=config.seed)
    stream = [index for keys in itertools.islice(loader.batch_sampler, micro_batch + 1) for index, _ in keys]
    assert stream[micro_batch] not in stream[:micro_batch]
    return Path(dataset.get_annotation(stream[micro_batch])["file_name"])


@pytest.mark.parametrize("workers", [0, 2])
def test_an_unreadable_image_saves_the_state_before_it_and_resume_is_exact(
    shapes_root, straight_run, tmp_path, workers
):
    root = Path(shutil.copytree(shapes_root, tmp_path / "data"))
    image = training_image(root, micro_batch=5)  # iteration 3's second batch: after a forward pass to undo
    good = image.read_bytes()
    image.write_bytes(good[:200])  # a truncated JPEG: passes the up-front checks, fails to decode
    output = tmp_path / "run"
    result = run_tool(train_command(root, output, *ACCUMULATING, f"data.num_workers={workers}"))

    checkpoint = output / "model_0000002.pth"
    assert_one_line_error(
        result,
        f"{image}: not a decodable image",
        f"stopped before iteration 3, saved the state after iteration 2 to {checkpoint}",
        "then continue with --resume",
    )
    assert (output / "log.txt").read_text().splitlines()[-1].endswith(result.stderr.strip())
    assert torch.load(checkpoint, weights_only=True)["iteration"] == 2

    image.write_bytes(good)
    result = run_tool(resume_command(output))
    assert result.returncode == 0, result.stderr
    assert_same_tensors(model_tensors(output / "model_final.pth"), model_tensors(straight_run / "model_final.pth"))


def test_an_evaluation_that_fails_at_the_last_iteration_keeps_the_training_and_resume_finishes_it(
    shapes_root, straight_run, tmp_path
):
    root = Path(shutil.copytree(shapes_root, tmp_path / "data"))
    config = tiny_config(root, tmp_path)
    image = Path(dataset_from_config(config.data, config.data.test_split, train=False).get_annotation(0)["file_name"])
    good = image.read_bytes()
    image.write_bytes(good[:200])  # passes the up-front checks, fails to decode in the evaluation after iteration 4
    output = tmp_path / "run"
    result = run_tool(train_command(root, output, *ACCUMULATING))

    checkpoint = output / "model_0000004.pth"
    assert_one_line_error(
        result,
        f"EvalHook failed after iteration 4: {image}: not a decodable image",
        f"saved the state after iteration 4 to {checkpoint}",
        "continue with --resume, which first runs what iteration 4 had left (EvalHook, BestCheckpointer, "
        "PeriodicCheckpointer)",
    )
    assert (output / "log.txt").read_text().splitlines()[-1].endswith(result.stderr.strip())
    assert not (output / "model_final.pth").exists()
    assert_same_tensors(model_tensors(checkpoint), model_tensors(straight_run / "model_final.pth"))

    image.write_bytes(good)
    result = run_tool(resume_command(output))
    assert result.returncode == 0, result.stderr
    assert "finishing the work after iteration 4 that had not finished" in result.stdout
    final, best = (torch.load(output / name, weights_only=True) for name in ("model_final.pth", "model_best.pth"))
    assert_same_tensors(final["model"], model_tensors(straight_run / "model_final.pth"))
    assert final["iteration"] == 4 and final["unfinished_hooks"] == []
    assert final["best"] == best["best"] == torch.load(straight_run / "model_final.pth", weights_only=True)["best"]
    evaluations = [line for line in (output / "metrics.json").read_text().splitlines() if "eval/bbox/AP" in line]
    assert len(evaluations) == 1 and json.loads(evaluations[0])["iteration"] == 4
