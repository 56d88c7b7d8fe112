"""Nothing in a run is silently changed or lost: what a resume may change, a run folder refused without
--overwrite, what a torchrun restart continues, metrics.json and TensorBoard after a resume, and the error that
ends a run in log.txt."""

import dataclasses
import json
import time

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from training_helpers import folder_contents, tiny_config

from detection.checkpoint import save_checkpoint
from detection.config import Config, SolverConfig, config_to_dict
from detection.engine import RunOptions, run_training
from detection.engine.events import METRICS_FILE, EventWriter
from detection.engine.resume import restart_checkpoint, resume_changes
from detection.engine.run_folder import RunFolderError, claim_run_folder, write_run_config
from detection.errors import CheckpointError, ConfigError, UserError
from detection.logs import LOG_FILE


def changed(config: Config, **sections) -> Config:
    """``config`` with ``section={"key": value}`` or ``key=value`` changes."""
    replaced = {}
    for name, value in sections.items():
        section = getattr(config, name)
        replaced[name] = dataclasses.replace(section, **value) if isinstance(value, dict) else value
    return dataclasses.replace(config, **replaced)


STORED = Config(solver=SolverConfig(max_iter=20, steps=(10,), warmup_iters=5))


def test_a_resume_may_change_what_comes_after_the_saved_iteration():
    config = changed(
        STORED,
        solver={"max_iter": 800, "steps": (10, 600), "base_lr": 0.0005, "checkpoint_period": 100},
        model={"box_score_thresh": 0.1, "rpn_post_nms_top_n_test": 100},
        data={"num_workers": 8, "root": "/elsewhere"},
        test={"eval_period": 200},
        log_period=5,
        device="cpu",
    )
    changes = [str(change) for change in resume_changes(STORED, config, iteration=20, source="run/model.pth")]
    assert changes == [
        "model.rpn_post_nms_top_n_test 300 -> 100",
        "model.box_score_thresh 0.05 -> 0.1",
        "data.root null -> /elsewhere",
        "data.num_workers 2 -> 8",
        "solver.max_iter 20 -> 800",
        "solver.base_lr 0.001 -> 0.0005",
        "solver.steps [10] -> [10, 600]",
        "solver.checkpoint_period 5000 -> 100",
        "test.eval_period 0 -> 200",
        "device auto -> cpu",
        "log_period 20 -> 5",
    ]
    assert resume_changes(STORED, STORED, iteration=20, source="run/model.pth") == []


@pytest.mark.parametrize(
    "change, refused",
    [
        ({"model": {"min_size": 160}}, "model.min_size 600 -> 160"),
        ({"model": {"anchor_sizes": (32, 64)}}, "model.anchor_sizes [128, 256, 512] -> [32, 64]"),
        ({"model": {"box_batch_size_per_image": 512}}, "model.box_batch_size_per_image 128 -> 512"),
        ({"model": {"backbone_kwargs": {"norm": "gn"}}}, "model.backbone_kwargs.norm null -> gn"),
        ({"model": {"backbone": "resnet18"}}, "model.backbone resnet101 -> resnet18"),
        ({"data": {"dataset": "voc"}}, "data.dataset shapes -> voc"),
        ({"data": {"classes": ("a", "b")}}, 'data.classes null -> ["a", "b"]'),
        ({"data": {"aspect_ratio_grouping": False}}, "data.aspect_ratio_grouping true -> false"),
        ({"solver": {"images_per_batch": 16}}, "solver.images_per_batch 2 -> 16"),
        ({"solver": {"momentum": 0.8}}, "solver.momentum 0.9 -> 0.8"),
        ({"seed": 1}, "seed 0 -> 1"),
        ({"solver": {"steps": (15,)}}, "solver.steps taken by iteration 12: [10] -> [] (only later steps may change)"),
    ],
)
def test_a_resume_refuses_changes_that_make_another_run(change, refused):
    config = changed(STORED, **change)
    with pytest.raises(CheckpointError) as error:
        resume_changes(STORED, config, iteration=12, source="run/model_0000012.pth")
    message = str(error.value)
    assert message.startswith(f"--resume run/model_0000012.pth: refused {refused}: a resumed run keeps its network")
    assert message.endswith("start a new run from this model with --weights run/model_0000012.pth")


