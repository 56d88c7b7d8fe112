"""Distributed data parallel on CPU: torchrun with 2 processes (gloo) keeps the replicas identical, and stops
together on an image that one of them cannot read, in training or in the evaluation."""

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from training_helpers import REPO, TRAIN_TOOL, model_tensors, run_tool, tiny_config, torchrun_command

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


# Runs tools/train_det.py; in torchrun's first start, local rank 1 is killed (SIGKILL) after iteration KILL_AFTER,
# beside the temporary file of a checkpoint that a killed save would leave. Started again by torchrun, it is slow
# to come up: the race that made the restarted group connect to the killed process's address then always happens.
KILLING_LAUNCHER = f"""
import os, runpy, signal, time
from detection.engine import hooks

first_start = os.environ["TORCHELASTIC_RESTART_COUNT"] == "0"
if not first_start and os.environ["LOCAL_RANK"] == "1":
    time.sleep(3)
after_step = hooks.PeriodicCheckpointer.after_step

def after_step_then_die(self):
    after_step(self)
    if first_start and os.environ["LOCAL_RANK"] == "1" and self.trainer.iteration == int(os.environ["KILL_AFTER"]):
        half_written = os.path.join(self.trainer.checkpointer.output_dir, f".tmp-{{os.getpid()}}-killed.pth")
        with open(half_written, "wb") as file:
            file.write(b"half a checkpoint")
        os.kill(os.getpid(), signal.SIGKILL)

hooks.PeriodicCheckpointer.after_step = after_step_then_die
runpy.run_path({str(TRAIN_TOOL)!r}, run_name="__main__")
"""


def test_a_killed_worker_is_restarted_and_the_run_ends_as_an_uninterrupted_one(shapes_root, tmp_path):
    launcher = tmp_path / "launcher.py"
    launcher.write_text(KILLING_LAUNCHER)
    own = ("solver.max_iter=5", "solver.steps=[]", "solver.checkpoint_period=2", "solver.amp='off'")  # fp32: fast
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    result = run_tool(torchrun_command(2, TRAIN_TOOL, shapes_root, straight, *own), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    command = torchrun_command(2, launcher, shapes_root, killed, *own, restarts=1)
    result = run_tool(command, env={"KILL_AFTER": "3"}, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "local_rank: 1" in result.stderr and "exitcode: -9" in result.stderr  # torchrun saw the kill
    log = (killed / "log.txt").read_text()
    assert log.count("training from iteration 0 to 5") == 1
    assert f"torchrun restarted the processes: continuing from {killed / 'model_0000002.pth'}" in log
    assert "training from iteration 2 to 5" in log
    assert not list(killed.glob(".tmp-*"))  # the killed save's temporary, removed by the next save
    lines = [json.loads(line) for line in (killed / "metrics.json").read_text().splitlines()]
    assert [line["iteration"] for line in lines if "loss/total" in line] == [1, 2, 3, 4, 5]  # 3 once: the resumed

    final, expected = model_tensors(killed / "model_final.pth"), model_tensors(straight / "model_final.pth")
    assert final.keys() == expected.keys()
    assert all(torch.equal(final[name], expected[name]) for name in expected)


# One process of a group that torchrun started (again): joins it, then checks it with a reduction.
JOINING_PROCESS = """
import os, time
import torch, torch.distributed as dist
from detection.distributed import init_distributed
if os.environ["RANK"] == "1":
    time.sleep(2)  # the others look up its address before it has published one
init_distributed("cpu")
total = torch.ones(1)
dist.all_reduce(total)
print("sum", int(total.item()))
"""


def test_a_restarted_group_does_not_read_what_a_killed_one_left_in_torchrun_s_store():
    # torchrun's agent keeps one store for every start of its workers: a killed group's keys stay there, such as
    # gloo's address of each rank (the names of torch 2.14); here a killed rank 1's, which a restart reads first.
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    store.set("default_pg/0//cpu//0/1", b"the address of a killed process")
    environment = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TORCHELASTIC_USE_AGENT_STORE": "True",
        "TORCHELASTIC_RESTART_COUNT": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(store.port),
        "WORLD_SIZE": "2",
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", JOINING_PROCESS],
            env={**environment, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    try:
        outputs = [process.communicate(timeout=120)[0] for process in processes]
    finally:
        for process in processes:
            process.kill()
    assert [process.returncode for process in processes] == [0, 0], outputs
    assert all("sum 2" in output for output in outputs)


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


def test_an_evaluation_image_one_process_cannot_read_ends_every_process_with_the_iteration_saved(shapes_root, tmp_path):
    root = Path(shutil.copytree(shapes_root, tmp_path / "data"))
    config = tiny_config(root, tmp_path)
    test_set = dataset_from_config(config.data, config.data.test_split, train=False)
    image = Path(test_set.get_annotation(len(test_set) - 1)["file_name"])  # in rank 1's (the last) shard
    image.write_bytes(image.read_bytes()[:200])
    output = tmp_path / "out"
    command = torchrun_command(2, TRAIN_TOOL, root, output, "solver.max_iter=2", "solver.steps=[]")
    result = run_tool(command, timeout=600)
    assert result.returncode != 0
    checkpoint = output / "model_0000002.pth"
    last_line = (output / "log.txt").read_text().splitlines()[-1]  # rank 0's log, about rank 1's image
    assert f"EvalHook failed after iteration 2: on process 1: {image}: not a decodable image" in last_line
    assert f"saved the state after iteration 2 to {checkpoint}" in last_line
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["iteration"] == 2 and saved["unfinished_hooks"] == [
        "EvalHook",
        "BestCheckpointer",
        "PeriodicCheckpointer",
    ]
