"""Plain-text tables for the evaluation reports (Markdown pipe tables: readable in logs, pasteable)."""

import math
from collections.abc import Sequence


def format_metric(value: float) -> str:
    """A metric in ``[0, 1]`` with three decimals, as ``COCOeval``'s summary and ``metrics.json`` give it
    (a fraction, not a percentage); NaN as ``nan``."""
    return "nan" if math.isnan(value) else f"{value:.3f}"


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligns ``rows`` (already formatted cells, one list per row) under ``header``."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths)) + " |"

    separator = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(header), separator, *(line(row) for row in rows)])
