"""``pathstats dag``: exact path sums, path counts, Lemma 7 and (S) on a DAG file."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from pathstats._format import format_table
from pathstats._validate import check_int
from pathstats.errors import InvalidArgumentError
from pathstats.provenance import provenance

from ._common import EXIT_OK, print_result

if TYPE_CHECKING:
    from pathstats.dag.analysis import DagReport

__all__ = ["register"]


def register(commands) -> None:
    """Add the ``dag`` sub-command to the sub-parsers object of ``pathstats``' parser."""
    from pathstats.dag.generators import EXAMPLES

    dag = commands.add_parser(
        "dag",
        help="exact path sums, path counts, Lemma 7 and (S) on a DAG file",
        description="Read a DAG in networkx node-link JSON (parallel edges allowed) and "
        "print, per input node, the exact path sum S(x), the exact number of paths to "
        "the output, Lemma 7's total and whether the symmetry assumption (S) holds.",
    )
    source = dag.add_mutually_exclusive_group(required=True)
    source.add_argument("graph", nargs="?", metavar="GRAPH.json", help="node-link JSON file, or - for standard input")
    source.add_argument("--example", choices=sorted(EXAMPLES), help="an embedded example DAG instead of a file")
    dag.add_argument("--output", metavar="NODE", help="the output node o (default: the only sink)")
    dag.add_argument("--json", action="store_true", help="print one JSON object")
    dag.add_argument("--max-rows", type=int, default=40, metavar="N", help="input rows in the table (default 40)")
    dag.set_defaults(handler=_cmd_dag)


def _default_output(G) -> object:
    from pathstats.dag.paths import check_acyclic

    check_acyclic(G)  # a cycle, not the count of sinks it leaves, is what is wrong with such a graph
    sinks = [v for v in G if G.out_degree(v) == 0]
    if len(sinks) != 1:
        raise InvalidArgumentError(f"the graph has {len(sinks)} sinks {sinks[:10]!r}; name the output with --output NODE")
    return sinks[0]


def _cmd_dag(args: argparse.Namespace) -> int:
    from pathstats.dag.analysis import analyze_dag
    from pathstats.dag.generators import EXAMPLES
    from pathstats.dag.graphio import read_node_link, resolve_node

    check_int(args.max_rows, "--max-rows", minimum=0)
    if args.example:
        G, output = EXAMPLES[args.example][1]()
        source = f"example {args.example}"
    else:
        G, output = read_node_link(args.graph), None
        source = "standard input" if args.graph == "-" else args.graph
    if args.output is not None:
        output = resolve_node(G, args.output)
    elif output is None:
        output = _default_output(G)
    start = time.perf_counter()
    report = analyze_dag(G, output, progress=not args.json)
    elapsed = time.perf_counter() - start
    print_result(lambda: {**report.to_dict(), "elapsed_s": elapsed, "provenance": provenance(argv=args.argv)},
                 args.json, lambda: _dag_text(report, source, G.number_of_edges(), elapsed, args.max_rows))
    return EXIT_OK


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
