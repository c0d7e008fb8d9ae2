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

The command as users run it: in the same alternation, ``pathstats verify --arch
conv6 --d 3072 --samples N --json`` runs as a subprocess (a fresh interpreter:
imports, tracing, predictions, the reduction plan, the Monte Carlo and the report),
for N = 200, N = 1000 and the N that reaches the target.  Its time to the target
is the wall time scaled to the same standard error, ``W (rse / target)^2`` (the
cost of a run whose variance matches; set-up counted in full at every size, so
N = 200 pays it about 3 times over and N = 1000 about 0.6 times).  The baseline
keeps its in-process time (no interpreter start, no imports, no model build):
the comparison is the strict one.  The baseline also runs as a script in a fresh
interpreter (``--baseline-only``: imports, model, loop until the target), whose
wall time is the fair end-to-end comparison.  A last table times each set-up stage
of the command in a fresh interpreter.

``--threads N`` runs every method, and the subprocesses, on N torch threads
(``OMP_NUM_THREADS``); on a machine whose cores other jobs share, torch's default
threads wait on each other and the small per-initialisation operations of the
baseline slow down 50-fold, so the comparison is only fair on one thread there.

Usage: python benchmarks/verify.py [--out benchmarks/verify.json] [--repeats 3] [--quick] [--no-command] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
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
from pathstats.stats import standard_error  # noqa: E402
from pathstats.layer_engine.trace import read_model  # noqa: E402
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
        rse = standard_error(v) / v.mean() if len(v) > 2 else math.inf
        if rse <= target or len(v) >= max_samples:
            return {"samples": len(v), "seconds": time.perf_counter() - start, "estimate": float(v.mean()),
                    "rse": float(rse), "cv": float(v.std(ddof=1) / v.mean())}


def command_run(samples: int, seed: int) -> dict:
    """Run ``pathstats verify`` as a user does (console script, fresh interpreter);
    return its wall time and the standard error it reached on E||do/dx||_2^2."""
    script = shutil.which("pathstats", path=os.path.dirname(sys.executable)) or shutil.which("pathstats")
    command = [script, "verify", "--arch", "conv6", "--d", "3072", "--samples", str(samples), "--seed", str(seed), "--json"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=_environment())
    wall = time.perf_counter() - start
    total = json.loads(done.stdout)["grad_sq_total"]
    rse = total["stderr"] / total["estimate"]
    return {"samples": samples, "wall_s": wall, "rse": rse, "estimate": total["estimate"]}


def _environment() -> dict:
    """The environment of the subprocesses: this one, with the thread count of ``--threads``."""
    env = dict(os.environ)
    if _THREADS:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(_THREADS)
    return env


_THREADS: int | None = None  # set by --threads


def command_to_target(run: dict, target: float) -> float:
    """Wall time of the command scaled to the target standard error, ``W (rse / target)^2``."""
    return run["wall_s"] * (run["rse"] / target) ** 2


#: Timed in a fresh interpreter: the set-up stages of ``pathstats verify`` (report.verify, then the CLI's output),
#: one line per stage, in the order the command runs them.
SETUP_STAGES = r"""
import json, sys, time
stages, last = [], time.perf_counter()
def lap(name):
    global last
    now = time.perf_counter(); stages.append([name, now - last]); last = now
import torch; lap("import torch")
import pathstats.cli; lap("import pathstats (engines, CLI)")
from pathstats.verify.report import verify; lap("import pathstats.verify (Monte Carlo, statistics)")
from pathstats import nets
from pathstats.prediction import predict
from pathstats.verify.montecarlo import default_batch, run_monte_carlo
from pathstats.verify.batched import BatchedInitialisations
from pathstats.verify.reduction import plan_reduction
from pathstats.verify.compare import compare
shape = (3, 32, 32)
import torch._dynamo; lap("import torch._dynamo (imported by the first meta-device pass)")
model = nets.build("conv6", shape); lap("build the model (meta-device shape probe)")
model_prediction = predict(model, shape, mode="model"); lap("predict, model mode (fx tracing, engine)")
theory_prediction = predict(model, shape, mode="theory"); lap("predict, theory mode")
batch = default_batch(model, shape); lap("default batch size (meta-device probe)")
runner = BatchedInitialisations(model); plan = plan_reduction(runner.module, model.init_variances()); lap("batched runner and reduction plan")
first = run_monte_carlo(model, shape, batch, seed=1, batch=batch); lap(f"first batch of {batch} (warm-up)")
second = run_monte_carlo(model, shape, batch, seed=2, batch=batch); lap(f"a later batch of {batch}")
compare(second, model_prediction, theory_prediction); lap("compare (z-scores, map test)")
print(json.dumps(stages))
"""


