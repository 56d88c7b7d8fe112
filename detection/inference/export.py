"""Deployable forms of a detector: TorchScript and ONNX, checked against the eager model.

Both take what the eager model takes for one image, a float ``[3, H, W]`` RGB tensor in ``[0, 1]`` of
any size (the model resizes and normalises it), and give ``boxes`` ``[n, 4]`` xyxy in that image's
pixels, ``labels`` ``[n]`` (1..K) and ``scores`` ``[n]``.

:func:`export_model` refuses what cannot be exported faithfully (an ONNX opset without aligned
RoIAlign), and runs the written file on two images of the model's test size before keeping it: a file
whose detections differ from the eager model's is renamed ``<name>.mismatch`` and reported.
A TorchScript file loads only after ``import torchvision`` (its detection operators live there).
"""

import copy
import math
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..files import current_umask
from ..modeling.poolers import SingleLevelRoIAlign
from .formats import DEFAULT_OPSET, EXPORT_FORMATS, ExportFormat

MIN_OPSET = 11
ALIGNED_ROI_ALIGN_MIN_OPSET = 16
MISMATCH_SUFFIX = ".mismatch"
# Exported vs eager detections: ONNX Runtime's kernels differ from PyTorch's by float rounding only
# (about 1e-5 in scores); a half-pixel RoI shift (aligned=False) moves scores by 1e-3 and boxes by 0.1 px.
BOX_TOLERANCE = (0.05, 1e-4)  # absolute (pixels), relative
SCORE_TOLERANCE = 5e-4


class ExportError(UserError):
    """The model cannot be exported faithfully as asked, or the exported file does not reproduce it."""


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
    model: nn.Module,
    path: str | os.PathLike,
    export_format: ExportFormat,
    *,
    opset: int = DEFAULT_OPSET,
    reference: nn.Module | None = None,
) -> str:
    """Writes ``model`` to ``path`` in ``export_format`` (see :data:`EXPORT_FORMATS`), checked.

    The file is written beside ``path`` and run on two images of the model's test size (landscape and
    portrait); its detections must match those of ``reference`` (default: ``model``; pass the model
    before :func:`~detection.modeling.fusion.optimize_for_inference` to check the folding too). Only
    then is it renamed to ``path``. ONNX is run with onnxruntime when it is installed.

    Returns:
        How the file was checked, in words (for the tool to print).

    Raises:
        ExportError: ONNX for a model with detectron2's resize, an ONNX ``opset`` that cannot express the
            model, or detections that differ (the file is then kept as ``<path>.mismatch``, and the message
            says so).
    """
    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {export_format!r}; expected one of {EXPORT_FORMATS}")
    if export_format == "onnx":
        check_onnx_resize(model)
        check_onnx_opset(model, opset)
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=".export-", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp creates files private (0600)
    try:
        if export_format == "torchscript":
            export_torchscript(model, temporary)
        else:
            export_onnx(model, temporary, opset=opset)
        run_exported = _exported_runner(temporary, export_format)
        if run_exported is None:
            os.replace(temporary, path)
            return "not checked against the PyTorch model: onnxruntime is not installed (pip install onnxruntime)"
        difference = _first_difference(reference if reference is not None else model, run_exported)
        if difference is not None:
            rejected = f"{path}{MISMATCH_SUFFIX}"
            os.replace(temporary, rejected)
            raise ExportError(
                f"{path}: the exported model's detections differ from the PyTorch model's ({difference}); "
                f"not written, the file is kept as {rejected} for inspection"
            )
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    runtime = "torch.jit.load" if export_format == "torchscript" else "onnxruntime"
    return f"checked: same detections as the PyTorch model on 2 images ({runtime})"


def check_onnx_resize(model: nn.Module) -> None:
    """An :class:`ExportError` for detectron2's resize (``model.resize: detectron2``): its output size and PIL's
    filter taps are computed in Python from each image's size, which an ONNX trace would freeze at the traced
    image's."""
    if getattr(model.transform, "resize_style", "torchvision") == "detectron2":
        raise ExportError(
            "--format onnx: ONNX cannot express detectron2's resize (model.resize: detectron2: sizes and filter taps "
            "computed per image); export --format torchscript, which keeps it"
        )


