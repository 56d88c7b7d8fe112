"""Files that others can read: permissions as the umask allows, written whole or not at all, and JSON that
strict readers accept.

In JSON a value that is not a finite number (NaN, inf) is written as ``null``: Python's ``json`` writes
``NaN`` and ``Infinity`` by default, which RFC 8259, JavaScript's ``JSON.parse``, ``jq`` and most other
languages' parsers reject. Metrics are ``nan`` where there is nothing to measure (e.g. COCO's ``APs``
without small objects), so every JSON file the tools write goes through here.
"""

import contextlib
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

__all__ = ["current_umask", "finite_or_null", "json_text", "remove_stale_temporaries", "replacing", "write_json"]

_logger = logging.getLogger(__name__)

# Temporary files are named .tmp-<writer pid>-<random><suffix>; files of this pattern that no live process
# writes are removed when writing into their folder.
TEMPORARY_PREFIX = ".tmp-"
# When this process (nearly) started: a temporary file last modified before it is not being written by it.
_PROCESS_START = time.time()


def finite_or_null(value: Any) -> Any:
    """``value`` with every non-finite float (at any depth of dicts, lists and tuples) replaced by None."""
    if isinstance(value, float):  # numpy's float64 too
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(item) for item in value]
    return value


def json_text(value: Any, indent: int | None = None) -> str:
    """``json.dumps`` of ``value`` with non-finite floats as ``null`` (``allow_nan=False`` checks that none is left)."""
    return json.dumps(finite_or_null(value), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike, value: Any, indent: int | None = 2) -> None:
    """Writes ``value`` to ``path`` as strict JSON (see :func:`json_text`), with a final newline."""
    with open(path, "w", encoding="utf-8") as file:
        file.write(json_text(value, indent) + "\n")


def current_umask() -> int:
    """The process's umask (reading it means setting it: it is set back at once)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def replacing(path: str | os.PathLike, suffix: str) -> Iterator[BinaryIO]:
    """A file opened for writing (``w+b``) that becomes ``path`` when the block ends without an exception:
    a crash, an error or Ctrl+C leaves ``path`` as it was and no partial file under its name.

    The file is a temporary in ``path``'s folder named after this process (``.tmp-<pid>-<random><suffix>``),
    removed on an exception; one that a killed process left is removed by :func:`remove_stale_temporaries`.
    It gets the permissions the umask allows (``mkstemp`` creates files private).
    """
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=f"{TEMPORARY_PREFIX}{os.getpid()}-", suffix=suffix, dir=directory)
    try:
        with os.fdopen(handle, "w+b") as file:
            yield file
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def remove_stale_temporaries(directory: str | os.PathLike, suffix: str) -> list[str]:
    """Removes the ``.tmp-*<suffix>`` files of :func:`replacing` in ``directory`` that no live process is writing.

    A file is stale when it was last modified before this process started and the process that
    wrote it (the pid in its name; unknown for older names) no longer runs on this machine. A file
    being written by another live process, or changed since this process started (another machine
    sharing the folder), is kept.

    Returns:
        The paths removed.
    """
    removed = []
    for entry in os.scandir(directory):
        if not (entry.name.startswith(TEMPORARY_PREFIX) and entry.name.endswith(suffix)):
            continue
        try:
            if not entry.is_file(follow_symlinks=False) or entry.stat().st_mtime >= _PROCESS_START:
                continue
            if _writer_is_alive(entry.name):
                continue
            os.remove(entry.path)
        except OSError:  # removed meanwhile by another process, or not ours to remove
            continue
        removed.append(entry.path)
    if removed:
        _logger.info(f"removed {len(removed)} temporary file(s) that a killed process left: {removed}")
    return removed


def _writer_is_alive(name: str) -> bool:
    pid_text = name[len(TEMPORARY_PREFIX) :].split("-", 1)[0]
    if not pid_text.isdigit():
        return False  # the name of an older version, without a pid
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # an earlier process with this pid: this one did not exist when the file was written
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True
