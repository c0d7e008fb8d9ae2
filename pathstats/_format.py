"""Plain-text tables for the command line."""

from __future__ import annotations

import textwrap
from typing import Mapping, Sequence

__all__ = ["format_table"]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None,
                 wrap: Mapping[int, int] | None = None) -> str:
    """Return a table with one space-padded column per header.

    ``align`` has one letter per column, ``"l"`` or ``"r"`` (default: the first
    column left, the others right).  ``wrap`` maps a column's index to a width: its
    texts are wrapped at word boundaries onto as many lines as they need (never cut),
    the row's other cells on its first line.

    Examples
    --------
    >>> print(format_table(["name", "value"], [["a", 1], ["bb", 22]]))
    name  value
    a         1
    bb       22
    >>> print(format_table(["claim", "verdict"], [["the slope is one half", "holds"]], wrap={0: 12}))
    claim         verdict
    the slope is    holds
    one half
    """
    wrap = wrap or {}
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    # each row as its lines of cells: a wrapped column spreads over several lines
    lines_of = []
    for row in cells:
        pieces = [textwrap.wrap(c, wrap[k], break_long_words=False, break_on_hyphens=False) or [""]
                  if k in wrap else [c] for k, c in enumerate(row)]
        height = max(len(p) for p in pieces)
        lines_of.append([[p[i] if i < len(p) else "" for p in pieces] for i in range(height)])
    align = align or "l" + "r" * (len(headers) - 1)
    widths = [max(len(line[k]) for row in lines_of for line in row) for k in range(len(headers))]
    lines = []
    for row in lines_of:
        for line in row:
            parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(line, widths, align)]
            lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)
