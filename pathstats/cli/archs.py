"""``pathstats archs``: the registered architectures."""

from __future__ import annotations

import argparse

from pathstats._format import format_table

from ._common import EXIT_OK, print_result

__all__ = ["register"]


def register(commands) -> None:
    """Add the ``archs`` sub-command to the sub-parsers object of ``pathstats``' parser."""
    archs = commands.add_parser("archs", help="list the registered architectures")
    archs.add_argument("--json", action="store_true", help="print one JSON object")
    archs.set_defaults(handler=_cmd_archs)


def _cmd_archs(args: argparse.Namespace) -> int:
    from pathstats import nets

    print_result({name: arch.description for name, arch in nets.ARCHITECTURES.items()}, args.json,
                 lambda: format_table(["architecture", "description"], [[n, a.description] for n, a in nets.ARCHITECTURES.items()],
                                      align="ll"))
    return EXIT_OK
