"""Per-iteration training statistics over a window: smoothed losses and timings, and the ETA."""

import datetime
from collections import defaultdict, deque
from collections.abc import Mapping


class TrainingMeter:
    """Keeps the last ``window`` values of each statistic and reports their means.

    Args:
        max_iter: the iteration training ends at (for the ETA).
        window: iterations averaged (the log period).
    """

    def __init__(self, max_iter: int, window: int) -> None:
        self.max_iter = max_iter
        self.window = max(1, window)
        self._values: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=self.window))

    def update(self, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            self._values[name].append(float(value))

    def latest(self, name: str) -> float:
        return self._values[name][-1]

    def means(self) -> dict[str, float]:
        return {name: sum(values) / len(values) for name, values in self._values.items() if values}

    def eta(self, iteration: int) -> str:
        """Time left from ``iteration`` at the window's mean iteration time, as ``H:MM:SS``."""
        times = self._values.get("time/iteration")
        if not times:
            return "?"
        seconds = (self.max_iter - iteration) * sum(times) / len(times)
        return str(datetime.timedelta(seconds=int(seconds)))
