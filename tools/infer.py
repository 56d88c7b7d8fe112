"""Detect objects in image files with a trained checkpoint, or a trained detector by name.

    python tools/infer.py --weights COCO_DETECTRON2_3X photo.jpg      # detectron2's R101-C4: 41.1 COCO box AP
    python tools/infer.py --checkpoint output/voc_resnet101/model_final.pth photo.jpg images/ "more/**/*.png"

An input is an image file, a folder (its images) or a glob pattern. Writes one picture per image with
the detections drawn, and detections.json (boxes xyxy in the original image's pixels, class names,
scores) to --output-dir. Unreadable files are reported and skipped; the exit code is 1 if any was.
"""

import argparse
import os
import sys
from collections.abc import Sequence

from detection.cli import (
    add_device_argument,
    add_model_arguments,
    add_precision_argument,
    prepare_output_dir,
    resolve_device,
    run_cli,
    tool_parser,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    add_model_arguments(parser)
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image file, folder or glob pattern")
    parser.add_argument("--output-dir", default="output/infer", help="where the pictures and detections.json go")
    parser.add_argument("--score-thresh", type=float, default=0.5, help="keep detections scoring at least this")
    parser.add_argument(
        "--batch-size", type=int, default=2, help="images per forward pass (consecutive images of one size only)"
    )
    add_device_argument(parser)
    parser.add_argument(
        "--channels-last", action="store_true", help="NHWC weights (faster on recent GPUs and oneDNN CPUs)"
    )
    add_precision_argument(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    from tqdm import tqdm

    from detection.checkpoint import detector_from_checkpoint
    from detection.inference.predictor import Predictor, ReadFailure, find_images
    from detection.inference.writer import PredictionWriter
    from detection.modeling.fusion import optimize_for_inference
    from detection.modeling.weights import trained_checkpoint
    from detection.precision import resolve_precision

    precision = resolve_precision(args.precision, device)
    paths = find_images(args.inputs)
    prepare_output_dir(args.output_dir, "--output-dir")
    loaded = detector_from_checkpoint(*trained_checkpoint(args.weights or args.checkpoint), device=device)
    model = optimize_for_inference(loaded.model, fold_bn=True, channels_last=args.channels_last)
    predictor = Predictor(
        model, device, batch_size=args.batch_size, score_thresh=args.score_thresh, precision=precision
    )
    writer = PredictionWriter(
        args.output_dir,
        loaded.class_names,
        {
            **({"weights": args.weights} if args.weights else {"checkpoint": os.fspath(args.checkpoint)}),
            "score_thresh": args.score_thresh,
            "precision": precision.name,
        },
    )
    print(f"inference in {precision.describe()}, BatchNorm folded{', channels_last' if args.channels_last else ''}")
    with tqdm(total=len(paths), unit="image", desc="inference") as progress:
        for result in predictor.predict_files(paths):
            if isinstance(result, ReadFailure):
                progress.write(f"skipped: {result.error}", file=sys.stderr)
                writer.add_failure(result)
            else:
                writer.add(result)
            progress.update()
    detections_file = writer.close()
    failed = len(writer.failed)
    print(
        f"{len(writer.images)} of {len(paths)} images processed, {failed} unreadable; detections in {detections_file}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    run_cli(main)
