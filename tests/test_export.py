"""tools/export.py: the TorchScript and ONNX files give the eager model's detections, at any image size."""

from pathlib import Path

import numpy as np
import pytest
import torch
from inference_helpers import load_tool, write_tiny_checkpoint

import detection.inference.export
from detection.checkpoint import load_detector
from detection.inference.export import ExportError, export_model

export = load_tool("export")
# Neither is the traced example size (the model's 64/96 test scale): the image size is dynamic.
IMAGE_SIZES = [(80, 120), (100, 70)]


# torchvision's input convention, and the MSRA/detectron2 one (channels reordered and scaled in the model).
PIXEL_CONVENTIONS = {
    "rgb01": {},
    "msra": {
        "channel_order": "BGR",
        "pixel_scale": 255,
        "image_mean": [103.53, 116.28, 123.675],
        "image_std": [1, 1, 1],
    },
}


@pytest.fixture(scope="module", params=sorted(PIXEL_CONVENTIONS))
def checkpoint(tmp_path_factory: pytest.TempPathFactory, request) -> Path:
    folder = tmp_path_factory.mktemp("checkpoint")
    return write_tiny_checkpoint(folder / "model.pth", seed=1, **PIXEL_CONVENTIONS[request.param])


def eager_detections(checkpoint: Path, image: torch.Tensor) -> dict[str, np.ndarray]:
    with torch.inference_mode():
        output = load_detector(checkpoint).model([image])[0]
    return {key: value.numpy() for key, value in output.items()}


def assert_same_detections(
    expected: dict[str, np.ndarray], boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray
) -> None:
    assert len(expected["boxes"]) > 0
    np.testing.assert_array_equal(labels, expected["labels"])
    np.testing.assert_allclose(boxes, expected["boxes"], atol=1e-3, rtol=1e-4)
    np.testing.assert_allclose(scores, expected["scores"], atol=1e-5, rtol=1e-4)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_round_trip(tmp_path, checkpoint, capsys):
    output = tmp_path / "model.pt"
    assert export.main(["--checkpoint", str(checkpoint), "--format", "torchscript", "--output", str(output)]) == 0
    out = capsys.readouterr().out
    assert "checked: same detections as the PyTorch model on 2 images (torch.jit.load)" in out
    assert f"load it with: import torch, torchvision; model = torch.jit.load('{output}')" in out
    scripted = torch.jit.load(str(output))
    for height, width in IMAGE_SIZES:
        image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(height))
        with torch.inference_mode():
            _, detections = scripted([image])
        assert_same_detections(
            eager_detections(checkpoint, image), *(detections[0][key].numpy() for key in ("boxes", "labels", "scores"))
        )


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning")
def test_onnx_round_trip(tmp_path, checkpoint):
    onnxruntime = pytest.importorskip("onnxruntime")
    output = tmp_path / "model.onnx"
    assert export.main(["--checkpoint", str(checkpoint), "--format", "onnx", "--output", str(output)]) == 0
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    for height, width in IMAGE_SIZES:
        image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(height))
        boxes, labels, scores = session.run(["boxes", "labels", "scores"], {"image": image.numpy()})
        assert_same_detections(eager_detections(checkpoint, image), boxes, labels, scores)


@pytest.mark.parametrize(
    "opset, message",
    [
        (11, r"--opset 11: ONNX opset 16 or later is needed for RoIAlign with aligned=True \(the C4 default\)"),
        (99, "--opset 99: this torch .* exports ONNX opsets 16 to \\d+$"),
    ],
)
def test_an_opset_that_cannot_express_the_model_is_refused(tmp_path, checkpoint, opset, message):
    output = tmp_path / "model.onnx"
    argv = ["--checkpoint", str(checkpoint), "--format", "onnx", "--output", str(output), "--opset", str(opset)]
    with pytest.raises(ExportError, match=message) as info:
        export.main(argv)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_an_onnx_file_with_other_detections_is_not_kept(tmp_path, checkpoint, monkeypatch):
    pytest.importorskip("onnxruntime")
    # Opset 11 exports RoIAlign without aligned=True: the file runs, with boxes half a feature pixel off.
    monkeypatch.setattr(detection.inference.export, "check_onnx_opset", lambda model, opset: None)
    output = tmp_path / "model.onnx"
    argv = ["--checkpoint", str(checkpoint), "--format", "onnx", "--output", str(output), "--opset", "11"]
    with pytest.raises(ExportError, match=r"model.onnx: the exported model's detections differ .*\(\d+x\d+ image: "):
        export.main(argv)
    assert not output.exists() and (tmp_path / "model.onnx.mismatch").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx.mismatch"]  # no temporary left


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_a_torchscript_file_is_checked_against_the_model_it_must_reproduce(tmp_path, checkpoint):
    model = load_detector(checkpoint).model
    other = load_detector(write_tiny_checkpoint(tmp_path / "other.pth", seed=2)).model
    output = tmp_path / "model.pt"
    assert export_model(model, output, "torchscript").startswith("checked: same detections")
    output.unlink()
    with pytest.raises(ExportError, match="detections differ") as info:
        export_model(model, output, "torchscript", reference=other)
    assert f"kept as {output}.mismatch for inspection" in str(info.value)
    assert not output.exists() and Path(f"{output}.mismatch").is_file()


@pytest.fixture(scope="module")
def detectron2_resize_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny detector with detectron2's pixels and resize (the config of converted detectron2 models)."""
    folder = tmp_path_factory.mktemp("detectron2_resize")
    return write_tiny_checkpoint(folder / "model.pth", seed=1, resize="detectron2", **PIXEL_CONVENTIONS["msra"])


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_keeps_detectron2s_resize(tmp_path, detectron2_resize_checkpoint):
    output = tmp_path / "model.pt"
    argv = ["--checkpoint", str(detectron2_resize_checkpoint), "--format", "torchscript", "--output", str(output)]
    assert export.main(argv) == 0
    scripted = torch.jit.load(str(output))
    for height, width in IMAGE_SIZES:  # both resized to the 64 / 96 test scale, with PIL's pixels
        pixels = torch.randint(0, 256, (3, height, width), generator=torch.Generator().manual_seed(width))
        image = pixels.float() / 255.0
        with torch.inference_mode():
            _, detections = scripted([image])
        expected = eager_detections(detectron2_resize_checkpoint, image)
        assert_same_detections(expected, *(detections[0][key].numpy() for key in ("boxes", "labels", "scores")))
        with torch.inference_mode():
            resized = scripted.transform([image])[0].tensors
            eager = load_detector(detectron2_resize_checkpoint).model.transform([image])[0].tensors
        torch.testing.assert_close(resized, eager, rtol=0, atol=0)  # the same pixels, bit for bit


def test_onnx_refuses_detectron2s_resize_in_one_line(tmp_path, detectron2_resize_checkpoint):
    output = tmp_path / "model.onnx"
    argv = ["--checkpoint", str(detectron2_resize_checkpoint), "--format", "onnx", "--output", str(output)]
    with pytest.raises(ExportError, match=r"ONNX cannot express detectron2's resize .* --format torchscript") as info:
        export.main(argv)
    assert "\n" not in str(info.value) and list(tmp_path.iterdir()) == []
