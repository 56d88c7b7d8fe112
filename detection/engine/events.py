"""Where training reports besides the log (:mod:`detection.logs`): TensorBoard event files, ``metrics.json``.

Only the main process writes; on the other ranks the writer is a no-op.
"""

import json
import os
import tempfile
from collections.abc import Callable, Mapping

import numpy as np

from ..files import json_text

METRICS_FILE = "metrics.json"
EVENT_FILE_PREFIX = "events.out.tfevents."


class EventWriter:
    """Scalars and images for TensorBoard (``events.out.tfevents.*``) and ``metrics.json``.

    ``metrics.json`` has one JSON object per write: ``{"iteration": i, "<tag>": value, ...}``; a value
    that is not a finite number is ``null``.

    Args:
        resumed_at: the iteration a resumed run continues from. What the run wrote after it (before a
            crash, or past an older checkpoint resumed) is dropped from ``metrics.json``, and TensorBoard
            hides those steps of the earlier event files (``purge_step``), so that each iteration's
            numbers appear once, the resumed run's.
        rewriting_at: the iteration an evaluation-only run evaluates again. What it writes there replaces
            the ``metrics.json`` lines of that iteration with the same tags (the earlier evaluation), when it
            is written: an evaluation that fails keeps the earlier one. TensorBoard's files, append-only,
            then hold both.
    """

    def __init__(
        self, output_dir: str, enabled: bool = True, resumed_at: int | None = None, rewriting_at: int | None = None
    ) -> None:
        self.enabled = enabled
        self._tensorboard = None
        self._json = None
        self._metrics = os.path.join(output_dir, METRICS_FILE)
        self._rewriting_at = rewriting_at
        self.dropped = 0  # metrics.json entries dropped on resume
        if enabled:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only where used

            os.makedirs(output_dir, exist_ok=True)
            purge_step = None
            if resumed_at is not None:
                self.dropped = keep_metrics_until(self._metrics, resumed_at)
                purge_step = resumed_at + 1
            self._tensorboard = SummaryWriter(log_dir=output_dir, purge_step=purge_step)
            self._json = open(self._metrics, "a", encoding="utf-8")

    def write_scalars(self, values: Mapping[str, float], iteration: int) -> None:
        if not self.enabled:
            return
        if iteration == self._rewriting_at:
            self._json.close()
            _rewrite_metrics(
                self._metrics, lambda entry: entry["iteration"] != iteration or not values.keys() & entry.keys()
            )
            self._json = open(self._metrics, "a", encoding="utf-8")
        for tag, value in values.items():
            self._tensorboard.add_scalar(tag, value, iteration)
        self._json.write(json_text({"iteration": iteration, **{k: float(v) for k, v in values.items()}}) + "\n")
        self._json.flush()

    def write_image(self, tag: str, image: np.ndarray, iteration: int) -> None:
        """``image``: ``uint8 [H, W, 3]`` RGB."""
        if self.enabled:
            self._tensorboard.add_image(tag, image, iteration, dataformats="HWC")

    def flush(self) -> None:
        if self.enabled:
            self._tensorboard.flush()

    def close(self) -> None:
        if self.enabled:
            self._tensorboard.close()
            self._json.close()
            self.enabled = False


def keep_metrics_until(path: str, iteration: int) -> int:
    """Drops the lines of the ``metrics.json`` at ``path`` after ``iteration`` (and unreadable ones: a line
    cut by a crash); returns how many. The file is replaced atomically."""
    return _rewrite_metrics(path, lambda entry: entry["iteration"] <= iteration)


def _rewrite_metrics(path: str, keep: Callable[[dict], bool]) -> int:
    """Keeps the lines of the ``metrics.json`` at ``path`` whose entry ``keep`` accepts, and drops the
    unreadable ones; returns how many were dropped. The file is replaced atomically."""
    if not os.path.isfile(path):
        return 0
    with open(path, encoding="utf-8") as file:
        lines = file.read().splitlines()
    kept = [line for line in lines if (entry := _entry(line)) is not None and keep(entry)]
    if len(kept) == len(lines):
        return 0
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=os.path.dirname(path) or ".")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.writelines(line + "\n" for line in kept)
    os.chmod(temporary, os.stat(path).st_mode & 0o777)
    os.replace(temporary, path)
    return len(lines) - len(kept)


def _entry(line: str) -> dict | None:
    """One line's entry, with an integer ``iteration``; None for a line that is not one (cut by a crash)."""
    try:
        entry = json.loads(line)
        return {**entry, "iteration": int(entry["iteration"])}
    except (ValueError, TypeError, KeyError):
        return None
