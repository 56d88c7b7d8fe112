"""Draw the ground-truth boxes of a dataset split, to check the annotations before training.

    python tools/visualize_dataset.py --dataset voc --data-root datasets/VOCdevkit --split 2007_trainval --num-images 20

Writes <index>_<image name>.jpg to --output-dir; difficult and crowd boxes are named as such.
Unreadable images are reported and skipped; the exit code is 1 if any was.
"""

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from detection.cli import add_config_arguments, config_from_arguments, prepare_output_dir, run_cli, tool_parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    add_config_arguments(parser)
    parser.add_argument("--split", help="default: the config's training split")
    parser.add_argument("--output-dir", default="output/dataset_gt")
    parser.add_argument("--start", type=int, default=0, help="first image index")
    parser.add_argument("--num-images", type=int, default=16, help="how many images, from --start (0: all)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = config_from_arguments(args)
    from tqdm import tqdm

    from detection.data import ImageReadError, dataset_from_config, read_image
    from detection.inference.drawing import draw_annotation, write_picture

    split = args.split or config.data.train_split
    output_dir = prepare_output_dir(args.output_dir, "--output-dir")
    # on_bad_image="skip": a missing image is one warning up front, then reported below with the unreadable ones
    dataset = dataset_from_config(dataclasses.replace(config.data, on_bad_image="skip"), split, train=False)
    stop = len(dataset) if args.num_images == 0 else min(len(dataset), args.start + args.num_images)
    failed = 0
    for index in tqdm(range(args.start, stop), unit="image", desc=f"{config.data.dataset} {split}"):
        annotation = dataset.get_annotation(index)
        try:
            image = read_image(annotation["file_name"])
        except ImageReadError as error:
            tqdm.write(f"skipped: {error}", file=sys.stderr)
            failed += 1
            continue
        write_picture(
            output_dir / f"{index:06d}_{Path(annotation['file_name']).stem}.jpg",
            draw_annotation(image, annotation, dataset.class_names),
        )
    print(f"{stop - args.start - failed} of {stop - args.start} images drawn to {output_dir}, {failed} unreadable")
    return 1 if failed else 0


if __name__ == "__main__":
    run_cli(main)
