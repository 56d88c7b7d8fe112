"""tools/train_det.py as a user meets it: one-line errors, and a clean stop on SIGTERM."""

import os
import signal
import subprocess
import time

import pytest
import torch
from training_helpers import REPO, TRAIN_TOOL, run_tool, train_command


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_unknown_config_key_is_refused(tmp_path):
    result = run_tool(
        [
            os.sys.executable,
            str(TRAIN_TOOL),
            "--dataset",
            "shapes",
            "--output-dir",
            str(tmp_path),
            "--opts",
            "solver.base_lrr=0.1",
        ]
    )
    assert_one_line_error(result, "unknown key solver.base_lrr", "did you mean solver.base_lr")


def test_coco_without_data_is_one_readable_line(tmp_path):
    result = run_tool(
        [
            os.sys.executable,
            str(TRAIN_TOOL),
            "--backbone",
            "resnet101",
            "--dataset",
            "coco",
            "--output-dir",
            str(tmp_path),
        ],
        env={"DETECTION_DATASETS": str(tmp_path / "nothing here")},
    )
    assert_one_line_error(result, "coco", "--dataset shapes")


def test_missing_checkpoint_is_one_readable_line(shapes_root, tmp_path):
    missing = tmp_path / "no_such_checkpoint.pth"
    result = run_tool(train_command(shapes_root, tmp_path / "out", tool_args=["--weights", str(missing)]))
    assert_one_line_error(result, "checkpoint not found", str(missing))
    result = run_tool([os.sys.executable, str(TRAIN_TOOL), "--resume", str(missing)])
    assert_one_line_error(result, "checkpoint not found", str(missing))


@pytest.mark.slow
@pytest.mark.parametrize(
    "signal_number, whole_group",
    [(signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["ctrl-c-to-process-group", "sigterm-to-main-process"],
)
def test_signal_saves_a_checkpoint_and_exits_cleanly(shapes_root, tmp_path, signal_number, whole_group):
    output = tmp_path / "out"
    command = train_command(shapes_root, output, "solver.max_iter=1000", "solver.steps=[500]", "data.num_workers=1")
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while "iter 2/1000" not in _read(output / "log.txt"):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.2)
        # Ctrl+C reaches every process of the foreground group, data loader worker included.
        (os.killpg if whole_group else os.kill)(process.pid, signal_number)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal_number, stderr
    assert "Traceback" not in stderr
    name = (output / "last_checkpoint").read_text().strip()
    assert "stopped by a signal after iteration" in stdout and name in stdout
    checkpoint = torch.load(output / name, weights_only=True)
    assert 2 <= checkpoint["iteration"] < 1000 and name == f"model_{checkpoint['iteration']:07d}.pth"


def _read(path) -> str:
    return path.read_text() if path.exists() else ""
