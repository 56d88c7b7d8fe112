"""What the command-line tools share: argument helpers, config selection, output checks and one-line user
errors.

Imports no torch: the tools parse their arguments with this module first, so that ``--help`` and argument
errors answer at once and ``run_cli`` is in place, and import the heavy modules after.
"""

import argparse
import errno
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from .config import CONFIG_DIR, PRECISIONS, Config, load_config
from .data.catalog import list_datasets
from .errors import ConfigError, UserError
from .logs import setup_logging

USER_ERRORS = (UserError, FileNotFoundError)


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> None:
    """Runs a tool's ``main`` and exits with its code; a user's mistake is one line on stderr, exit 2.

    The package's log messages (evaluation tables, progress) go to stdout, as they are. Ctrl+C is one
    line too, ``interrupted`` (exit 130), also while the tool imports its libraries (see
    :func:`_interrupt`).
    """
    setup_logging(timestamps=False)
    previous_handler = _install_interrupt_handler()
    try:
        code = main(argv)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = INTERRUPTED_EXIT_CODE
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)
    sys.exit(code)


INTERRUPTED_EXIT_CODE = 128 + signal.SIGINT


def _install_interrupt_handler() -> Callable | int | None:
    """Makes :func:`_interrupt` the SIGINT handler where SIGINT is Python's default; returns the previous one."""
    try:
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return None  # ignored (a background job) or someone else's: leave it
        return signal.signal(signal.SIGINT, _interrupt)
    except ValueError:  # not the main thread
        return None


def _interrupt(signal_number: int, frame: FrameType | None) -> None:
    """SIGINT: ``KeyboardInterrupt`` as usual, except during an import, where the process ends at once.

    An exception raised inside an import is not reliable: the library is left half-initialised (NumPy
    then fails later with a RecursionError), or its importer swallows it (torch turns a failed NumPy
    import into "NumPy support disabled", and the tool would go on as if Ctrl+C had not been pressed).
    Tools import their libraries before writing anything, so ending there loses nothing.
    """
    if _importing(frame):
        logging.shutdown()  # flushes log.txt
        sys.stdout.flush()
        print("interrupted", file=sys.stderr, flush=True)
        os._exit(INTERRUPTED_EXIT_CODE)
    raise KeyboardInterrupt


def _importing(frame: FrameType | None) -> bool:
    """Whether ``frame`` runs inside an ``import`` statement (Python's import machinery is on the stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib._bootstrap"):
            return True
        frame = frame.f_back
    return False


def _one_line_interrupt(previous_hook: Callable) -> Callable:
    def hook(kind: type[BaseException], value: BaseException, traceback: object) -> None:
        if issubclass(kind, KeyboardInterrupt):
            print("interrupted", file=sys.stderr)  # Python still exits as killed by SIGINT (status 130)
        else:
            previous_hook(kind, value, traceback)

    return hook


# A Ctrl+C while a tool still imports torch (after this module), before its run_cli starts, is one line
# too, not the traceback of the import chain (60 lines).
sys.excepthook = _one_line_interrupt(sys.excepthook)


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


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The trained model, one of ``--checkpoint PATH`` and ``--weights NAME|PATH``; load either with
    :func:`detection.modeling.weights.trained_checkpoint` (``args.weights or args.checkpoint``)."""
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="checkpoint written by tools/train_det.py or tools/convert_detectron2.py")
    model.add_argument(
        "--weights",
        metavar="NAME",
        help="detectron2's trained detectors by name, downloaded and converted once into torch hub's cache: "
        "COCO_DETECTRON2_3X or DEFAULT (R101-C4), FasterRCNN_ResNet50_C4_Weights.COCO_DETECTRON2_3X, "
        "COCO_DETECTRON2_1X, VOC_DETECTRON2 (R50-C4); see docs/detectron2.md",
    )


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``: ``auto`` (``cuda`` where available, else ``cpu``), ``cpu`` or ``cuda``; resolve it with
    :func:`resolve_device` after parsing."""
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda where available")


def add_precision_argument(parser: argparse.ArgumentParser, from_config: bool = False) -> None:
    """``--precision``: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (``from_config``: default None, the config's
    ``test.precision``); resolve it with :func:`detection.precision.resolve_precision` after parsing."""
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None if from_config else "auto",
        help="inference precision: auto is bf16 where the CPU (avx512_bf16, AMX) or the GPU computes bfloat16 "
        "natively, else fp32; fp16 needs CUDA" + (" (default: the config's test.precision)" if from_config else ""),
    )


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` where available, else ``cpu``; ``cuda`` without CUDA is a :class:`UserError`.
    Imports torch."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available (no GPU or no driver visible to torch); use --device cpu")
    return device


def prepare_output_dir(path: str | os.PathLike, option: str) -> Path:
    """Creates the folder ``path`` (and its parents) and checks that a file can be created in it.

    Tools call this before any long work, so that a folder that cannot be written (a path under a
    regular file, a read-only or full file system, no permission) is one line naming ``option``
    (the argument or config key that gave the path), not a traceback after hours of work.
    """
    path = Path(path)
    _check_writable_folder(path, f"{option} {path}")
    return path


def prepare_output_file(path: str | os.PathLike, option: str) -> Path:
    """Checks that the file ``path`` can be written: not a folder, and its folder writable (created if needed)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path}: is a folder; expected a file name")
    _check_writable_folder(path.parent, f"{option} {path}")
    return path


def _check_writable_folder(folder: Path, named: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(prefix=".write-test-", dir=folder):
            pass
    except OSError as error:
        raise UserError(f"{named}: cannot write there ({_write_failure(folder, error)})") from None


def _write_failure(path: Path, error: OSError) -> str:
    """Why ``path`` cannot be written, in words: the ancestor that is a file, or the system's reason."""
    if error.errno in (errno.ENOTDIR, errno.EEXIST):
        for ancestor in (path, *path.parents):
            if ancestor.exists():
                return f"{ancestor} is a file, not a folder" if not ancestor.is_dir() else error.strerror
    return error.strerror or str(error)


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
