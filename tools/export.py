"""Export a trained checkpoint (or a trained detector by name) to TorchScript or ONNX for deployment.

    python tools/export.py --checkpoint output/voc_resnet101/model_final.pth --format onnx --output model.onnx
    python tools/export.py --weights COCO_DETECTRON2_3X --format torchscript --output r101_c4.pt

BatchNorm is folded into the convolutions first. The exported model takes one float RGB image
[3, H, W] in [0, 1] of any size (TorchScript: a list of them) and returns boxes (xyxy, that image's
pixels), labels (1..K) and scores; the class names are in the checkpoint. The file is run on two
images and kept only if it gives the checkpoint's detections (ONNX: when onnxruntime is installed).
A TorchScript file loads only after `import torchvision` (its detection operators live there).
"""

import argparse
from collections.abc import Sequence

from detection.cli import add_model_arguments, prepare_output_file, run_cli, tool_parser
from detection.inference.formats import DEFAULT_OPSET, EXPORT_FORMATS


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    add_model_arguments(parser)
    parser.add_argument("--format", choices=EXPORT_FORMATS, required=True, dest="export_format")
    parser.add_argument("--output", required=True, help="file to write (.pt for TorchScript, .onnx for ONNX)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (>= 16 for aligned RoIAlign)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    prepare_output_file(args.output, "--output")
    from detection.checkpoint import detector_from_checkpoint
    from detection.inference.export import export_model
    from detection.modeling.fusion import optimize_for_inference
    from detection.modeling.weights import trained_checkpoint

    loaded = detector_from_checkpoint(*trained_checkpoint(args.weights or args.checkpoint))
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
