"""Data-loading throughput: decoded and augmented images per second through the training loader.

    python tools/benchmark_data.py --dataset shapes --split train --num-workers 1 --images 400

Measures what the training loop would get: read, decode, augment, to tensor, collate, transfer
from the worker. The first batch (worker start-up) is not timed.
"""

import itertools
import time
from collections.abc import Sequence

from detection.cli import run_cli, tool_parser
from detection.data.catalog import list_datasets


def main(argv: Sequence[str] | None = None) -> int:
    parser = tool_parser(__doc__)
    parser.add_argument("--dataset", choices=list_datasets(), default="shapes", help="a registered dataset")
    parser.add_argument("--split", default="train", help="e.g. train (shapes), train2017 (coco), 2007_trainval (voc)")
    parser.add_argument("--data-root", default=None, help="the dataset's own folder")
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--images-per-batch", type=int, default=2)
    parser.add_argument("--images", type=int, default=400, help="images to time")
    parser.add_argument("--all-augmentations", action="store_true", help="add colour jitter and crop to the flip")
    args = parser.parse_args(argv)
    from detection.data import AugmentationOptions, build_dataset, build_train_loader

    if args.all_augmentations:
        augmentation, described = AugmentationOptions(color_jitter=0.8, crop=0.5), "flip, colour jitter, crop"
    else:
        augmentation, described = AugmentationOptions(), "flip"
    dataset = build_dataset(args.dataset, args.split, root=args.data_root, train=True, augmentation=augmentation)
    loader = build_train_loader(dataset, args.images_per_batch, num_workers=args.num_workers, seed=0)
    batches = iter(loader)
    next(batches)
    num_batches = max(1, args.images // args.images_per_batch)
    start = time.perf_counter()
    num_images = sum(len(images) for images, _ in itertools.islice(batches, num_batches))
    elapsed = time.perf_counter() - start
    print(
        f"{num_images / elapsed:.1f} images/s decoded + augmented ({num_images} images of {args.dataset}/{args.split}, "
        f"{args.num_workers} worker(s), {args.images_per_batch} per batch, augmentation: {described})"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