def test_a_changed_config_keeps_the_one_it_replaces(tmp_path):
    assert write_run_config(STORED, str(tmp_path)) is None
    assert write_run_config(STORED, str(tmp_path), resumed_at=20) is None  # unchanged: nothing kept
    longer = changed(STORED, solver={"max_iter": 800})
    assert write_run_config(longer, str(tmp_path), resumed_at=20) == "config.0000020.yaml"
    assert write_run_config(changed(STORED, solver={"max_iter": 900}), str(tmp_path), resumed_at=20) == (
        "config.0000020-2.yaml"
    )
    assert "max_iter: 20\n" in (tmp_path / "config.0000020.yaml").read_text()
    assert "max_iter: 800\n" in (tmp_path / "config.0000020-2.yaml").read_text()
    assert "max_iter: 900\n" in (tmp_path / "config.yaml").read_text()


def a_run_folder(folder):
    """A folder with a run's files and two that are not the run's."""
    folder.mkdir()
    for name in ("model_0000100.pth", "model_final.pth", "model_best.pth", "config.yaml", "config.0000050.yaml"):
        (folder / name).write_bytes(b"weights")
    (folder / "last_checkpoint").write_text("model_final.pth\n")
    (folder / METRICS_FILE).write_text('{"iteration": 100, "loss": 1.0}\n')
    (folder / LOG_FILE).write_text("log\n")
    (folder / "events.out.tfevents.1.host.2.0").write_bytes(b"events")
    (folder / "inference").mkdir()
    (folder / "inference" / "evaluation.json").write_text("{}")
    (folder / "notes.txt").write_text("mine")
    (folder / "eval_shapes_val").mkdir()
    return folder


def test_a_new_run_in_a_run_folder_is_refused_and_changes_nothing(shapes_root, tmp_path):
    folder = a_run_folder(tmp_path / "run")
    before = folder_contents(folder)
    with pytest.raises(RunFolderError) as error:
        run_training(tiny_config(shapes_root, folder))
    assert str(error.value) == (
        f"{folder} holds a training run (last_checkpoint, metrics.json, model_0000100.pth, model_best.pth and 1 "
        "more): continue it with --resume, give another --output-dir, or pass --overwrite to delete that run's "
        "files and start over"
    )
    with pytest.raises(RunFolderError, match="evaluate its checkpoints there with --eval-only --resume"):
        run_training(
            tiny_config(shapes_root, folder), RunOptions(weights=str(folder / "model_final.pth"), eval_only=True)
        )
    assert folder_contents(folder) == before


def test_overwrite_deletes_the_run_s_files_only(tmp_path):
    folder = a_run_folder(tmp_path / "run")
    removed = claim_run_folder(str(folder), overwrite=True)
    assert "model_final.pth" in removed and "inference" in removed and "notes.txt" not in removed
    assert sorted(path.name for path in folder.iterdir()) == ["eval_shapes_val", "notes.txt"]
    assert claim_run_folder(str(folder), overwrite=False) == []  # no run there now


def test_a_folder_with_a_failed_start_holds_no_run(tmp_path):
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    (tmp_path / LOG_FILE).write_text("error: ...\n")
    (tmp_path / METRICS_FILE).write_text("")
    assert claim_run_folder(str(tmp_path), overwrite=False) == []


def metrics_lines(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / METRICS_FILE).read_text().splitlines()]


def test_a_resume_drops_what_the_run_wrote_after_the_saved_iteration(tmp_path):
    writer = EventWriter(str(tmp_path))
    for iteration in range(1, 6):
        writer.write_scalars({"loss": float(iteration)}, iteration)
    writer.close()
    with open(tmp_path / METRICS_FILE, "a") as file:
        file.write('{"iteration": 6, "lo')  # cut by a crash
    time.sleep(1.1)  # event file names hold the time in seconds: keep them in order

    writer = EventWriter(str(tmp_path), resumed_at=3)
    assert writer.dropped == 3
    for iteration in (4, 5):
        writer.write_scalars({"loss": 10.0 + iteration}, iteration)
    writer.close()
    assert metrics_lines(tmp_path) == [
        {"iteration": i, "loss": loss} for i, loss in [(1, 1), (2, 2), (3, 3), (4, 14), (5, 15)]
    ]
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [(event.step, event.value) for event in events.Scalars("loss")] == [(1, 1), (2, 2), (3, 3), (4, 14), (5, 15)]


