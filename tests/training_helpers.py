"""What the training tests share: a tiny config on the tiny shapes dataset, running the tool, and reading a
run folder."""

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from detection.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]
TRAIN_TOOL = REPO / "tools" / "train_det.py"

# ResNet-18 C4 at the tiny dataset's 128x160 px with few proposals and RoIs: about a second per
# iteration of 2 images on a 2-core CPU.
TINY_OVERRIDES = (
    "model.backbone=resnet18",
    "model.weights=null",
    "model.backbone_kwargs={norm: bn}",  # BatchNorm statistics: state that resume and rollback must restore
    "model.min_size=128",
    "model.max_size=160",
    "model.anchor_sizes=[32,64]",
    "model.rpn_pre_nms_top_n_train=200",
    "model.rpn_post_nms_top_n_train=50",
    "model.rpn_pre_nms_top_n_test=100",
    "model.rpn_post_nms_top_n_test=10",
    "model.rpn_batch_size_per_image=64",
    "model.box_batch_size_per_image=8",
    "data.num_workers=0",
    "solver.images_per_batch=2",
    "solver.reference_batch_size=2",
    "solver.base_lr=0.005",
    "solver.warmup_iters=2",
    "solver.steps=[2]",
    "solver.max_iter=4",
    "solver.checkpoint_period=1000",
    "test.eval_period=0",
    "test.vis_images=1",
    "log_period=1",
)


def tiny_overrides(root: Path, output_dir: Path, *extra: str) -> list[str]:
    return [*TINY_OVERRIDES, f"data.root={root}", f"output_dir={output_dir}", *extra]


def tiny_config(root: Path, output_dir: Path, *extra: str) -> Config:
    return load_config(str(REPO / "configs" / "shapes" / "base.yaml"), tiny_overrides(root, output_dir, *extra))


def train_command(root: Path, output_dir: Path, *extra: str, tool_args: Sequence[str] = ()) -> list[str]:
    return [sys.executable, str(TRAIN_TOOL), *_tiny_training_arguments(root, output_dir, extra, tool_args)]


def torchrun_command(
    processes: int,
    script: Path,
    root: Path,
    output_dir: Path,
    *extra: str,
    tool_args: Sequence[str] = (),
    restarts: int = 0,
) -> list[str]:
    """``train_command`` under torchrun with ``processes`` local processes, started again up to ``restarts`` times
    when one fails; ``script`` runs the training tool (``TRAIN_TOOL`` or a launcher around it). ``--standalone``:
    a local rendezvous on a free port."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    torchrun += ["--max-restarts", str(restarts)]
    return [*torchrun, str(script), *_tiny_training_arguments(root, output_dir, extra, tool_args)]


def _tiny_training_arguments(root: Path, output_dir: Path, extra: Sequence[str], tool_args: Sequence[str]) -> list[str]:
    return ["--dataset", "shapes", *tool_args, "--opts", *tiny_overrides(root, output_dir, *extra)]


def run_tool(arguments: Sequence[str], env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs ``arguments`` from the repository root with one torch thread (the CPU is shared)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(list(arguments), cwd=REPO, env=environment, capture_output=True, text=True, timeout=timeout)


def model_tensors(checkpoint_path: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint_path, map_location="cpu", weights_only=True)["model"]


def folder_contents(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (relative path -> bytes): to show that a refused start changed nothing."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}
