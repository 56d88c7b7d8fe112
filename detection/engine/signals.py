"""SIGINT/SIGTERM as a request to stop at the end of the current iteration (and save a checkpoint)."""

import signal
import threading
from types import FrameType, TracebackType


class StopRequest:
    """While active, the first SIGINT or SIGTERM sets :attr:`signal_number` instead of killing the process.

    A second SIGINT raises ``KeyboardInterrupt`` at once, for a user who does not want to wait for
    the checkpoint. Outside the main thread (where handlers cannot be installed) it does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + (self.signal_number or 0)

    def _handle(self, signal_number: int, frame: FrameType | None) -> None:
        if self.signal_number == signal.SIGINT and signal_number == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_number = signal_number

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}
        return self

    def __exit__(self, kind: type | None, value: BaseException | None, traceback: TracebackType | None) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}
