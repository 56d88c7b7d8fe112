"""Deployable forms of a detector: TorchScript and ONNX.

Both take what the eager model takes for one image, a float ``[3, H, W]`` RGB tensor in ``[0, 1]`` of
any size (the model resizes and normalises it), and give ``boxes`` ``[n, 4]`` xyxy in that image's
pixels, ``labels`` ``[n]`` (1..K) and ``scores`` ``[n]``.
"""

import os
import warnings

import torch
from torch import nn

from ..errors import UserError
from .formats import DEFAULT_OPSET, EXPORT_FORMATS, ExportFormat

ONNX_INPUT_NAMES = ["image"]
ONNX_OUTPUT_NAMES = ["boxes", "labels", "scores"]


def export_torchscript(model: nn.Module, path: str | os.PathLike) -> None:
    """``torch.jit.script`` of the model in eval mode, saved to ``path``.

    The scripted torchvision detector takes a list of images and returns ``(losses, detections)``.
    """
    torch.jit.script(model.eval()).save(os.fspath(path))


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    example_size: tuple[int, int] | None = None,
) -> None:
    """ONNX graph of the model in eval mode, for one image of dynamic height and width.

    Exported with the TorchScript-based exporter (``dynamo=False``), for which this torchvision
    registers the ONNX forms of ``roi_align``, ``roi_pool`` and ``nms``; it still works in torch 2.15
    (``tests/test_export.py`` runs the file with onnxruntime). Inputs: ``image`` ``[3, height, width]``;
    outputs: ``boxes``, ``labels``, ``scores`` with a dynamic number of detections.

    Args:
        opset: ONNX opset, at least 11; 16 or more when RoIAlign is ``aligned`` (the C4 default).
        example_size: ``(H, W)`` of the image traced; any size works on the exported graph. Default:
            the model's test scale.
    """
    try:
        import onnx  # optional: the "dev" extras
    except ImportError:
        raise UserError("ONNX export needs the onnx package: pip install onnx onnxscript") from None
    model = model.eval()
    height, width = example_size or (model.transform.min_size[-1], model.transform.max_size)
    image = torch.rand(3, height, width, device=next(model.parameters()).device)
    with warnings.catch_warnings():
        # torchvision's detection code is written for tracing (sizes stay dynamic, as the tests
        # check); the tracer still warns at every shape computation it records.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "To copy construct from a tensor", UserWarning)
        torch.onnx.export(
            model,
            ([image],),
            os.fspath(path),
            dynamo=False,
            opset_version=opset,
            input_names=ONNX_INPUT_NAMES,
            output_names=ONNX_OUTPUT_NAMES,
            dynamic_axes={
                "image": {1: "height", 2: "width"},
                "boxes": {0: "detections"},
                "labels": {0: "detections"},
                "scores": {0: "detections"},
            },
        )
    onnx.checker.check_model(os.fspath(path))


def export_model(
    model: nn.Module, path: str | os.PathLike, export_format: ExportFormat, *, opset: int = DEFAULT_OPSET
) -> None:
    """Writes ``model`` to ``path`` in ``export_format`` (see :data:`EXPORT_FORMATS`)."""
    if export_format == "torchscript":
        export_torchscript(model, path)
    elif export_format == "onnx":
        export_onnx(model, path, opset=opset)
    else:
        raise ValueError(f"unknown export format {export_format!r}; expected one of {EXPORT_FORMATS}")
