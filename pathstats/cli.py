"""The ``pathstats`` command line (SPEC section 5).

Every error a user can cause ends the command with one line on stderr and exit
status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Sequence

from ._format import format_table
from .analysis import DagReport, analyze_dag
from .errors import PathstatsError
from .generators import EXAMPLES
from .graphio import read_node_link, resolve_node

__all__ = ["main", "run"]

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other error."""

    def error(self, message: str):  # noqa: D102 - argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pathstats",
        description="Path sums over computational DAGs and the input-gradient "
        "predictions of Simon-Gabriel et al. (ICML 2019).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    dag = commands.add_parser(
        "dag",
        help="exact path sums, path counts, Lemma 7 and (S) on a DAG file",
        description="Read a DAG in networkx node-link JSON (parallel edges allowed) and "
        "print, per input node, the exact path sum S(x), the exact number of paths to "
        "the output, Lemma 7's total and whether the symmetry assumption (S) holds.",
    )
    source = dag.add_mutually_exclusive_group(required=True)
    source.add_argument("graph", nargs="?", metavar="GRAPH.json", help="node-link JSON file")
    source.add_argument("--example", choices=sorted(EXAMPLES), help="an embedded example DAG instead of a file")
    dag.add_argument("--output", metavar="NODE", help="the output node o (default: the only sink)")
    dag.add_argument("--json", action="store_true", help="print one JSON object")
    dag.add_argument("--max-rows", type=int, default=40, metavar="N", help="input rows in the table (default 40)")
    dag.set_defaults(handler=_cmd_dag)
    return parser


def _default_output(G) -> object:
    sinks = [v for v in G if G.out_degree(v) == 0]
    if len(sinks) != 1:
        raise PathstatsError(f"the graph has {len(sinks)} sinks {sinks[:10]!r}; name the output with --output NODE")
    return sinks[0]


def _cmd_dag(args: argparse.Namespace) -> int:
    if args.example:
        G, output = EXAMPLES[args.example][1]()
        source = f"example {args.example}"
    else:
        G, output = read_node_link(args.graph), None
        source = args.graph
    if args.output is not None:
        output = resolve_node(G, args.output)
    elif output is None:
        output = _default_output(G)
    start = time.perf_counter()
    report = analyze_dag(G, output)
    elapsed = time.perf_counter() - start
    if args.json:
        print(json.dumps({**report.to_dict(), "elapsed_s": elapsed}))
    else:
        print(_dag_text(report, source, G.number_of_edges(), elapsed, args.max_rows))
    return 0


def _dag_text(report: DagReport, source: str, n_edges: int, elapsed: float, max_rows: int) -> str:
    d = len(report.inputs)
    class_of = {x: k for k, members in enumerate(report.symmetry_classes, start=1) for x in members}
    rows = [
        [repr(item.node), str(item.path_sum), f"{float(item.path_sum) * d:.6g}", item.path_count, class_of[item.node]]
        for item in report.inputs[:max_rows]
    ]
    lines = [
        f"{source}: output {report.output!r}, d = {d} inputs, {n_edges} edges",
        "",
        format_table(["input x", "S(x) exact", "S(x)*d", "paths", "class"], rows),
    ]
    if d > max_rows:
        lines.append(f"... {d - max_rows} more inputs (--max-rows, or --json for all)")
    scaled = [float(item.path_sum) * d for item in report.inputs]
    lines += [
        "",
        f"Lemma 7 total sum_x S(x) = {report.lemma7_total}" + ("  (= 1, as Lemma 7 says)" if report.lemma7_total == 1 else ""),
    ]
    if report.symmetric:
        lines.append(f"(S) holds: one class of inputs, so S(x) = 1/d = 1/{d} (Lemma 8)")
    else:
        lines.append(
            f"(S) fails: {len(report.symmetry_classes)} classes of inputs; "
            f"S(x)*d ranges from {min(scaled):.6g} to {max(scaled):.6g}"
        )
    lines.append(f"computed in {elapsed:.3g} s")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except PathstatsError as exc:
        print(f"pathstats {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("pathstats: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader (e.g. ``| head``) left early
        sys.stdout = open(os.devnull, "w")
        return 1


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
