"""Benchmark: the exact DP engine against brute-force path enumeration.

Part 1 runs both on the same random layered DAGs of growing depth (the number of
paths grows exponentially, the number of edges linearly) and prints their times
and the ratio.  Part 2 runs the DP alone on a layered DAG of over 10^6 edges and
reports seconds and peak memory of each quantity.

Usage: python benchmarks/dag_engine.py [--out results.json] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import time
import tracemalloc

from pathstats import analyze_dag
from pathstats._format import format_table
from pathstats._io import write_json
from pathstats.provenance import provenance
from pathstats.dag.analysis import DagReport
from pathstats.dag.paths import _path_counts, _path_sums, backward_plan
from pathstats.dag.enumeration import brute_force
from pathstats.dag.generators import random_layered_dag
from pathstats.dag.symmetry import _path_degree_polynomials


def _timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def _peak_mib(fn, *args) -> float:
    """Peak Python-heap allocation of one call, in MiB (a second run, traced)."""
    gc.collect()
    tracemalloc.start()
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def dp_versus_enumeration(depths, width, fan_in, seed, budget_s):
    rows = []
    for depth in depths:
        G, o = random_layered_dag(depth, width, fan_in, skip_prob=0.2, parallel_prob=0.1, seed=seed)
        report, dp_s = _timed(analyze_dag, G, o)
        oracle, brute_s = _timed(brute_force, G, o)
        agree = all(
            (item.path_sum, item.path_count, item.path_degrees) == oracle[item.node] for item in report.inputs
        )
        n_paths = sum(item.path_count for item in report.inputs)
        rows.append(
            dict(depth=depth, edges=G.number_of_edges(), paths=n_paths, dp_s=dp_s, brute_s=brute_s,
                 ratio=brute_s / dp_s, agree=agree)
        )
        print(f"  depth {depth}: {n_paths} paths, DP {dp_s:.4f} s, enumeration {brute_s:.4f} s", file=sys.stderr)
        if brute_s > budget_s:
            break
    return rows


def dp_alone(n_layers, width, fan_in, seed):
    (G, o), build_s = _timed(lambda: random_layered_dag(n_layers, width, fan_in, seed=seed))
    plan = backward_plan(G, o)
    steps = {
        "validate + topological plan": (backward_plan, (G, o)),
        "path sums, float64": (_path_sums, (plan, False)),
        "path sums, exact Fraction": (_path_sums, (plan, True)),
        "path counts, exact int": (_path_counts, (plan,)),
        "(S): path-degree polynomials": (_path_degree_polynomials, (plan,)),
        "everything (analyze_dag)": (analyze_dag, (G, o)),
    }
    rows = []
    for name, (fn, args) in steps.items():
        value, seconds = _timed(fn, *args)
        rows.append(dict(step=name, seconds=seconds, peak_mib=_peak_mib(fn, *args)))
        print(f"  {name}: {seconds:.2f} s", file=sys.stderr)
        if isinstance(value, DagReport):
            check = dict(lemma7_total=str(value.lemma7_total), symmetric=value.symmetric,
                         max_path_count_digits=len(str(max(i.path_count for i in value.inputs))))
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the graph included
    return dict(edges=G.number_of_edges(), nodes=G.number_of_nodes(), build_s=build_s, steps=rows, check=check,
                process_peak_rss_mib=rss_mib)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/dag_engine.json", help="JSON results (written atomically)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args()

    print("part 1: DP vs enumeration on random layered DAGs (width 6, fan-in 3, skips, parallel edges)", file=sys.stderr)
    depths = range(2, 7) if args.quick else range(2, 13)
    part1 = dp_versus_enumeration(depths, width=6, fan_in=3, seed=0, budget_s=2 if args.quick else 30)
    big = dict(n_layers=4, width=200, fan_in=20) if args.quick else dict(n_layers=10, width=1000, fan_in=100)
    print(f"part 2: DP alone, {big}", file=sys.stderr)
    part2 = dp_alone(**big, seed=1)

    print("\nDP engine vs brute-force enumeration (same DAGs, exact sums + counts + (S))")
    print(format_table(
        ["depth", "edges", "paths", "DP s", "enumeration s", "ratio", "agree"],
        [[r["depth"], r["edges"], r["paths"], f"{r['dp_s']:.4f}", f"{r['brute_s']:.4f}", f"{r['ratio']:.1f}x", r["agree"]] for r in part1],
    ))
    print(f"\nDP alone on a layered DAG: {part2['edges']:,} edges, {part2['nodes']:,} nodes "
          f"(built in {part2['build_s']:.1f} s); {part2['check']}; "
          f"process peak RSS {part2['process_peak_rss_mib']:.0f} MiB, networkx graph included")
    print(format_table(["step", "seconds", "peak MiB (tracemalloc)"],
                       [[r["step"], f"{r['seconds']:.2f}", f"{r['peak_mib']:.0f}"] for r in part2["steps"]], align="lrr"))

    result = dict(machine=dict(python=platform.python_version(), cpus=os.cpu_count()), enumeration=part1, dp_alone=part2)
    write_json(args.out, {**result, "provenance": provenance(device="cpu")})
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
