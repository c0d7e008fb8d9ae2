"""Benchmark: the layer engine against the generic DAG engine, and the layer engine at scale.

Part 1 computes the same quantities (path-sum map, exact path counts, model-mode
map, (S) classes) for conv6 both ways: the generic engine on the expanded
neuron-level DAG, and the layer engine on arrays; sizes grow until the generic
engine (expansion included) passes 60 s.  conv6 is built with 8 channels so the
neuron DAG fits in memory (at 64 channels and the smallest size, 17 x 17, it
already has 15 million edges); the layer engine's cost does not depend on channels.

Part 2 runs the layer engine alone on conv6 (64 channels) at 3x256x256 and
3x1024x1024, with a breakdown and the peak memory.

Usage: python benchmarks/predict.py [--out benchmarks/predict.json] [--quick]
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

import numpy as np

from pathstats import nets
from pathstats import path_counts, path_sums, symmetry_classes, weighted_path_sums
from pathstats._format import format_table
from pathstats._io import write_json
from pathstats.provenance import provenance
from pathstats.layer_engine.expand import expand
from pathstats.layer_engine import backward_map, count_classes, fingerprint_maps, path_count_map
from pathstats.prediction import predict
from pathstats.layer_engine.trace import read_model


def _layer_engine(model, shape):
    graph = read_model(model, shape, init=model.init_variances())
    path_sum = backward_map(graph, "path_sum")
    counts = path_count_map(graph)
    model_map = backward_map(graph, "model")
    return path_sum.ravel(), counts.ravel(), model_map.ravel(), count_classes(fingerprint_maps(graph))


def _generic_engine(model, shape):
    graph = read_model(model, shape, init=model.init_variances())
    G, o, inputs, gain = expand(graph)
    sums, counts = path_sums(G, o, exact=False), path_counts(G, o)
    model_map = weighted_path_sums(G, o, "model_factor", "gain", one=1.0)
    classes = symmetry_classes(G, o)
    return (np.array([sums[x] for x in inputs]), [counts[x] for x in inputs],
            np.array([gain * model_map[x] for x in inputs]), len(classes), G.number_of_edges())


def layer_versus_generic(sizes, channels, budget_s):
    rows = []
    for size in sizes:
        model, shape = nets.build("conv6", (3, size, size), channels=channels), (3, size, size)
        start = time.perf_counter()
        g_sum, g_count, g_model, g_classes, edges = _generic_engine(model, shape)
        generic_s = time.perf_counter() - start
        start = time.perf_counter()
        l_sum, l_count, l_model, l_classes = _layer_engine(model, shape)
        layer_s = time.perf_counter() - start
        agree = (np.allclose(l_sum, g_sum, rtol=1e-12, atol=0) and list(l_count) == g_count
                 and np.allclose(l_model, g_model, rtol=1e-12, atol=0) and l_classes == g_classes)
        rows.append(dict(size=size, channels=channels, dag_edges=edges, generic_s=generic_s, layer_s=layer_s,
                         ratio=generic_s / layer_s, agree=bool(agree)))
        print(f"  3x{size}x{size}: {edges:,} edges, generic {generic_s:.1f} s, layer {layer_s:.3f} s", file=sys.stderr)
        del g_sum, g_count, g_model
        gc.collect()
        if generic_s > budget_s:
            break
    return rows


def _peak_mib(fn) -> float:
    gc.collect()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def layer_at_scale(sizes, repeats):
    rows = []
    for size in sizes:
        shape = (3, size, size)
        model = nets.build("conv6", shape)
        predict(model, shape)  # warm-up: imports, first trace
        graph = read_model(model, shape, init=model.init_variances())
        steps = {
            "trace + rules": lambda: read_model(model, shape, init=model.init_variances()),
            "model-mode map": lambda: backward_map(graph, "model"),
            "path-sum map": lambda: backward_map(graph, "path_sum"),
            "exact path counts": lambda: path_count_map(graph),
            "(S) fingerprints + classes": lambda: count_classes(fingerprint_maps(graph)),
            "predict() total": lambda: predict(model, shape),
        }
        for name, fn in steps.items():
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            rows.append(dict(size=size, step=name, seconds=float(np.median(times)), peak_mib=_peak_mib(fn)))
            print(f"  3x{size}x{size} {name}: {np.median(times):.3f} s", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/predict.json", help="JSON results (written atomically)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    import torch

    threads = torch.get_num_threads()
    print("part 1: generic engine (expanded DAG) vs layer engine, conv6 with 8 channels", file=sys.stderr)
    sizes = [17, 20] if args.quick else [17, 24, 32, 40, 48, 64, 80, 96, 128]
    part1 = layer_versus_generic(sizes, channels=8, budget_s=5 if args.quick else 60)
    print("part 2: layer engine alone, conv6 (64 channels)", file=sys.stderr)
    part2 = layer_at_scale([64] if args.quick else [256, 1024], repeats=1 if args.quick else 3)

    print(f"\nSame quantities both ways (path sums, exact counts, model map, (S) classes); conv6, 8 channels; {threads} threads")
    print(format_table(
        ["input", "DAG edges", "generic s", "layer s", "ratio", "agree"],
        [[f"3x{r['size']}x{r['size']}", f"{r['dag_edges']:,}", f"{r['generic_s']:.2f}", f"{r['layer_s']:.3f}", f"{r['ratio']:.0f}x", r["agree"]] for r in part1],
    ))
    print("\nLayer engine alone, conv6 (64 channels), median of repeats")
    print(format_table(["input", "step", "seconds", "peak MiB (tracemalloc)"],
                       [[f"3x{r['size']}x{r['size']}", r["step"], f"{r['seconds']:.3f}", f"{r['peak_mib']:.0f}"] for r in part2], align="llrr"))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS {rss:.0f} MiB (generic engine's DAGs included)")
    result = dict(machine=dict(python=platform.python_version(), cpus=os.cpu_count(), torch_threads=threads),
                  layer_vs_generic=part1, layer_alone=part2, process_peak_rss_mib=rss)
    write_json(args.out, {**result, "provenance": provenance(device="cpu")})
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
