"""Plain-text tables for the command line."""

from __future__ import annotations

from typing import Sequence

__all__ = ["format_table"]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """Return a table with one space-padded column per header.

    ``align`` has one letter per column, ``"l"`` or ``"r"`` (default: the first
    column left, the others right).

    Examples
    --------
    >>> print(format_table(["name", "value"], [["a", 1], ["bb", 22]]))
    name  value
    a         1
    bb       22
    """
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    align = align or "l" + "r" * (len(headers) - 1)
    widths = [max(len(row[k]) for row in cells) for k in range(len(headers))]
    lines = []
    for row in cells:
        parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)
