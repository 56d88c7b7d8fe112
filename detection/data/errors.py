"""Errors and warnings raised by the datasets layer."""

import os

from ..errors import UserError

TRY_SHAPES = "to try the toolkit without any download, use --dataset shapes"


class DatasetError(UserError):
    """A dataset is missing, malformed or inconsistent.

    The message is one line that starts with the offending file and, when known, the field:
    ``"/data/coco/annotations/instances_val2017.json: field 'annotations[3].bbox': expected ..."``.
    ``path`` and ``field`` are also kept as attributes for callers that want them separately.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None, field: str | None = None) -> None:
        self.path = None if path is None else os.fspath(path)
        self.field = field
        prefix = ""
        if self.path is not None:
            prefix = f"{self.path}: "
        if field is not None:
            prefix += f"field '{field}': "
        super().__init__(prefix + message)


class ImageReadError(DatasetError):
    """An image file is missing, empty, corrupt or in an unsupported pixel format."""


class DatasetWarning(UserWarning):
    """Data was dropped or skipped (degenerate boxes, unreadable images); the message names the file."""
