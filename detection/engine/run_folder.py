"""A training run's output folder: what marks it as holding a run, ``--overwrite``, and ``config.yaml``.

A folder holds a run when it has a checkpoint (``last_checkpoint``, ``model_*.pth``) or training metrics
(a non-empty ``metrics.json``). Starting a new run there is refused (``--resume`` continues it);
``--overwrite`` deletes the run's own files first (:func:`run_files`) and nothing else. ``config.yaml``
is the run's config; a resume that changes it keeps the replaced one as ``config.<iteration>.yaml``.
"""

import os
import re
import shutil

import yaml

from ..config import Config, config_to_dict, save_config
from ..errors import UserError
from ..evaluation.records import RUN_EVALUATION_FOLDER
from ..logs import LOG_FILE
from .events import EVENT_FILE_PREFIX, METRICS_FILE
from .run_checkpoints import BEST_CHECKPOINT, FINAL_CHECKPOINT, LAST_CHECKPOINT_FILE

CONFIG_FILE = "config.yaml"
_PERIODIC_CHECKPOINT = re.compile(r"model_\d{7}\.pth")
_REPLACED_CONFIG = re.compile(r"config\.\d{7}(-\d+)?\.yaml")
MAX_NAMES_SHOWN = 4


class RunFolderError(UserError):
    """The output folder holds a run that this start would overwrite."""


def run_results(folder: str) -> list[str]:
    """The names in ``folder`` that make it a run's folder: checkpoints and non-empty training metrics."""
    names = []
    for name in _names(folder):
        path = os.path.join(folder, name)
        if name in (LAST_CHECKPOINT_FILE, FINAL_CHECKPOINT, BEST_CHECKPOINT) or _PERIODIC_CHECKPOINT.fullmatch(name):
            names.append(name)
        elif name == METRICS_FILE and os.path.isfile(path) and os.path.getsize(path) > 0:
            names.append(name)
    return names


def run_files(folder: str) -> list[str]:
    """Every name in ``folder`` that a training run writes: what ``--overwrite`` deletes."""
    own = (CONFIG_FILE, LOG_FILE, METRICS_FILE, LAST_CHECKPOINT_FILE, FINAL_CHECKPOINT, BEST_CHECKPOINT)
    return [
        name
        for name in _names(folder)
        if name in own
        or name == RUN_EVALUATION_FOLDER
        or name.startswith(EVENT_FILE_PREFIX)
        or _PERIODIC_CHECKPOINT.fullmatch(name)
        or _REPLACED_CONFIG.fullmatch(name)
    ]


def claim_run_folder(folder: str, *, overwrite: bool, eval_only: bool = False) -> list[str]:
    """Makes ``folder`` ready for a new run: refuses it when it holds one, unless ``overwrite``.

    Returns:
        The names deleted (with ``overwrite``); other files in the folder are kept.

    Raises:
        RunFolderError: ``folder`` holds a run and ``overwrite`` is False.
    """
    results = run_results(folder)
    if not results:
        return []
    if not overwrite:
        alternative = (
            "evaluate its checkpoints there with --eval-only --resume [PATH], give another --output-dir"
            if eval_only
            else "continue it with --resume, give another --output-dir"
        )
        raise RunFolderError(
            f"{folder} holds a training run ({preview_names(results)}): {alternative}, or pass --overwrite to "
            "delete that run's files and start over"
        )
    removed = run_files(folder)
    for name in removed:
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    return removed


def write_run_config(config: Config, folder: str, resumed_at: int | None = None) -> str | None:
    """Writes ``config`` to ``folder/config.yaml``.

    When a resume (at iteration ``resumed_at``) changes the config, the file it replaces is kept as
    ``config.<resumed_at>.yaml`` (``-2``, ``-3``... if taken). Returns that file's name, or None.
    """
    path = os.path.join(folder, CONFIG_FILE)
    kept = None
    if resumed_at is not None and os.path.isfile(path) and not holds_config(folder, config):
        kept = _free_name(folder, f"config.{resumed_at:07d}", ".yaml")
        os.replace(path, os.path.join(folder, kept))
    save_config(config, path)
    return kept


def holds_config(folder: str, config: Config) -> bool:
    """Whether ``folder/config.yaml`` is ``config``."""
    path = os.path.join(folder, CONFIG_FILE)
    return os.path.isfile(path) and _read_yaml(path) == config_to_dict(config)


def same_folder(a: str, b: str) -> bool:
    """Whether two paths name one folder: the same once absolute, or one existing folder (links followed)."""
    a, b = a or ".", b or "."
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def preview_names(names: list[str]) -> str:
    """``"a, b, c, d and 5 more"``."""
    more = len(names) - MAX_NAMES_SHOWN
    return ", ".join(names[:MAX_NAMES_SHOWN]) + (f" and {more} more" if more > 0 else "")


def _names(folder: str) -> list[str]:
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def _read_yaml(path: str) -> object:
    try:
        with open(path, encoding="utf-8") as file:
            return yaml.safe_load(file)
    except (OSError, yaml.YAMLError):
        return None  # unreadable: replaced, and kept


def _free_name(folder: str, stem: str, suffix: str) -> str:
    name, number = stem + suffix, 1
    while os.path.exists(os.path.join(folder, name)):
        number += 1
        name = f"{stem}-{number}{suffix}"
    return name
