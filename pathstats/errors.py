"""The exceptions of pathstats.

Every error a user can cause derives from :class:`PathstatsError`, so the command
line can turn it into one line on stderr; each also derives from the built-in
exception a Python caller would expect (``ValueError``, ``LookupError``).
"""

from __future__ import annotations

__all__ = [
    "PathstatsError",
    "NotADAGError",
    "UnknownNodeError",
    "GraphFormatError",
    "OutputPathError",
    "InvalidArgumentError",
]


class PathstatsError(Exception):
    """Base class of the errors that pathstats raises on bad input."""


class NotADAGError(PathstatsError, ValueError):
    """The graph has a directed cycle, so path sums are not defined."""


class UnknownNodeError(PathstatsError, LookupError):
    """A node named by the caller is not in the graph."""

    def __str__(self) -> str:  # LookupError would quote the message like a key
        return str(self.args[0]) if self.args else ""


class GraphFormatError(PathstatsError, ValueError):
    """A graph or graph file is unreadable, malformed or not directed."""


class OutputPathError(PathstatsError, ValueError):
    """An output path cannot be written (missing or unwritable folder, a folder where a
    file is wanted or a file where a folder is wanted, an unknown file format)."""


class InvalidArgumentError(PathstatsError, ValueError):
    """An argument is out of range or malformed (a seed, a count, a list of sizes...)."""
