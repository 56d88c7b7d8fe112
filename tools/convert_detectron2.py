"""Convert a detectron2 C4 Faster R-CNN (R50-C4 or R101-C4) into a checkpoint of this toolkit.

    python tools/convert_detectron2.py model_final_298dad.pkl output/r101_c4_3x.pth
    python tools/eval_det.py --checkpoint output/r101_c4_3x.pth --dataset coco --split val2017

INPUT is a model-zoo pickle (model_final_*.pkl) or a .pth written by detectron2's Checkpointer; neither
runs code when read. The output is a torchvision FasterRCNN with detectron2's settings in its config
(configs/coco/resnet101_3x_detectron2.yaml), usable by eval_det, infer, export and train_det --weights.
See docs/detectron2.md.
"""

import argparse
from collections.abc import Sequence

from detection.cli import prepare_output_file, run_cli, tool_parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    parser.add_argument("input", metavar="INPUT", help="detectron2 checkpoint (.pkl or .pth)")
    parser.add_argument("output", metavar="OUTPUT", help="checkpoint to write (.pth)")
    parser.add_argument(
        "--classes", nargs="+", metavar="NAME", help="the model's class names in order (default: COCO's 80 names)"
    )
    parser.add_argument("--num-classes", type=int, help="check the model's class count (background excluded)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    prepare_output_file(args.output, "OUTPUT")
    from detection.modeling.detectron2 import write_converted_checkpoint  # torch: once the arguments are checked

    summary = write_converted_checkpoint(args.input, args.output, args.classes, args.num_classes)
    print(
        f"wrote {args.output}: R{summary.depth}-C4 Faster R-CNN, {len(summary.class_names)} classes, "
        f"{summary.parameters:,} parameters (from {args.input}, iteration {summary.iteration})"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
