"""Plumbing shared by every command: exit statuses, the one-line parser, result output,
files written after the result, and the mapping of errors to exit statuses.

Nothing here imports an engine (torch, networkx, numpy): ``pathstats --version`` and
argument errors answer without loading them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable

from pathstats._io import write_json
from pathstats.errors import (EXIT_ALL_FAILED, EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_OK, EXIT_SIGNAL,  # noqa: F401
                              EXIT_SOME_FAILED, EXIT_USAGE, EXIT_WRITE, OutputPathError, PathstatsError)

__all__ = ["EXIT_OK", "EXIT_WRITE", "EXIT_USAGE", "EXIT_DIVERGED", "EXIT_SOME_FAILED", "EXIT_ALL_FAILED",
           "EXIT_INTERRUPTED", "EXIT_SIGNAL", "Parser", "print_result", "write_after", "PartialResults",
           "check_extension", "one_line", "version", "call_handler"]

# The exit statuses of every command live in pathstats.errors (one table beside the errors
# that lead to them); the commands import them from here.


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other error."""

    def error(self, message: str):  # noqa: D102 - argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def print_result(data: object, as_json: bool, render: Callable[[], str], *, indent: int | None = None) -> None:
    """Print a command's result: one JSON object with ``--json``, else the text ``render()``
    returns.  ``data`` is the object, or a function that builds it; each form is built
    only when it is printed.

    Examples
    --------
    >>> print_result({"d": 3}, True, lambda: "d = 3")
    {"d": 3}
    >>> print_result(lambda: {"d": 3}, False, lambda: "d = 3")
    d = 3
    """
    print(json.dumps(data() if callable(data) else data, indent=indent) if as_json else render())


def write_after(command: str, writes: list, quiet: bool, failed: bool = False) -> int:
    """Write files after the result is printed: a failed write never loses the result,
    and is reported on stderr (exit status :data:`EXIT_WRITE`).

    ``writes``: ``(path, write, detail)`` triples; a ``None`` path is skipped.
    """
    status = EXIT_WRITE if failed else EXIT_OK
    for path, write, detail in writes:
        if not path:
            continue
        try:
            write()
        except PathstatsError as exc:
            print(f"pathstats {command}: error: the result is printed above, but {exc}", file=sys.stderr)
            status = EXIT_WRITE
            continue
        if not quiet:
            print(f"wrote {path}" + (f" {detail}" if detail else ""))
    return status


class PartialResults:
    """Keeps a long command's finished parts: written to ``path`` (if any) after each
    part, printed if the command is interrupted."""

    def __init__(self, command: str, path: str | None, parts: int, unit: str) -> None:
        self.command, self.path, self.parts, self.unit = command, path, parts, unit
        self.data, self.done, self.failed, self.written = None, 0, False, False

    def keep(self, data: dict) -> None:
        self.data, self.done = data, len(data["rows"])
        if self.path and not self.failed:
            try:
                write_json(self.path, data)
                self.written = True
            except PathstatsError as exc:  # keep computing; the result is printed at the end
                self.failed = True
                print(f"pathstats {self.command}: warning: {exc}; the run goes on and prints its result", file=sys.stderr)

    def interrupted(self, as_json: bool, render: Callable[[dict], str]) -> int:
        """Print the finished parts (JSON, or the text ``render`` makes of them) and say
        what is kept; return :data:`EXIT_INTERRUPTED`."""
        if self.data is not None:
            print_result(self.data, as_json, lambda: render(self.data))
        where = (f"they are in {self.path}" if self.written and not self.failed else "they are printed above")
        finished = f"the {self.done} finished {self.unit} are kept: {where}" if self.done else f"no {self.unit[:-1]} had finished"
        print(f"pathstats {self.command}: interrupted after {self.done} of {self.parts} {self.unit}; {finished}",
              file=sys.stderr)
        return EXIT_INTERRUPTED


def check_extension(path: str, extension: str, option: str) -> None:
    """Refuse an output file name that does not end with the format's ``extension``."""
    if not path.lower().endswith(extension):
        raise OutputPathError(f"{option} writes {extension} files; end the file name with {extension}, not {path!r}")


def one_line(text: object) -> str:
    """``text`` on one line (an error message for stderr).

    >>> one_line("a\\n  b")
    'a b'
    """
    return " ".join(str(text).split())


def version() -> str:
    """The versions, read without importing torch (its metadata has the same version string)."""
    import platform
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    from pathstats import __version__

    try:
        torch_version = package_version("torch")
    except PackageNotFoundError:  # an unusual install (e.g. a source build on the path): ask torch itself
        import torch

        torch_version = torch.__version__
    return f"pathstats {__version__} (torch {torch_version}, Python {platform.python_version()})"


_OUT_OF_MEMORY = "out of memory; use a smaller input, fewer --samples or a smaller --batch"


def call_handler(args: argparse.Namespace) -> int:
    """Run the parsed command's handler and map what it raises to one line on stderr and
    an exit status: a :class:`~pathstats.errors.PathstatsError` (bad input) or running out
    of memory: :data:`EXIT_USAGE`; Ctrl-C: :data:`EXIT_INTERRUPTED`; anything else is a
    bug: :data:`EXIT_WRITE` (``PATHSTATS_DEBUG=1`` shows the traceback)."""
    prefix = f"pathstats {args.command}"
    try:
        return args.handler(args)
    except PathstatsError as exc:
        print(f"{prefix}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader (e.g. ``| head``) left early
        sys.stdout = open(os.devnull, "w")
        return EXIT_WRITE
    except RecursionError:
        print(f"{prefix}: error: the input is nested too deeply to process", file=sys.stderr)
        return EXIT_USAGE
    except MemoryError:
        print(f"{prefix}: error: {_OUT_OF_MEMORY}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a bug: one line, the traceback on request
        if os.environ.get("PATHSTATS_DEBUG"):
            raise
        if type(exc).__name__ == "OutOfMemoryError" or "can't allocate memory" in str(exc):  # torch's, GPU or CPU
            print(f"{prefix}: error: {_OUT_OF_MEMORY}", file=sys.stderr)
            return EXIT_USAGE
        print(f"{prefix}: internal error: {type(exc).__name__}: {one_line(exc)[:300]} (a bug: please report it with "
              "the command line; PATHSTATS_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_WRITE
