"""The export formats and the default ONNX opset, without torch (``tools/export.py`` offers them in ``--help``)."""

from typing import Literal

EXPORT_FORMATS = ("torchscript", "onnx")
ExportFormat = Literal["torchscript", "onnx"]
# torchvision's ONNX symbolics: roi_align and nms from opset 11; roi_align(aligned=True), the C4
# default, needs opset 16.
DEFAULT_OPSET = 16
