"""What the command-line tools share: config selection arguments and one-line user errors."""

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .config import Config, load_config
from .data.errors import DatasetError
from .errors import ConfigError, UserError
from .logs import setup_logging

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
USER_ERRORS = (UserError, DatasetError, FileNotFoundError)


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> None:
    """Runs a tool's ``main`` and exits with its code; a user's mistake is one line on stderr, exit 2.

    The package's log messages (evaluation tables, progress) go to stdout, as they are.
    """
    setup_logging(timestamps=False)
    try:
        code = main(argv)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config`` or ``--backbone``/``--dataset``, ``--data-root``, ``--opts``."""
    parser.add_argument("--config", help="YAML config; default: configs/<dataset>/<backbone>.yaml")
    parser.add_argument("--backbone", help="registered backbone name (picks the config; overrides model.backbone)")
    parser.add_argument(
        "--dataset", choices=("coco", "voc", "shapes"), help="dataset (picks the config; overrides data.dataset)"
    )
    parser.add_argument("--data-root", help="the dataset's root folder (overrides data.root and $DETECTION_DATASETS)")
    parser.add_argument(
        "--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, e.g. solver.base_lr=0.01"
    )


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``: ``cuda`` where available, else ``cpu``."""
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")


def config_from_arguments(args: argparse.Namespace) -> Config:
    """The config the arguments select, with ``--backbone``, ``--dataset``, ``--data-root`` and ``--opts`` applied."""
    path = args.config or default_config_path(args.backbone, args.dataset)
    overrides = []
    if args.backbone:
        overrides.append(f"model.backbone={args.backbone}")
    if args.dataset:
        overrides.append(f"data.dataset={args.dataset}")
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    return load_config(path, overrides + list(args.opts))


def default_config_path(backbone: str | None, dataset: str | None) -> str:
    """``configs/<dataset>/<backbone>.yaml`` if shipped, else the dataset's ``base.yaml`` recipe."""
    dataset = dataset or "shapes"
    folder = CONFIG_DIR / dataset
    candidate = folder / f"{backbone or 'resnet101'}.yaml"
    if candidate.is_file():
        return os.fspath(candidate)
    if (folder / "base.yaml").is_file():
        return os.fspath(folder / "base.yaml")
    raise ConfigError(f"no config for dataset {dataset!r} in {folder}; pass --config")
