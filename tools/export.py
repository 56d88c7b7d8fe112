"""Export a trained checkpoint to TorchScript or ONNX for deployment.

    python tools/export.py --checkpoint output/voc_resnet101/model_final.pth --format onnx --output model.onnx

BatchNorm is folded into the convolutions first. The exported model takes one float RGB image
[3, H, W] in [0, 1] of any size (TorchScript: a list of them) and returns boxes (xyxy, that image's
pixels), labels (1..K) and scores; the class names are in the checkpoint.
"""

import argparse
from collections.abc import Sequence
from pathlib import Path

from detection.cli import run_cli, tool_parser
from detection.inference.formats import DEFAULT_OPSET, EXPORT_FORMATS


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    parser.add_argument("--checkpoint", required=True, help="checkpoint written by tools/train_det.py")
    parser.add_argument("--format", choices=EXPORT_FORMATS, required=True, dest="export_format")
    parser.add_argument("--output", required=True, help="file to write (.pt for TorchScript, .onnx for ONNX)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (>= 16 for aligned RoIAlign)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from detection.checkpoint import load_detector
    from detection.inference.export import export_model
    from detection.modeling.fusion import optimize_for_inference

    loaded = load_detector(args.checkpoint)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    export_model(optimize_for_inference(loaded.model), args.output, args.export_format, opset=args.opset)
    print(
        f"wrote {args.output} ({args.export_format}, {loaded.config.model.backbone}, "
        f"classes: {', '.join(loaded.class_names)})"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
