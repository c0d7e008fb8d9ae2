"""Benchmark: wall time to a 1% relative standard error on E||do/dx||_2^2 (conv6, d = 3072, CPU).

Baseline: one initialisation at a time (``reset_parameters``), one forward pass
and one ``torch.autograd.grad`` per logit; the per-initialisation sample is the
mean over the K logits of ||do_k/dx||^2.

verify: ``verify.run_monte_carlo`` — one forward and one backward pass per
initialisation for a random logit (plus one for the loss gradient in the full
report), B initialisations as one batch (grouped convolutions), with the
classifier's weights integrated analytically where exact (``verify.reduction``:
same mean, lower variance); the "raw" row keeps the plain gradients, to show what
the reduction and the batching each contribute.

Each method draws chunks of initialisations until the standard error of the mean
total falls below 1% of the mean; the methods alternate, ``--repeats`` times, in
one process, and the medians are compared.  The script also counts FLOPs per
initialisation (``torch.utils.flop_counter``) and measures the machine's float32
matmul rate.

Usage: python benchmarks/verify.py [--out benchmarks/verify.json] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

# This file is named as the issue asks, benchmarks/verify.py, which would shadow the
# ``verify`` package: drop the script's own folder from the import path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pathstats import nets  # noqa: E402
from pathstats._format import format_table
from pathstats._io import write_json  # noqa: E402
from pathstats.trace import read_model  # noqa: E402
from pathstats.verify.montecarlo import run_monte_carlo  # noqa: E402

SHAPE = (3, 32, 32)


def baseline_samples(model, count: int, generator: torch.Generator) -> list:
    values = []
    for _ in range(count):
        model.reset_parameters(generator)
        x = torch.randn((1,) + SHAPE, generator=generator).requires_grad_(True)
        out = model(x)
        total = 0.0
        for k in range(out.shape[1]):
            (grad,) = torch.autograd.grad(out[0, k], x, retain_graph=k + 1 < out.shape[1])
            total += grad.double().pow(2).sum().item()
        values.append(total / out.shape[1])
    return values


def verify_method(model, batch: int, **options):
    """``seed -> chunk -> totals`` of 2 batches of ``run_monte_carlo`` with these options."""
    def make(seed: int):
        def chunk(index: int) -> list:
            result = run_monte_carlo(model, SHAPE, 2 * batch, seed=seed * 1000 + index, batch=batch, **options)
            return list(result.grad_sq_samples.reshape(result.samples, -1).sum(axis=1))
        return chunk
    return make


def until_one_percent(draw_chunk, target: float, max_samples: int) -> dict:
    """Draw chunks until stderr / mean <= target; return samples, seconds and the estimate."""
    values: list = []
    start = time.perf_counter()
    chunk = 0
    while True:
        values += draw_chunk(chunk)
        chunk += 1
        v = np.asarray(values)
        rse = v.std(ddof=1) / math.sqrt(len(v)) / v.mean() if len(v) > 2 else math.inf
        if rse <= target or len(v) >= max_samples:
            return {"samples": len(v), "seconds": time.perf_counter() - start, "estimate": float(v.mean()),
                    "rse": float(rse), "cv": float(v.std(ddof=1) / v.mean())}


def flops_per_init(model) -> dict:
    """FLOPs per initialisation: a pass costs 2 x (edges of the computational DAG of the
    convolutions and linear layers), forward or input-gradient backward alike."""
    graph = read_model(model, SHAPE)
    edges = sum(int(np.broadcast_to(r.in_degree(), r.out_shape).sum()) for r in graph.node_rules() if r.category == "random")
    per_pass = 2 * edges
    return {"per_pass": per_pass, "baseline": per_pass * (1 + graph.classes),
            "verify_logit_only": per_pass * 2, "verify_full": per_pass * 3}


def matmul_rate(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/verify.json")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="5% target instead of 1%, for a smoke run")
    args = parser.parse_args()
    target = 0.05 if args.quick else 0.01
    model = nets.build("conv6", SHAPE)
    methods = {
        "baseline (1 init, K autograd.grad)": lambda seed: (lambda chunk: baseline_samples(model, 50, torch.Generator().manual_seed(seed * 1000 + chunk))),
        "verify, logit only, raw samples": verify_method(model, args.batch, loss=False, reduce=False),
        "verify, logit only": verify_method(model, args.batch, loss=False, reduce=True),
        "verify, full report (+ loss probe)": verify_method(model, args.batch, loss=True, reduce=True),
    }
    for make in methods.values():  # warm-up: first calls pay for lazy initialisation
        make(99)(0)
    runs: dict = {name: [] for name in methods}
    for repeat in range(args.repeats):
        for name, make in methods.items():
            runs[name].append(until_one_percent(make(repeat + 1), target, max_samples=20000))
            print(f"  repeat {repeat + 1}: {name}: {runs[name][-1]['seconds']:.2f} s, {runs[name][-1]['samples']} inits", file=sys.stderr)
    flops = flops_per_init(model)
    peak = matmul_rate()
    base_name = next(iter(methods))
    median = {name: float(np.median([r["seconds"] for r in rs])) for name, rs in runs.items()}
    rows = []
    for name, rs in runs.items():
        samples = int(np.median([r["samples"] for r in rs]))
        per_init = float(np.median([r["seconds"] / r["samples"] for r in rs]))
        key = "baseline" if name == base_name else ("verify_full" if "full" in name else "verify_logit_only")
        rate = flops[key] / per_init
        rows.append({"method": name, "seconds_to_target": median[name], "samples": samples, "ms_per_init": 1e3 * per_init,
                     "cv": float(np.median([r["cv"] for r in rs])), "speedup": median[base_name] / median[name],
                     "gflop_per_init": flops[key] / 1e9, "gflops": rate / 1e9, "fraction_of_matmul_peak": rate / peak,
                     "estimates": [r["estimate"] for r in rs]})
    print(f"\nTime to a {100 * target:g}% relative standard error on E||do/dx||_2^2, conv6 3x32x32, CPU "
          f"({torch.get_num_threads()} threads), median of {args.repeats} alternating runs")
    print(format_table(["method", "seconds", "speed-up", "inits", "ms/init", "cv/init", "GFLOP/init", "GFLOP/s", "of matmul peak"],
                       [[r["method"], f"{r['seconds_to_target']:.2f}", f"{r['speedup']:.2f}x", r["samples"], f"{r['ms_per_init']:.2f}",
                         f"{r['cv']:.3f}", f"{r['gflop_per_init']:.3f}", f"{r['gflops']:.1f}", f"{100 * r['fraction_of_matmul_peak']:.0f}%"] for r in rows], align="lrrrrrrrr"))
    print(f"float32 matmul (2048^2) on this machine: {peak / 1e9:.0f} GFLOP/s")
    result = dict(machine=dict(python=platform.python_version(), torch=torch.__version__, cpus=os.cpu_count(),
                               threads=torch.get_num_threads(), matmul_gflops=peak / 1e9),
                  target_rse=target, rows=rows, runs=runs)
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
