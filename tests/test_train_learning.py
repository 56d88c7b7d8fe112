"""End to end: a small backbone learns the generated shapes, and TensorBoard shows the run."""

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from detection.config import load_config
from detection.data import ShapesOptions, generate_shapes_dataset
from detection.engine import run
from training_helpers import REPO

pytestmark = pytest.mark.slow

LEARNING_DATASET = ShapesOptions(num_train=300, num_val=50, seed=1, image_size=(256, 320))
# configs/shapes/base.yaml (the quickstart recipe) on a smaller dataset, for fewer iterations.
LEARNING_OVERRIDES = ("solver.max_iter=400", "solver.steps=[300]", "test.eval_period=0", "test.vis_images=2", "log_period=20")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = generate_shapes_dataset(tmp_path_factory.mktemp("shapes_learning"), LEARNING_DATASET)
    output = tmp_path_factory.mktemp("learning_run")
    config = load_config(str(REPO / "configs" / "shapes" / "base.yaml"), [f"data.root={root}", f"output_dir={output}", *LEARNING_OVERRIDES])
    assert run(config) == 0
    return output


def final_evaluation(output: Path) -> dict:
    lines = [json.loads(line) for line in (output / "metrics.json").read_text().splitlines()]
    return [line for line in lines if "eval/bbox/AP50" in line][-1]


def test_resnet18_learns_the_shapes(trained_run):
    evaluation = final_evaluation(trained_run)
    assert evaluation["iteration"] == 400
    assert evaluation["eval/bbox/AP50"] >= 0.5


def test_tensorboard_has_losses_metrics_and_predictions(trained_run):
    events = EventAccumulator(str(trained_run), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    expected = {"loss/total", "loss/classifier", "loss/box_reg", "loss/objectness", "loss/rpn_box_reg", "lr", "grad_norm",
                "time/iteration", "time/data", "memory/max_rss_mb", "eval/bbox/AP", "eval/bbox/AP50"}  # fmt: skip
    assert expected <= scalars
    assert [event.step for event in events.Scalars("loss/total")] == list(range(20, 401, 20))
    ap50 = events.Scalars("eval/bbox/AP50")[-1]
    assert ap50.step == 400 and ap50.value == pytest.approx(final_evaluation(trained_run)["eval/bbox/AP50"])
    assert {"predictions/0", "predictions/1"} <= set(events.Tags()["images"])
    assert (trained_run / "model_final.pth").is_file() and (trained_run / "model_best.pth").is_file()
    assert (trained_run / "last_checkpoint").read_text().strip() == "model_final.pth"