def check_onnx_opset(model: nn.Module, opset: int) -> None:
    """An :class:`ExportError` unless ``opset`` can express ``model``: at least 11 (torchvision's
    ``roi_align``, ``roi_pool``, ``nms``), 16 with aligned RoIAlign, and no more than this torch exports."""
    aligned = any(isinstance(m, SingleLevelRoIAlign) and m.aligned for m in model.modules())
    lowest = ALIGNED_ROI_ALIGN_MIN_OPSET if aligned else MIN_OPSET
    if opset < lowest:
        reason = "RoIAlign with aligned=True (the C4 default)" if aligned else "torchvision's RoI and NMS operators"
        raise ExportError(
            f"--opset {opset}: ONNX opset {lowest} or later is needed for {reason}; an earlier opset would "
            f"give other detections. Use --opset {max(lowest, DEFAULT_OPSET)}"
        )
    highest = _highest_onnx_opset()
    if highest is not None and opset > highest:
        raise ExportError(f"--opset {opset}: this torch {torch.__version__} exports ONNX opsets {lowest} to {highest}")


def _highest_onnx_opset() -> int | None:
    """The newest opset of torch's TorchScript-based ONNX exporter (None if this torch does not say)."""
    from torch.onnx import _constants  # no public name for it

    return getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", None)


Detections = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes [n, 4], labels [n], scores [n]


def _exported_runner(path: str, export_format: ExportFormat):
    """A function image ``[3, H, W]`` -> detections of the exported file, or None without onnxruntime."""
    if export_format == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still the format asked for
            scripted = torch.jit.load(path, map_location="cpu")

        def run_torchscript(image: torch.Tensor) -> Detections:
            with torch.inference_mode():
                detections = scripted([image])[1][0]
            return tuple(detections[key].numpy() for key in ("boxes", "labels", "scores"))

        return run_torchscript
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])

    def run_onnx(image: torch.Tensor) -> Detections:
        return tuple(session.run(ONNX_OUTPUT_NAMES, {ONNX_INPUT_NAMES[0]: image.numpy()}))

    return run_onnx


def _first_difference(reference: nn.Module, run_exported) -> str | None:
    """How the exported detections differ from ``reference``'s on two images, or None if they match.

    Both run on the CPU, where the exported file is run: a reference on a GPU (TF32 convolutions, other
    kernels) is compared through a CPU copy, so that the check tests the export, not the device.
    """
    reference = reference.eval()
    if next(reference.parameters()).device.type != "cpu":
        reference = copy.deepcopy(reference).cpu()
    short = int(reference.transform.min_size[-1])
    long = min(int(reference.transform.max_size), math.ceil(short * 4 / 3))
    generator = torch.Generator().manual_seed(0)
    for height, width in ((short, long), (long, short)):
        image = torch.rand(3, height, width, generator=generator)
        with torch.inference_mode():
            expected = reference([image])[0]
        expected = tuple(expected[key].numpy() for key in ("boxes", "labels", "scores"))
        difference = _compare(expected, run_exported(image))
        if difference is not None:
            return f"{height}x{width} image: {difference}"
    return None


def _compare(expected: Detections, actual: Detections) -> str | None:
    (boxes, labels, scores), (boxes_x, labels_x, scores_x) = expected, actual
    if len(scores) != len(scores_x):
        return f"{len(scores_x)} detections instead of {len(scores)}"
    if not np.array_equal(labels, labels_x):
        return "other labels"
    if not np.allclose(scores_x, scores, atol=SCORE_TOLERANCE, rtol=0):
        return f"scores differ by up to {np.abs(scores_x - scores).max():.2g}"
    if not np.allclose(boxes_x, boxes, atol=BOX_TOLERANCE[0], rtol=BOX_TOLERANCE[1]):
        return f"boxes differ by up to {np.abs(boxes_x - boxes).max():.2g} px"
    return None
