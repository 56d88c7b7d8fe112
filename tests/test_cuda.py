"""The CUDA paths: AMP training (fp16 with the gradient scaler, bf16), channels_last, a one-process NCCL run,
evaluation and inference in each precision, export of a CUDA model. Skipped without a GPU; run them all
(slow ones included) with ``python -m pytest -q -m cuda`` (docs/benchmarks.md has the command that also
makes the GPU table)."""

import json
import sys

import numpy as np
import pytest
import torch
from inference_helpers import TINY_MODEL, randomize_batchnorm
from torchvision.ops import box_iou
from training_helpers import REPO, TRAIN_TOOL, model_tensors, run_tool, tiny_config, torchrun_command

from detection import build_detector
from detection.checkpoint import load_checkpoint, load_detector
from detection.data import build_dataset
from detection.engine import RunOptions, run_training
from detection.inference.export import export_model
from detection.inference.predictor import Predictor
from detection.modeling.fusion import optimize_for_inference
from detection.precision import resolve_precision

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

TINY_OPTIONS = {key: value for key, value in TINY_MODEL.items() if key != "backbone"}


def assert_finite_float32_weights(tensors: dict[str, torch.Tensor]) -> None:
    for name, tensor in tensors.items():
        if tensor.is_floating_point():
            assert tensor.dtype == torch.float32 and torch.isfinite(tensor).all(), name


@pytest.mark.slow
@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_amp_training_on_cuda(shapes_root, tmp_path, amp):
    assert run_training(tiny_config(shapes_root, tmp_path, "device=cuda", f"solver.amp={amp}")) == 0
    log = (tmp_path / "log.txt").read_text()
    described = "fp16 autocast with a gradient scaler" if amp == "fp16" else "bf16 autocast"
    assert f"training in {described} on cuda" in log and "1 process(es) on cuda" in log
    checkpoint = load_checkpoint(tmp_path / "model_final.pth")
    assert checkpoint["iteration"] == 4
    assert_finite_float32_weights(checkpoint["model"])
    if amp == "fp16":  # the scaler's state is checkpointed, for an exact resume
        assert checkpoint["scaler"]["scale"] > 0
    else:
        assert checkpoint["scaler"] is None


@pytest.mark.slow
def test_channels_last_bf16_training_resumes_on_cuda(shapes_root, tmp_path):
    options = ("device=cuda", "solver.amp=bf16", "solver.channels_last=true")
    assert run_training(tiny_config(shapes_root, tmp_path, *options, "solver.max_iter=3")) == 0
    assert run_training(tiny_config(shapes_root, tmp_path, *options), RunOptions(resume="auto")) == 0
    assert load_checkpoint(tmp_path / "model_final.pth")["iteration"] == 4
    assert_finite_float32_weights(model_tensors(tmp_path / "model_final.pth"))


@pytest.mark.slow
def test_one_process_nccl_run(shapes_root, tmp_path):
    """torchrun with one process on the GPU: the process group is NCCL's, and the object collectives that
    evaluation uses (gather, broadcast) work with it."""
    launcher = tmp_path / "launcher.py"
    launcher.write_text(
        f"""
import os, runpy
import torch.distributed as dist
from detection.engine import trainer

train = trainer.Trainer.train

def train_and_record_backend(self, data, state):
    code = train(self, data, state)
    with open(os.environ["BACKEND_FILE"], "w") as file:
        file.write(dist.get_backend())
    return code

trainer.Trainer.train = train_and_record_backend
runpy.run_path({str(TRAIN_TOOL)!r}, run_name="__main__")
"""
    )
    command = torchrun_command(1, launcher, shapes_root, tmp_path / "out", tool_args=["--device", "cuda"])
    result = run_tool(command, env={"BACKEND_FILE": str(tmp_path / "backend")}, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 process(es) on cuda" in result.stdout
    assert (tmp_path / "backend").read_text() == "nccl"
    metrics = json.loads((tmp_path / "out" / "inference" / "metrics.json").read_text())
    assert "bbox/AP" in metrics


@pytest.fixture(scope="module")
def trained_on_cuda(shapes_root, tmp_path_factory):
    """The tiny ResNet-18 C4 trained on the GPU until its top detections are confident."""
    output = tmp_path_factory.mktemp("trained_cuda")
    extra = ("device=cuda", "solver.max_iter=80", "solver.steps=[]", "solver.warmup_iters=5", "solver.base_lr=0.01")
    assert run_training(tiny_config(shapes_root, output, *extra)) == 0
    return output / "model_final.pth"


def val_images(shapes_root) -> list[np.ndarray]:
    dataset = build_dataset("shapes", "val", root=shapes_root, train=False)
    return [(dataset[i][0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy() for i in range(len(dataset))]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_low_precision_inference_on_cuda_gives_the_same_top_detections(
    trained_on_cuda, shapes_root, precision, channels_last
):
    loaded = load_detector(trained_on_cuda, device="cuda")
    images = val_images(shapes_root)
    expected = Predictor(loaded.model, "cuda").predict_arrays(images)
    model = optimize_for_inference(loaded.model, fold_bn=True, channels_last=channels_last)
    actual = Predictor(model, "cuda", precision=resolve_precision(precision, "cuda")).predict_arrays(images)
    for a, b in zip(expected, actual):
        assert b["boxes"].dtype == b["scores"].dtype == np.float32
        assert b["labels"][0] == a["labels"][0]
        assert box_iou(torch.from_numpy(a["boxes"][:1]), torch.from_numpy(b["boxes"][:1]))[0, 0] > 0.9


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_eval_and_infer_tools_on_cuda(trained_on_cuda, shapes_root, tmp_path, precision):
    common = ["--device", "cuda", "--precision", precision]
    evaluation = tmp_path / "eval"
    result = run_tool(
        [sys.executable, str(REPO / "tools" / "eval_det.py"), "--checkpoint", str(trained_on_cuda)]
        + ["--output-dir", str(evaluation), "--no-figures", *common]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"inference in {precision} on cuda" in result.stdout
    assert json.loads((evaluation / "evaluation.json").read_text())["precision"] == precision
    assert "bbox/AP" in json.loads((evaluation / "metrics.json").read_text())

    images = sorted((shapes_root / "coco" / "val").iterdir())[:2]
    result = run_tool(
        [sys.executable, str(REPO / "tools" / "infer.py"), "--checkpoint", str(trained_on_cuda), *map(str, images)]
        + ["--output-dir", str(tmp_path / "infer"), "--channels-last", *common]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    detections = json.loads((tmp_path / "infer" / "detections.json").read_text())
    assert detections["precision"] == precision and len(detections["images"]) == 2


@pytest.mark.parametrize("export_format", ["torchscript", "onnx"])
def test_export_of_a_cuda_model(tmp_path, export_format):
    if export_format == "onnx":
        pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = randomize_batchnorm(build_detector("resnet18", 3, **TINY_OPTIONS)).eval().cuda()
    path = tmp_path / ("model.pt" if export_format == "torchscript" else "model.onnx")
    check = export_model(optimize_for_inference(model), path, export_format, reference=model)
    assert check.startswith("checked: same detections") and path.is_file()
    assert next(model.parameters()).is_cuda  # the caller's model stays where it was