def test_an_evaluation_again_replaces_the_one_of_its_iteration_when_written(tmp_path):
    writer = EventWriter(str(tmp_path))
    writer.write_scalars({"loss": 1.0}, 2)
    writer.write_scalars({"eval/AP": 0.5}, 2)
    writer.close()
    EventWriter(str(tmp_path), rewriting_at=2).close()  # an evaluation that failed: the earlier one stays
    assert metrics_lines(tmp_path) == [{"iteration": 2, "loss": 1.0}, {"iteration": 2, "eval/AP": 0.5}]
    writer = EventWriter(str(tmp_path), rewriting_at=2)
    writer.write_scalars({"eval/AP": 0.7}, 2)
    writer.close()
    assert metrics_lines(tmp_path) == [{"iteration": 2, "loss": 1.0}, {"iteration": 2, "eval/AP": 0.7}]


def test_an_error_that_ends_a_start_is_the_last_line_of_log_txt(tmp_path):
    missing = tmp_path / "no_coco_here"
    config = tiny_config(tmp_path, tmp_path / "run", "data.dataset=coco", f"data.root={missing}")
    with pytest.raises(UserError) as error:
        run_training(config)
    lines = (tmp_path / "run" / LOG_FILE).read_text().splitlines()
    assert lines and lines[-1].endswith(f"] error: {error.value}")


def test_a_start_refused_before_it_begins_writes_no_log(shapes_root, tmp_path):
    with pytest.raises(ConfigError, match="must be a multiple of"):
        run_training(tiny_config(shapes_root, tmp_path / "run", "solver.accumulate_grad_batches=3"))
    assert not (tmp_path / "run" / LOG_FILE).exists()
    with pytest.raises(CheckpointError, match="no checkpoint to resume"):
        run_training(tiny_config(shapes_root, tmp_path / "run"), RunOptions(resume="auto"))
    assert not (tmp_path / "run" / LOG_FILE).exists()


def save_run_checkpoint(folder, name: str, config: Config) -> str:
    """A checkpoint of ``config``'s run (its model does not matter here), made the newest."""
    save_checkpoint(folder / name, {"model": {}, "config": config_to_dict(config), "iteration": 2})
    (folder / "last_checkpoint").write_text(name + "\n")
    return str(folder / name)


def test_a_torchrun_restart_continues_its_own_run_s_newest_checkpoint_only(tmp_path):
    config = dataclasses.replace(STORED, output_dir=str(tmp_path))
    assert restart_checkpoint(config, resumed_from=None) is None  # an empty folder: a new run
    (tmp_path / METRICS_FILE).write_text('{"iteration": 1, "loss": 1.0}\n')
    write_run_config(config, str(tmp_path))
    assert restart_checkpoint(config, resumed_from=None) is None  # this run, killed before its first checkpoint

    newest = save_run_checkpoint(tmp_path, "model_0000002.pth", config)
    assert restart_checkpoint(config, resumed_from=None) == newest
    assert restart_checkpoint(config, resumed_from="older/model_0000001.pth") == newest  # saved since its --resume

    other = changed(config, seed=7)
    assert restart_checkpoint(other, resumed_from="older/model_0000001.pth") == "older/model_0000001.pth"
    with pytest.raises(RunFolderError, match=f"torchrun restarted this run's processes, but {tmp_path} holds another"):
        restart_checkpoint(other, resumed_from=None)
    (tmp_path / "last_checkpoint").unlink()
    (tmp_path / "model_0000002.pth").unlink()
    with pytest.raises(RunFolderError, match="config.yaml of another config"):
        restart_checkpoint(other, resumed_from=None)  # another run's metrics, no checkpoint
