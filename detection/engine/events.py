"""Where training reports besides the log (:mod:`detection.logs`): TensorBoard event files, ``metrics.json``.

Only the main process writes; on the other ranks the writer is a no-op.
"""

import os
from collections.abc import Mapping

import numpy as np

from ..files import json_text

METRICS_FILE = "metrics.json"


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
