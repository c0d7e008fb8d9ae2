"""The ``pathstats`` command line (documented on the docs page "Command line").

One module per command, each with one ``register(commands)`` that adds its
sub-parser and handler; the handlers parse, check and print, and leave the work to
the library.  Shared plumbing: :mod:`pathstats.cli._common` (exit statuses, output,
the mapping of errors to exit statuses) and :mod:`pathstats.cli._arguments` (flags
that several commands share).

Every error a user can cause ends the command with one line on stderr and exit
status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from ._common import Parser, call_handler, version

# The engines (torch, networkx, numpy) are imported by the commands that use them, not
# here: `pathstats --version` and argument errors answer without loading them.

__all__ = ["main", "run", "COMMANDS"]

#: The commands, in the order ``pathstats --help`` lists them: each is the module
#: ``pathstats.cli.<name>``.
COMMANDS = ("dag", "predict", "archs", "sweep", "verify", "attack", "train", "experiment")


def _build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="pathstats",
        description="Path sums over computational DAGs and the input-gradient "
        "predictions of Simon-Gabriel et al. (ICML 2019).",
    )
    parser.add_argument("--version", action="version", version=version())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status.

    0: done; 1: the result was printed but a file could not be written, or an
    internal error (one line; ``PATHSTATS_DEBUG=1`` shows the traceback); 2: a bad
    input, refused before the work; 130: interrupted (finished parts of a sweep kept);
    ``train`` and ``experiment`` add theirs (their ``--help``).  All are
    :mod:`pathstats.cli._common`'s ``EXIT_*``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:  # before the parser, whose commands import the engines (seconds); exits as argparse's would
        print(version())
        raise SystemExit(0)
    parser = _build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    return call_handler(args)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
