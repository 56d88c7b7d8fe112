"""Distributed data parallel on CPU: torchrun with 2 processes (gloo) keeps the replicas identical, and stops
together on an image that one of them cannot read."""

import itertools
import shutil
from pathlib import Path

import pytest
import torch
from training_helpers import TRAIN_TOOL, model_tensors, run_tool, tiny_config, torchrun_command

from detection.data.build import dataset_from_config
from detection.data.samplers import TrainingSampler

pytestmark = pytest.mark.slow

# Runs tools/train_det.py, then each rank saves the parameters it ended with.
DUMPING_LAUNCHER = f"""
import os, runpy
import torch
from detection.engine import trainer

train = trainer.Trainer.train

def train_and_dump(self, data, state):
    code = train(self, data, state)
    path = os.path.join(os.environ["DUMP_DIR"], "rank" + os.environ["RANK"] + ".pt")
    torch.save(dict(self.module.named_parameters()), path)
    return code

trainer.Trainer.train = train_and_dump
runpy.run_path({str(TRAIN_TOOL)!r}, run_name="__main__")
"""


def test_two_processes_end_with_identical_weights(shapes_root, tmp_path):
    launcher = tmp_path / "launcher.py"
    launcher.write_text(DUMPING_LAUNCHER)
    output = tmp_path / "out"
    command = torchrun_command(2, launcher, shapes_root, output, "solver.max_iter=3", "solver.images_per_batch=2")
    result = run_tool(command, env={"DUMP_DIR": str(tmp_path)}, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 process(es) on cpu" in result.stdout

    rank0, rank1 = (torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1))
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    final = model_tensors(output / "model_final.pth")
    assert all(torch.equal(final[name], rank0[name]) for name in rank0)
    checkpoint = torch.load(output / "model_final.pth", weights_only=True)
    assert checkpoint["iteration"] == 3 and len(checkpoint["rng_by_rank"]) == 2


def test_an_image_one_process_cannot_read_stops_every_process_with_a_checkpoint(shapes_root, tmp_path):
    root = Path(shutil.copytree(shapes_root, tmp_path / "data"))
    config = tiny_config(root, tmp_path)
    dataset = dataset_from_config(config.data, config.data.train_split, train=True)
    # Rank 1's second image (one image per process and iteration; one aspect-ratio group).
    index = list(itertools.islice(TrainingSampler(len(dataset), seed=config.seed, rank=1, world_size=2), 2))[1]
    image = Path(dataset.get_annotation(index)["file_name"])
    image.write_bytes(image.read_bytes()[:200])
    output = tmp_path / "out"
    command = torchrun_command(2, TRAIN_TOOL, root, output, "solver.images_per_batch=2")
    result = run_tool(command, timeout=600)
    assert result.returncode != 0
    checkpoint = output / "model_0000001.pth"
    last_line = (output / "log.txt").read_text().splitlines()[-1]  # rank 0's log, about rank 1's image
    assert f"error: {image}: not a decodable image" in last_line and f"to {checkpoint}: repair" in last_line
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["iteration"] == 1 and len(saved["rng_by_rank"]) == 2
