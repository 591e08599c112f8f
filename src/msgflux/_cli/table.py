"""Aligned plain-text tables for the ``msgflux`` command (no colour, no dependencies)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from typing import TextIO

__all__ = ["print_table"]


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *,
                right: Sequence[int] = (), flex: int = 0, out: TextIO | None = None) -> None:
    """Print ``rows`` under ``headers`` with columns padded to one width.

    ``right``: indexes of right-aligned (numeric) columns. On a terminal the table is
    fitted to its width by shortening column ``flex`` first (cells end in ``…``) and
    then cutting lines; piped output is never shortened, so ``grep`` sees everything.
    """
    out = out or sys.stdout
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    limit = shutil.get_terminal_size().columns if out.isatty() else None
    if limit is not None:
        _fit(widths, [len(h) for h in headers], limit, flex)
    for row in (headers, *rows):
        cells = []
        for i, cell in enumerate(row):
            width = widths[i]
            if len(cell) > width:
                cell = cell[: width - 1] + "…"
            cells.append(cell.rjust(width) if i in right else cell.ljust(width))
        line = "  ".join(cells).rstrip()
        if limit is not None and len(line) > limit:
            line = line[: limit - 1] + "…"
        out.write(line + "\n")


def _fit(widths: list[int], floors: list[int], limit: int, flex: int) -> None:
    """Narrow columns (never below their header) until the table fits in ``limit``."""
    excess = sum(widths) + 2 * (len(widths) - 1) - limit
    cut = max(0, min(excess, widths[flex] - floors[flex]))
    widths[flex] -= cut  # the column that matters least when cut gives way first
    excess -= cut
    while excess > 0:
        i = max(range(len(widths)), key=lambda i: widths[i] - floors[i])
        if widths[i] <= floors[i]:
            return  # cannot fit: lines are cut at the edge instead
        widths[i] -= 1
        excess -= 1
