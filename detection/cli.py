"""What the command-line tools share: argument helpers, config selection and one-line user errors.

Imports no torch: the tools parse their arguments with this module first, so that ``--help`` and argument
errors answer at once, and import the heavy modules after.
"""

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from .config import CONFIG_DIR, Config, load_config
from .data.catalog import list_datasets
from .errors import ConfigError, UserError

USER_ERRORS = (UserError, FileNotFoundError)


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> None:
    """Runs a tool's ``main`` and exits with its code; a user's mistake is one line on stderr, exit 2.

    The package's INFO messages (a dataset generated, classes collected) go to stdout unless the tool
    sets up its own log (training does).
    """
    _show_package_messages()
    try:
        code = main(argv)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with the tool's docstring as written and each option's default, where it has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if default is None or default is False or default == [] or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def tool_parser(description: str | None) -> argparse.ArgumentParser:
    """An argument parser for a tool whose module docstring is ``description``."""
    return argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config`` or ``--backbone``/``--dataset``, ``--data-root``, ``--opts``."""
    parser.add_argument(
        "--config",
        help="YAML config (a relative path not in the working folder is looked up among the shipped configs); "
        "default: configs/<dataset>/<backbone>.yaml, its base.yaml, or configs/custom/base.yaml",
    )
    parser.add_argument("--backbone", help="registered backbone name (picks the config; overrides model.backbone)")
    parser.add_argument(
        "--dataset", choices=list_datasets(), help="registered dataset (picks the config; overrides data.dataset)"
    )
    parser.add_argument("--data-root", help="the dataset's root folder (overrides data.root and $DETECTION_DATASETS)")
    parser.add_argument(
        "--opts",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, e.g. solver.base_lr=0.01 data.train_json=my_data/train.json",
    )


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``: ``auto`` (``cuda`` where available, else ``cpu``), ``cpu`` or ``cuda``; resolve it with
    :func:`resolve_device` after parsing."""
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda where available")


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` where available, else ``cpu``; ``cuda`` without CUDA is a :class:`UserError`.
    Imports torch."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available here; use --device cpu (or auto)")
    return device


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
    """The shipped ``configs/<dataset>/<backbone>.yaml``, else that folder's ``base.yaml`` recipe; for a
    dataset without a config folder (one you registered), ``configs/custom/`` (fine-tuning from ImageNet)."""
    dataset = dataset or "shapes"
    folder = CONFIG_DIR / dataset if (CONFIG_DIR / dataset).is_dir() else CONFIG_DIR / "custom"
    candidate = folder / f"{backbone or 'resnet101'}.yaml"
    if candidate.is_file():
        return os.fspath(candidate)
    if (folder / "base.yaml").is_file():
        return os.fspath(folder / "base.yaml")
    raise ConfigError(f"no config for dataset {dataset!r} in {folder}; pass --config")


def _show_package_messages() -> None:
    logger = logging.getLogger(__package__)
    if not logger.handlers:
        logger.addHandler(_StdoutHandler())
        logger.setLevel(logging.INFO)


class _StdoutHandler(logging.Handler):
    """Messages as plain lines on the current ``sys.stdout`` (looked up per message, so that a replaced
    stdout, as under pytest, is honoured)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stdout)
