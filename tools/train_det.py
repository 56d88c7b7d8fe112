"""Train a Faster R-CNN detector (or evaluate one) from a config.

    python tools/train_det.py --backbone resnet18 --dataset shapes
    python tools/train_det.py --backbone resnet101 --dataset coco --opts solver.images_per_batch=16
    python tools/train_det.py --config configs/voc/vgg16.yaml --resume
    python tools/train_det.py --config configs/custom/base.yaml --opts data.dataset=widgets \
        data.train_json=my_data/train.json data.test_json=my_data/val.json data.train_images=my_data/images \
        data.test_images=my_data/images
    torchrun --standalone --nproc_per_node 8 tools/train_det.py --backbone resnet101 --dataset coco

See docs/training.md for configs, overrides, resuming, fine-tuning, multi-GPU/multi-node and AMP, and
docs/datasets.md for training on your own data.
"""

import argparse
import dataclasses
from collections.abc import Sequence

from detection.cli import add_config_arguments, config_from_arguments, prepare_output_dir, run_cli, tool_parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    add_config_arguments(parser)
    parser.add_argument(
        "--output-dir", help="where logs, events, config.yaml and checkpoints go (overrides output_dir)"
    )
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), help="overrides device (auto: cuda where available)"
    )
    parser.add_argument(
        "--resume", nargs="?", const="auto", metavar="PATH",
        help="continue a run exactly: from PATH, or without PATH from the newest checkpoint in the output folder",
    )  # fmt: skip
    parser.add_argument(
        "--weights", metavar="PATH", help="initialise the model from a checkpoint (no optimizer state): fine-tuning"
    )
    parser.add_argument("--eval-only", action="store_true", help="evaluate the --weights or --resume model and exit")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = config_from_arguments(args)
    if args.output_dir:
        config = dataclasses.replace(config, output_dir=args.output_dir)
    if args.device:
        config = dataclasses.replace(config, device=args.device)
    prepare_output_dir(config.output_dir, "--output-dir" if args.output_dir else "output_dir")
    from detection.engine import RunOptions, run_training  # torch: once the arguments and config are checked

    return run_training(config, RunOptions(resume=args.resume, weights=args.weights, eval_only=args.eval_only))


if __name__ == "__main__":
    run_cli(main)
