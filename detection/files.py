"""Files that others can read: permissions as the umask allows, and JSON that strict readers accept.

In JSON a value that is not a finite number (NaN, inf) is written as ``null``: Python's ``json`` writes
``NaN`` and ``Infinity`` by default, which RFC 8259, JavaScript's ``JSON.parse``, ``jq`` and most other
languages' parsers reject. Metrics are ``nan`` where there is nothing to measure (e.g. COCO's ``APs``
without small objects), so every JSON file the tools write goes through here.
"""

import json
import math
import os
from typing import Any

__all__ = ["current_umask", "finite_or_null", "json_text", "write_json"]


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
