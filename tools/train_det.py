"""Train a Faster R-CNN detector (or evaluate one) from a config.

    python tools/train_det.py --backbone resnet18 --dataset shapes
    python tools/train_det.py --backbone resnet101 --dataset coco --opts solver.images_per_batch=16
    python tools/train_det.py --resume --output-dir output/shapes --opts solver.max_iter=1200 solver.steps=[600,1000]
    python tools/train_det.py --config configs/custom/base.yaml --opts data.dataset=widgets \
        data.train_json=my_data/train.json data.test_json=my_data/val.json data.train_images=my_data/images \
        data.test_images=my_data/images
    torchrun --standalone --nproc_per_node 8 tools/train_det.py --backbone resnet101 --dataset coco
    python tools/train_det.py --config configs/voc/resnet50_c4_detectron2.yaml --weights COCO_DETECTRON2_3X \
        --opts model.backbone=resnet101 model.weights=null      # fine-tune detectron2's COCO R101-C4 on VOC

A new run refuses an output folder that holds one: continue it with --resume, or start over with
--overwrite. --resume continues the run with the config stored in its checkpoint (not a recipe: --config,
--backbone and --dataset are refused with it); --opts, --data-root, --device and --output-dir change it,
each change printed, and changes to the network, the training data, the batch or the seed are refused.

See docs/training.md for configs, overrides, resuming, fine-tuning, multi-GPU/multi-node and AMP, and
docs/datasets.md for training on your own data.
"""

import argparse
import dataclasses
import json
import os
from collections.abc import Sequence

from detection.cli import add_config_arguments, config_from_arguments, prepare_output_dir, run_cli, tool_parser
from detection.config import Config
from detection.errors import ConfigError, UserError


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
        help="continue a run exactly, with the config stored in its checkpoint: from PATH (in --output-dir if "
        "given, else in PATH's folder), or without PATH from the newest checkpoint in --output-dir",
    )  # fmt: skip
    parser.add_argument(
        "--overwrite", action="store_true",
        help="start over in an output folder that holds a run, deleting that run's files (checkpoints, "
        "config.yaml, log.txt, metrics.json, event files, inference/); other files are kept",
    )  # fmt: skip
    parser.add_argument(
        "--weights",
        metavar="PATH|NAME",
        help="initialise the model from a checkpoint (no optimizer state), or from detectron2's trained detectors "
        "by name (COCO_DETECTRON2_3X, ...: docs/detectron2.md): fine-tuning; a box predictor for other classes is "
        "replaced",
    )
    parser.add_argument("--eval-only", action="store_true", help="evaluate the --weights or --resume model and exit")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.resume:
        _refuse_a_recipe(args)
        if args.resume == "auto" and not args.output_dir:
            raise ConfigError("--resume without a checkpoint path continues the run in --output-dir DIR: give it")
        config, resume = _resumed_config(args)
    else:
        config, resume = config_from_arguments(args), None
        if args.output_dir:
            config = dataclasses.replace(config, output_dir=args.output_dir)
    if args.device:
        config = dataclasses.replace(config, device=args.device)
    prepare_output_dir(config.output_dir, "--output-dir" if args.output_dir else "output_dir")
    from detection.engine import RunOptions, run_training  # torch: once the arguments and config are checked

    options = RunOptions(resume=resume, weights=args.weights, eval_only=args.eval_only, overwrite=args.overwrite)
    return run_training(config, options)


def _resumed_config(args: argparse.Namespace) -> tuple[Config, str]:
    """The config stored in the checkpoint to resume, with the command line's changes; and its path."""
    from detection.engine import find_resume_checkpoint
    from detection.engine.resume import resumed_config

    folder = args.output_dir or os.path.dirname(args.resume) or "."
    path = find_resume_checkpoint(args.resume, folder)
    # Paths as JSON strings: YAML reads them as they are, whatever characters they hold.
    given = [f"output_dir={json.dumps(folder)}"] + (
        [f"data.root={json.dumps(args.data_root)}"] if args.data_root else []
    )
    config = resumed_config(path, given + list(args.opts))
    if args.output_dir:
        config = dataclasses.replace(config, output_dir=args.output_dir)
    return config, path


def _refuse_a_recipe(args: argparse.Namespace) -> None:
    """``--config``, ``--backbone`` and ``--dataset`` choose a new run's config: with ``--resume``, an error that
    names the folder of the run they would have started."""
    given = [f"--{name}" for name in ("config", "backbone", "dataset") if getattr(args, name)]
    if not given:
        return
    try:
        folder = args.output_dir or config_from_arguments(args).output_dir
        example = f" (--resume --output-dir {folder})"
    except UserError:
        example = ""
    raise ConfigError(
        f"--resume continues a run with the config stored in its checkpoint, so {', '.join(given)} would not be "
        f"used: drop it and name the run with --output-dir DIR or --resume PATH{example}; change settings with --opts"
    )


if __name__ == "__main__":
    run_cli(main)
