"""Evaluate a trained checkpoint: COCO mAP (pycocotools) or PASCAL VOC mAP (devkit method).

    python tools/eval_det.py --checkpoint output/shapes/model_final.pth --dataset shapes
    python tools/eval_det.py --checkpoint model.pth --dataset voc --data-root datasets/VOCdevkit --split 2007_test
    python tools/eval_det.py --checkpoint output/widgets/model_final.pth     # your own data, as trained
    python tools/eval_det.py --weights COCO_DETECTRON2_3X --dataset coco     # detectron2's R101-C4 on val2017

Writes the results (COCO results json or devkit files), metrics.json, evaluation.json (what was evaluated,
for tools/compare.py) and the figures (precision/recall curves, per-class AP, COCO error analysis) to
--output-dir.
"""

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path

from detection.cli import (
    add_device_argument,
    add_model_arguments,
    add_precision_argument,
    prepare_output_dir,
    resolve_device,
    run_cli,
    tool_parser,
)
from detection.config import Config
from detection.data.catalog import list_datasets
from detection.errors import ConfigError


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    add_model_arguments(parser)
    parser.add_argument(
        "--dataset", choices=list_datasets(), help="a registered dataset (default: the checkpoint's own dataset)"
    )
    parser.add_argument(
        "--data-root", help="the dataset's root folder (default: the checkpoint's, then $DETECTION_DATASETS)"
    )
    parser.add_argument("--split", help="split to evaluate (default: the config's test split)")
    parser.add_argument(
        "--output-dir", help="default: <checkpoint folder>/eval_<dataset>_<split> (--weights: output/<weights>/...)"
    )
    parser.add_argument("--metric", choices=("coco", "voc"), help="default: the dataset's (voc for VOC formats)")
    parser.add_argument("--coco-backend", choices=("pycocotools", "faster"), help="'faster' needs faster-coco-eval")
    parser.add_argument("--voc-method", choices=("11point", "area"), help="VOC2007 11-point (default) or VOC2010+ area")
    parser.add_argument("--voc-coco-style", action="store_true", help="also report VOC AP over IoU 0.50:0.95")
    parser.add_argument(
        "--figures",
        action=argparse.BooleanOptionalAction,
        help="write the PNG figures (default: the config's test.figures, on unless turned off)",
    )
    parser.add_argument("--batch-size", type=int, help="images per inference batch")
    parser.add_argument("--num-workers", type=int, help="data loading workers")
    add_device_argument(parser)
    add_precision_argument(parser, from_config=True)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    from detection.checkpoint import checkpoint_config, detector_from_checkpoint
    from detection.evaluation.pipeline import build_evaluation_dataset, evaluate_model
    from detection.evaluation.records import save_evaluation
    from detection.modeling.weights import trained_checkpoint
    from detection.precision import resolve_precision

    checkpoint, source = trained_checkpoint(args.weights or args.checkpoint)
    config = _with_arguments(checkpoint_config(checkpoint, source), args)
    split = args.split or config.data.test_split
    # Named weights have no folder of their own: output/<their full name>
    folder = Path(source).parent if Path(source).is_file() else Path("output") / source.replace(".", "_")
    output_dir = Path(args.output_dir or folder / f"eval_{config.data.dataset}_{split}")
    prepare_output_dir(output_dir, "--output-dir")
    precision = resolve_precision(config.test.precision, device, "--precision" if args.precision else "test.precision")
    dataset = build_evaluation_dataset(config, split)
    loaded = detector_from_checkpoint(checkpoint, source, device=device, class_names=dataset.class_names)
    print(f"inference in {precision.describe()}")
    metrics = evaluate_model(
        loaded.model,
        dataset,
        config,
        device=device,
        output_dir=output_dir,
        voc_coco_style=args.voc_coco_style,
        precision=precision,
    )
    save_evaluation(
        output_dir,
        metrics,
        config,
        split,
        images=len(dataset),
        checkpoint=source,
        iteration=loaded.iteration,
        precision=precision.name,
    )
    figures = ", the figures" if config.test.figures else ""
    print(f"Wrote the results, metrics.json, evaluation.json{figures} to {output_dir}")
    return 0


def _with_arguments(config: Config, args: argparse.Namespace) -> Config:
    """The checkpoint's config with the command line's dataset and test options."""
    data = config.data
    if args.dataset and args.dataset != data.dataset:
        if not args.split:
            raise ConfigError(
                f"the checkpoint was trained on {data.dataset!r}; with --dataset {args.dataset} pass --split too"
            )
        data = data.with_registered_dataset(args.dataset, args.data_root)  # the stored root is the other dataset's
    data = dataclasses.replace(data, **_given(root=args.data_root, num_workers=args.num_workers))
    test = _given(
        metric=args.metric,
        coco_backend=args.coco_backend,
        voc_method=args.voc_method,
        images_per_batch=args.batch_size,
        figures=args.figures,
        precision=args.precision,
    )
    return dataclasses.replace(config, data=data, test=dataclasses.replace(config.test, **test))


def _given(**values):
    return {key: value for key, value in values.items() if value is not None}


if __name__ == "__main__":
    run_cli(main)