def setup_stages() -> list:
    """``[[stage, seconds], ...]`` of :data:`SETUP_STAGES`, in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", SETUP_STAGES], capture_output=True, text=True, check=True, env=_environment())
    return json.loads(done.stdout.splitlines()[-1])


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
    parser.add_argument("--no-command", action="store_true", help="skip the end-to-end runs of pathstats verify")
    parser.add_argument("--baseline-only", type=int, metavar="SEED", help="run only the baseline to the target (as a script) "
                        "and print its result as JSON")
    parser.add_argument("--threads", type=int, metavar="N", help="torch threads for every method and subprocess "
                        "(default: torch's own choice)")
    args = parser.parse_args()
    global _THREADS
    if args.threads:
        _THREADS = args.threads
        torch.set_num_threads(args.threads)
    target = 0.05 if args.quick else 0.01
    model = nets.build("conv6", SHAPE)
    baseline = lambda seed: (lambda chunk: baseline_samples(model, 50, torch.Generator().manual_seed(seed * 1000 + chunk)))  # noqa: E731
    if args.baseline_only is not None:
        print(json.dumps(until_one_percent(baseline(args.baseline_only), target, max_samples=20000)))
        return
    methods = {
        "baseline (1 init, K autograd.grad)": baseline,
        "verify, logit only, raw samples": verify_method(model, args.batch, loss=False, reduce=False),
        "verify, logit only": verify_method(model, args.batch, loss=False, reduce=True),
        "verify, full report (+ loss probe)": verify_method(model, args.batch, loss=True, reduce=True),
    }
    for make in methods.values():  # warm-up: first calls pay for lazy initialisation
        make(99)(0)
    runs: dict = {name: [] for name in methods}
    # the command at 200 and 1000 initialisations, and at the count that reaches the target
    # (cv of the full report's reduced samples, about 0.25: (0.25 / target)^2)
    command_sizes = [] if args.no_command else [200, 1000, int(math.ceil((0.25 / target) ** 2 / 10) * 10)]
    command_runs: dict = {n: [] for n in command_sizes}
    script_runs: list = []  # the baseline as a script, end to end
    for repeat in range(args.repeats):
        for name, make in methods.items():
            runs[name].append(until_one_percent(make(repeat + 1), target, max_samples=20000))
            print(f"  repeat {repeat + 1}: {name}: {runs[name][-1]['seconds']:.2f} s, {runs[name][-1]['samples']} inits", file=sys.stderr)
        if command_sizes:
            start = time.perf_counter()
            done = subprocess.run([sys.executable, os.path.abspath(__file__), "--baseline-only", str(repeat + 1)]
                                  + (["--quick"] if args.quick else []), capture_output=True, text=True, check=True,
                                  env=_environment())
            script_runs.append({**json.loads(done.stdout.splitlines()[-1]), "wall_s": time.perf_counter() - start})
            print(f"  repeat {repeat + 1}: baseline as a script: {script_runs[-1]['wall_s']:.2f} s", file=sys.stderr)
        for n in command_sizes:
            command_runs[n].append(command_run(n, seed=repeat + 1))
            print(f"  repeat {repeat + 1}: pathstats verify --samples {n}: {command_runs[n][-1]['wall_s']:.2f} s, "
                  f"rse {100 * command_runs[n][-1]['rse']:.2f}%", file=sys.stderr)
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
    command_rows = []
    script = float(np.median([r["wall_s"] for r in script_runs])) if script_runs else math.nan
    for n, rs in command_runs.items():
        to_target = float(np.median([command_to_target(r, target) for r in rs]))
        command_rows.append({"samples": n, "wall_s": float(np.median([r["wall_s"] for r in rs])),
                             "rse": float(np.median([r["rse"] for r in rs])), "seconds_to_target": to_target,
                             "speedup": median[base_name] / to_target, "speedup_vs_script": script / to_target})
    stages = [] if args.no_command else setup_stages()
    if command_rows:
        print(f"\nThe command as users run it (subprocess, wall time), same alternation; time to {100 * target:g}% = "
              f"W (rse / {target:g})^2; baseline to {100 * target:g}%: {median[base_name]:.2f} s in process, "
              f"{script:.2f} s as a script (fresh interpreter)")
        print(format_table(["command", "wall s", "rse", f"s to {100 * target:g}%", "vs baseline in process", "vs baseline script"],
                           [[f"pathstats verify --samples {r['samples']}", f"{r['wall_s']:.2f}", f"{100 * r['rse']:.2f}%",
                             f"{r['seconds_to_target']:.2f}", f"{r['speedup']:.2f}x", f"{r['speedup_vs_script']:.2f}x"]
                            for r in command_rows], align="lrrrrr"))
        print("\nSet-up of pathstats verify --arch conv6 --d 3072, stage by stage (fresh interpreter; one run)")
        print(format_table(["stage", "s"], [[name, f"{seconds:.3f}"] for name, seconds in stages], align="lr"))
    result = dict(machine=dict(python=platform.python_version(), torch=torch.__version__, cpus=os.cpu_count(),
                               threads=torch.get_num_threads(), matmul_gflops=peak / 1e9,
                               load_average=list(os.getloadavg())),
                  target_rse=target, rows=rows, runs=runs, command=command_rows, baseline_script_runs=script_runs,
                  command_runs={str(n): rs for n, rs in command_runs.items()}, setup_stages=stages)
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
