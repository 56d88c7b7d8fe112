"""Errors that mean the user's input is wrong (a path, a file, a config key, an option).

Command-line tools report these as one line and exit non-zero; anything else is a bug and keeps its
traceback.
"""


class UserError(Exception):
    """Base class: the message names the file or key, and what was expected."""


class ConfigError(UserError):
    """A config file or override is unreadable, has an unknown key or a value of the wrong type."""


class CheckpointError(UserError):
    """A checkpoint is missing, unreadable, or does not fit the model or dataset it is used with."""


class WeightsError(UserError):
    """Weights by name: an unknown name, or a file of torch hub's cache that changed since its first use."""


class DownloadError(WeightsError):
    """A weights file could not be downloaded; the message names the URL and where to put the file by hand."""


def first_line(error: BaseException) -> str:
    """``"<type>: <first line of the message>"``, or the type alone for an empty message: an error that is not
    the user's, in a one-line report."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
