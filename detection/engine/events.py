"""Where training reports: ``log.txt`` and the console, TensorBoard event files, ``metrics.json`` lines.

Only the main process writes; on the other ranks the writer is a no-op and the log shows errors only.
"""

import logging
import os
import sys
from collections.abc import Mapping

import numpy as np

from ..files import json_text

LOGGER_NAME = "detection"
LOG_FILE = "log.txt"
METRICS_FILE = "metrics.json"


def setup_logging(output_dir: str | None, main_process: bool) -> logging.Logger:
    """The package logger: INFO to stdout and ``output_dir/log.txt`` on the main process, errors only elsewhere."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.INFO if main_process else logging.ERROR)
    logger.propagate = False
    formatter = logging.Formatter("[%(asctime)s] %(message)s", datefmt="%m/%d %H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if main_process and output_dir:
        os.makedirs(output_dir, exist_ok=True)
        handlers.append(logging.FileHandler(os.path.join(output_dir, LOG_FILE), encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return logger


class EventWriter:
    """Scalars and images for TensorBoard (``events.out.tfevents.*``) and ``metrics.json``.

    ``metrics.json`` has one JSON object per write: ``{"iteration": i, "<tag>": value, ...}``; a value
    that is not a finite number is ``null``.
    """

    def __init__(self, output_dir: str, enabled: bool = True) -> None:
        self.enabled = enabled
        self._tensorboard = None
        self._json = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only where used

            os.makedirs(output_dir, exist_ok=True)
            self._tensorboard = SummaryWriter(log_dir=output_dir)
            self._json = open(os.path.join(output_dir, METRICS_FILE), "a", encoding="utf-8")

    def write_scalars(self, values: Mapping[str, float], iteration: int) -> None:
        if not self.enabled:
            return
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
