"""Plain-text tables for the evaluation reports (Markdown pipe tables: readable in logs, pasteable)."""

import math
from collections.abc import Sequence


def format_percent(value: float) -> str:
    """A metric in ``[0, 1]`` as a percentage with one decimal, the way papers report it; NaN as ``nan``."""
    return "nan" if math.isnan(value) else f"{100.0 * value:.1f}"


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligns ``rows`` (already formatted cells, one list per row) under ``header``."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths)) + " |"

    separator = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(header), separator, *(line(row) for row in rows)])
