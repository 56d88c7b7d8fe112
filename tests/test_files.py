"""Files the tools leave: strict JSON, and no checkpoint temporaries of killed runs."""

import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import torch

from detection.checkpoint import FORMAT_VERSION, load_checkpoint, remove_stale_temporaries, save_checkpoint
from detection.engine.events import METRICS_FILE, EventWriter
from detection.files import json_text, write_json


def strict_loads(text: str):
    """``json.loads`` as a strict parser (JavaScript, jq, Go, ...) reads it: ``NaN`` and ``Infinity`` refused."""

    def refuse(constant: str):
        raise ValueError(f"not standard JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_are_written_as_null(tmp_path):
    metrics = {"bbox/AP": 0.5, "bbox/APs": math.nan, "nested": [np.float64("inf"), -math.inf, 1, "x"]}
    assert strict_loads(json_text(metrics)) == {"bbox/AP": 0.5, "bbox/APs": None, "nested": [None, None, 1, "x"]}
    write_json(tmp_path / "metrics.json", metrics)
    assert strict_loads((tmp_path / "metrics.json").read_text())["bbox/APs"] is None


def test_training_metrics_lines_are_strict_json(tmp_path):
    writer = EventWriter(str(tmp_path))
    writer.write_scalars({"eval/bbox/APs": math.nan, "loss": torch.tensor(0.25)}, iteration=7)
    writer.close()
    (line,) = (tmp_path / METRICS_FILE).read_text().splitlines()
    assert strict_loads(line) == {"iteration": 7, "eval/bbox/APs": None, "loss": 0.25}


def test_temporaries_of_killed_saves_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        an_hour_ago = time.time() - 3600
        stale = [tmp_path / f".tmp-{dead.pid}-k9x1.pth", tmp_path / ".tmp-a1b_c2d3.pth"]  # new name; older name
        kept = [
            tmp_path / f".tmp-{alive.pid}-w2r3.pth",  # its writer still runs
            tmp_path / f".tmp-{dead.pid}-new1.pth",  # changed after this process started: another machine's
            tmp_path / "model_0000100.pth",  # not a temporary
        ]
        for path in stale + kept:
            path.write_bytes(b"partial checkpoint")
        for path in stale + kept[:1] + kept[2:]:
            os.utime(path, (an_hour_ago, an_hour_ago))
        save_checkpoint(tmp_path / "model_final.pth", {"model": {}, "config": {}})
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            p.name for p in kept + [tmp_path / "model_final.pth"]
        )
        assert load_checkpoint(tmp_path / "model_final.pth")["format_version"] == FORMAT_VERSION
        assert remove_stale_temporaries(tmp_path) == []
    finally:
        alive.kill()
        alive.wait()


def test_a_save_names_its_temporary_after_its_process(tmp_path, monkeypatch):
    names = []
    real_mkstemp = tempfile.mkstemp

    def record(*args, **kwargs):
        handle, path = real_mkstemp(*args, **kwargs)
        names.append(os.path.basename(path))
        return handle, path

    monkeypatch.setattr(tempfile, "mkstemp", record)
    save_checkpoint(tmp_path / "model.pth", {"model": {}, "config": {}})
    (name,) = names
    assert name.startswith(f".tmp-{os.getpid()}-") and name.endswith(".pth")
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_checkpoints_follow_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "model.pth", {"model": {}, "config": {}})
    finally:
        os.umask(previous)
    assert (tmp_path / "model.pth").stat().st_mode & 0o777 == 0o666 & ~umask
