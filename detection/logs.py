"""The package's log: every module logs to ``logging.getLogger(__name__)``, under the ``detection`` logger.

Library code never prints; what reaches the user depends on how the ``detection`` logger is set up:
``detection.cli.run_cli`` shows INFO messages (evaluation tables included) on stdout, and a training
run adds timestamps and ``log.txt``. Without either, Python's defaults show warnings and errors only.
Loads no torch.
"""

import logging
import os
import sys
from typing import TextIO

LOGGER_NAME = "detection"
LOG_FILE = "log.txt"
# ``logger.error(message, extra=LOG_FILE_ONLY)`` writes to log.txt only: for the error that ends a run,
# which the tool itself prints on stderr.
LOG_FILE_ONLY = {"log_file_only": True}


def setup_logging(output_dir: str | None = None, main_process: bool = True, timestamps: bool = True) -> logging.Logger:
    """Sends the ``detection`` logger's INFO messages to stdout (and ``output_dir/log.txt``); replaces any
    earlier setup. Other processes of a distributed run show errors only.

    Args:
        output_dir: where ``log.txt`` goes (main process only); None: stdout only.
        timestamps: prefix each message with the date and time.
    """
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.INFO if main_process else logging.ERROR)
    logger.propagate = False
    if timestamps:
        formatter = logging.Formatter("[%(asctime)s] %(message)s", datefmt="%m/%d %H:%M:%S")
    else:
        formatter = logging.Formatter("%(message)s")
    stdout = _StdoutHandler()
    stdout.addFilter(lambda record: not getattr(record, "log_file_only", False))
    handlers: list[logging.Handler] = [stdout]
    if main_process and output_dir:
        os.makedirs(output_dir, exist_ok=True)
        handlers.append(logging.FileHandler(os.path.join(output_dir, LOG_FILE), encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return logger


class _StdoutHandler(logging.StreamHandler):
    """Writes to ``sys.stdout`` as it is at each message, so that the log follows a later redirection."""

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: TextIO) -> None:  # StreamHandler.__init__ sets it
        pass
