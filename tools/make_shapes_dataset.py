"""Generate the "shapes" detection dataset as a COCO json tree and/or a VOCdevkit tree.

    python tools/make_shapes_dataset.py --out datasets/shapes --format both --train 600 --val 100 --seed 0

The output is deterministic for a given seed and size. A shapes dataset already in --out is replaced
as a whole (generated beside it, then swapped in); a folder holding anything else is refused.
``--dataset shapes`` in the other tools uses ``$DETECTION_DATASETS/shapes`` (or ``./datasets/shapes``)
and generates it there on first use.
"""

from collections.abc import Sequence
from pathlib import Path

from detection.cli import prepare_output_dir, run_cli, tool_parser
from detection.data import ShapesOptions, replace_shapes_dataset, resolve_dataset_root

FORMATS = {"coco": ("coco",), "voc": ("voc",), "both": ("coco", "voc")}


def main(argv: Sequence[str] | None = None) -> int:
    defaults = ShapesOptions()
    parser = tool_parser(__doc__)
    parser.add_argument("--out", default=None, help="output folder (default: the cache folder of --dataset shapes)")
    parser.add_argument("--format", choices=sorted(FORMATS), default="both", help="which layouts to write")
    parser.add_argument("--train", type=int, default=defaults.num_train, help="number of training images")
    parser.add_argument("--val", type=int, default=defaults.num_val, help="number of validation images")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    parser.add_argument("--height", type=int, default=defaults.image_size[0], help="image height in pixels")
    parser.add_argument("--width", type=int, default=defaults.image_size[1], help="image width in pixels")
    parser.add_argument(
        "--empty-fraction", type=float, default=defaults.empty_fraction, help="share of images without objects"
    )
    args = parser.parse_args(argv)
    try:
        options = ShapesOptions(
            num_train=args.train,
            num_val=args.val,
            seed=args.seed,
            image_size=(args.height, args.width),
            empty_fraction=args.empty_fraction,
            formats=FORMATS[args.format],
        )
    except ValueError as error:
        parser.error(str(error))
    out = Path(args.out) if args.out is not None else resolve_dataset_root("shapes")
    prepare_output_dir(out, "--out")
    out = replace_shapes_dataset(out, options)
    print(f"wrote {args.train} train + {args.val} val images ({' and '.join(options.formats)} format) to {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
