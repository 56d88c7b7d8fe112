"""bfloat16 inference and training on CPU: what --precision and solver.amp resolve to, where the detector
keeps float32 under autocast, and that a trained model detects the same in bf16 as in float32."""

import json
import logging
import sys

import numpy as np
import pytest
import torch
import torchvision
from inference_helpers import TINY_MODEL, randomize_batchnorm
from torchvision.models.detection import _utils as detection_utils
from torchvision.ops import boxes as box_ops
from training_helpers import REPO, model_tensors, run_tool, tiny_config

from backbones.freezing import FrozenBatchNorm2d
from detection import build_detector
from detection import precision as precision_module
from detection.checkpoint import load_detector
from detection.config import load_config
from detection.data import build_dataset
from detection.engine import RunOptions, run_training
from detection.engine.hooks import EvalHook
from detection.engine.precision import Precision
from detection.errors import ConfigError, UserError
from detection.inference.predictor import Predictor
from detection.modeling.poolers import SingleLevelRoIAlign
from detection.precision import InferencePrecision, resolve_precision

TINY_OPTIONS = {key: value for key, value in TINY_MODEL.items() if key != "backbone"}
BF16_CPU = InferencePrecision("bf16", "cpu", "requested")


@pytest.fixture
def native_cpu_bf16(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_bf16_flags", lambda: ("avx512_bf16",))


@pytest.fixture
def no_cpu_bf16(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_bf16_flags", lambda: ())


def test_auto_is_bf16_where_the_cpu_has_bfloat16_instructions(native_cpu_bf16):
    resolved = resolve_precision("auto", "cpu")
    assert (resolved.name, resolved.dtype) == ("bf16", torch.bfloat16)
    assert resolved.describe() == "bf16 on cpu (auto: the CPU has avx512_bf16)"
    assert resolve_precision("fp32", "cpu").describe() == "fp32 on cpu (requested)"


def test_auto_is_fp32_without_them_and_bf16_is_said_to_be_emulated(no_cpu_bf16):
    assert resolve_precision("auto", "cpu").describe() == "fp32 on cpu (auto: no native bfloat16 here)"
    assert "emulated" in resolve_precision("bf16", "cpu").reason


@pytest.mark.parametrize(
    "requested, message",
    [("fp16", "--precision fp16 needs a CUDA device; on CPU use bf16 or fp32"), ("fp8", "unknown precision 'fp8'")],
)
def test_impossible_precisions_are_user_errors(requested, message):
    with pytest.raises(UserError, match=message):
        resolve_precision(requested, "cpu")


def test_test_precision_is_a_validated_config_key(tmp_path):
    assert load_config().test.precision == "auto"
    assert load_config(overrides=["test.precision=bf16"]).test.precision == "bf16"
    with pytest.raises(ConfigError, match="test.precision"):
        load_config(overrides=["test.precision=fp8"])


def test_training_evaluation_refuses_fp16_on_cpu_before_training(tmp_path):
    config = load_config(overrides=["test.precision=fp16", f"output_dir={tmp_path}"])
    with pytest.raises(UserError, match="test.precision fp16 needs a CUDA device"):
        EvalHook(dataset=None, config=config, device=torch.device("cpu"), writer=None)


def test_training_precision_on_cpu(native_cpu_bf16, caplog):
    bf16 = Precision("bf16", torch.device("cpu"), logging.getLogger("test"))
    assert bf16.dtype is torch.bfloat16 and not bf16.scales_gradients
    assert bf16.describe() == "bf16 autocast on cpu"
    with bf16.autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") is torch.bfloat16
    fp16 = Precision("fp16", torch.device("cpu"), logging.getLogger("test"))
    assert fp16.dtype is None and fp16.describe() == "float32 on cpu"
    assert "solver.amp=fp16 needs CUDA" in caplog.text


def test_under_bf16_autocast_the_box_arithmetic_stays_float32(monkeypatch):
    """The trunk and the per-RoI head run in bfloat16; box decoding, NMS and the returned boxes and scores
    get float32."""
    torch.manual_seed(0)
    model = randomize_batchnorm(build_detector("resnet18", 3, **TINY_OPTIONS)).eval()
    seen: dict[str, set] = {"decode": set(), "nms": set(), "trunk": set(), "head": set()}
    decode, batched_nms = detection_utils.BoxCoder.decode, box_ops.batched_nms

    def recording_decode(self, rel_codes, boxes):
        seen["decode"].update({rel_codes.dtype, *(b.dtype for b in boxes)})
        return decode(self, rel_codes, boxes)

    def recording_nms(boxes, scores, idxs, iou_threshold):
        seen["nms"].update({boxes.dtype, scores.dtype})
        return batched_nms(boxes, scores, idxs, iou_threshold)

    monkeypatch.setattr(detection_utils.BoxCoder, "decode", recording_decode)
    monkeypatch.setattr(box_ops, "batched_nms", recording_nms)
    model.backbone.register_forward_hook(lambda module, inputs, output: seen["trunk"].add(output.dtype))
    model.roi_heads.box_head.register_forward_hook(lambda module, inputs, output: seen["head"].add(output.dtype))
    with torch.inference_mode(), BF16_CPU.autocast():
        (output,) = model([torch.rand(3, 70, 110)])
    assert seen == {
        "decode": {torch.float32},
        "nms": {torch.float32},
        "trunk": {torch.bfloat16},
        "head": {torch.bfloat16},
    }
    assert len(output["boxes"]) > 0
    assert output["boxes"].dtype == output["scores"].dtype == torch.float32


def test_bf16_roi_align_samples_at_float32_coordinates():
    """bfloat16 inference pools by matrix products (roi_align_by_matmul) with float32 sampling points and
    weights: within a few bfloat16 roundings of the exact pooling of the same features, channels_last for the
    head. Training (features that need a gradient) keeps torchvision's float32 kernel, whose result is cast
    once. bfloat16 box coordinates near 600 px move in steps of 4 px, which this tolerance would catch."""
    generator = torch.Generator().manual_seed(0)
    features = torch.rand(1, 8, 40, 60, generator=generator).to(torch.bfloat16)
    boxes = torch.tensor([[101.3, 203.7, 257.1, 389.9], [17.2, 33.3, 410.6, 601.4], [601.7, 402.3, 655.9, 447.1]])
    spec = {"output_size": 7, "spatial_scale": 1 / 16, "sampling_ratio": 0, "aligned": True}
    exact = torchvision.ops.roi_align(features.double(), [boxes.double()], **spec)
    pooler = SingleLevelRoIAlign(**spec)
    with torch.inference_mode(), BF16_CPU.autocast():
        pooled = pooler({"0": features}, [boxes], [(640, 960)])
        pooled_channels_last = pooler({"0": features.contiguous(memory_format=torch.channels_last)}, [boxes], [])
    for result in (pooled, pooled_channels_last):
        assert result.dtype == torch.bfloat16 and result.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(result.double(), exact, rtol=3 * 2**-8, atol=0)
    bf16_coordinates = torchvision.ops.roi_align(features.double(), [boxes.bfloat16().double()], **spec)
    assert not torch.allclose(bf16_coordinates, exact, rtol=3 * 2**-8, atol=0)

    trainable = features.clone().requires_grad_()
    with BF16_CPU.autocast():
        pooled_for_training = pooler({"0": trainable}, [boxes], [])
    in_float32 = torchvision.ops.roi_align(features.float(), [boxes], **spec).to(torch.bfloat16)
    torch.testing.assert_close(pooled_for_training, in_float32, rtol=0, atol=0)
    assert pooled_for_training.grad_fn is not None


@pytest.mark.parametrize("requires_grad", [False, True], ids=["fused", "affine"])
def test_frozen_batchnorm_keeps_the_autocast_dtype_and_float32_numbers(requires_grad):
    """Fine-tuning trains through frozen BatchNorm: under autocast its output stays bfloat16 (torchvision's
    would be float32, which doubles the activations' memory and slows a bf16 training step)."""
    frozen, reference = FrozenBatchNorm2d(8), torchvision.ops.FrozenBatchNorm2d(8)
    randomize_batchnorm(frozen)
    reference.load_state_dict(frozen.state_dict())
    x = torch.randn(2, 8, 5, 6, requires_grad=requires_grad)
    torch.testing.assert_close(frozen(x), reference(x), rtol=1e-6, atol=1e-6)
    with BF16_CPU.autocast():
        assert frozen(x.to(torch.bfloat16)).dtype == torch.bfloat16


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return box_ops.box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()


@pytest.fixture(scope="module")
def trained_tiny_model(shapes_root, tmp_path_factory):
    """The tiny ResNet-18 C4 trained for 160 iterations on the tiny shapes: confident on the val images.

    GroupNorm and 160 iterations: with BatchNorm over 2 images, or 80 iterations, whether the model ends up
    confident depends on the seed and on the number of threads; this recipe gave 5 to 12 confident boxes over
    seeds 0-3 and 1 or 2 threads.
    """
    output = tmp_path_factory.mktemp("trained_tiny")
    config = tiny_config(
        shapes_root,
        output,
        "model.backbone_kwargs={norm: gn}",
        "solver.max_iter=160",
        "solver.steps=[]",
        "solver.warmup_iters=5",
        "solver.base_lr=0.01",
    )
    assert run_training(config) == 0
    return output / "model_final.pth"


@pytest.mark.slow
def test_bf16_inference_gives_the_same_top_detections_as_float32(trained_tiny_model, shapes_root):
    model = load_detector(trained_tiny_model).model
    dataset = build_dataset("shapes", "val", root=shapes_root, train=False)
    images = [(dataset[i][0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy() for i in range(len(dataset))]
    float32 = Predictor(model).predict_arrays(images)
    bfloat16 = Predictor(model, precision=BF16_CPU).predict_arrays(images)
    confident = 0
    for expected, actual in zip(float32, bfloat16):
        assert actual["boxes"].dtype == actual["scores"].dtype == np.float32
        assert actual["labels"][0] == expected["labels"][0]
        assert box_iou(actual["boxes"][:1], expected["boxes"][:1])[0, 0] > 0.9
        for box, label, score in zip(expected["boxes"], expected["labels"], expected["scores"]):
            if score < 0.5:
                break
            confident += 1
            same_label = actual["labels"] == label
            assert box_iou(box[None], actual["boxes"][same_label]).max() > 0.9
            assert np.abs(actual["scores"][same_label] - score).min() < 0.02
    assert confident >= 4  # the model is trained enough for the comparison to mean something


@pytest.mark.slow
def test_eval_tool_reports_the_precision_it_ran_in(trained_tiny_model, tmp_path):
    aps = {}
    for precision in ("fp32", "bf16"):
        output = tmp_path / precision
        result = run_tool(
            [
                sys.executable,
                str(REPO / "tools" / "eval_det.py"),
                "--checkpoint",
                str(trained_tiny_model),
                "--output-dir",
                str(output),
                "--no-figures",
                "--precision",
                precision,
            ]
        )
        assert result.returncode == 0, result.stderr
        assert f"inference in {precision} on cpu (requested" in result.stdout
        assert json.loads((output / "evaluation.json").read_text())["precision"] == precision
        aps[precision] = json.loads((output / "metrics.json").read_text())["bbox/AP"]
    assert aps["bf16"] == pytest.approx(aps["fp32"], abs=0.02)  # the AP effect on a real model: docs/benchmarks.md


@pytest.mark.slow
def test_bf16_training_on_cpu_resumes_exactly(shapes_root, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert run_training(tiny_config(shapes_root, straight, "solver.max_iter=4", "solver.amp=bf16")) == 0
    assert "training in bf16 autocast on cpu" in (straight / "log.txt").read_text()
    assert run_training(tiny_config(shapes_root, split, "solver.max_iter=3", "solver.amp=bf16")) == 0
    halfway = model_tensors(split / "model_final.pth")
    resumed_config = tiny_config(shapes_root, split, "solver.max_iter=4", "solver.amp=bf16")
    assert run_training(resumed_config, RunOptions(resume="auto")) == 0

    expected, resumed = model_tensors(straight / "model_final.pth"), model_tensors(split / "model_final.pth")
    assert expected.keys() == resumed.keys()
    for key in expected:
        assert expected[key].dtype == resumed[key].dtype  # the weights stay float32
        torch.testing.assert_close(resumed[key], expected[key], rtol=0, atol=1e-6, msg=key)
    # The forward pass did run in bfloat16: the same iterations in float32 end elsewhere.
    assert run_training(tiny_config(shapes_root, tmp_path / "fp32", "solver.max_iter=3")) == 0
    float32 = model_tensors(tmp_path / "fp32" / "model_final.pth")
    key = "roi_heads.box_predictor.cls_score.weight"
    assert not torch.equal(float32[key], halfway[key])
    torch.testing.assert_close(float32[key], halfway[key], rtol=0.05, atol=1e-3)
