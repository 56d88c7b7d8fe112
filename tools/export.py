"""Export a trained checkpoint to TorchScript or ONNX for deployment.

    python tools/export.py --checkpoint output/voc_resnet101/model_final.pth --format onnx --output model.onnx

BatchNorm is folded into the convolutions first. The exported model takes one float RGB image
[3, H, W] in [0, 1] of any size (TorchScript: a list of them) and returns boxes (xyxy, that image's
pixels), labels (1..K) and scores; the class names are in the checkpoint. The file is run on two
images and kept only if it gives the checkpoint's detections (ONNX: when onnxruntime is installed).
A TorchScript file loads only after `import torchvision` (its detection operators live there).
"""

import argparse
from collections.abc import Sequence

from detection.cli import prepare_output_file, run_cli, tool_parser
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
    prepare_output_file(args.output, "--output")
    from detection.checkpoint import load_detector
    from detection.inference.export import export_model
    from detection.modeling.fusion import optimize_for_inference

    loaded = load_detector(args.checkpoint)
    check = export_model(
        optimize_for_inference(loaded.model),
        args.output,
        args.export_format,
        opset=args.opset,
        reference=loaded.model,
    )
    print(
        f"wrote {args.output} ({args.export_format}, {loaded.config.model.backbone}, "
        f"classes: {', '.join(loaded.class_names)}; {check})"
    )
    if args.export_format == "torchscript":
        print(f"load it with: import torch, torchvision; model = torch.jit.load({str(args.output)!r})")
    return 0


if __name__ == "__main__":
    run_cli(main)
