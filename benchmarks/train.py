"""Cost of one training step of every method, relative to plain training (conv6, 3x32x32).

Each round times one optimisation step (loss, backward, SGD update) of every
method on the same batch, in an order rotated from round to round (interleaved,
so that a shared machine's load hits every method alike); the table gives each
method's median step time over the rounds and its median ratio to the plain
step of the same round.  The finite-difference penalty (Finlay & Oberman) exists
for its cost: the goal is ``fd-l2`` at most 0.5x the double-backpropagation step
(``grad-l2``).

Usage: ``python benchmarks/train.py [--rounds 7] [--batch 64] [--device cpu]``; writes
``benchmarks/train.json``.  No GPU numbers are made here unless ``--device cuda``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

from pathstats import nets
from pathstats._io import write_json
from pathstats.provenance import provenance
from pathstats.robust.methods import METHODS
from pathstats.robust.train import TrainConfig

HERE = os.path.dirname(os.path.abspath(__file__))


def step_time(model, optimizer, method, x, y, strength, config, seed, device) -> float:
    """Seconds of one training step (loss, backward, update), synchronised on a GPU."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    model.train()
    optimizer.zero_grad(set_to_none=True)
    method.loss(model, x, y, strength, config, seed=seed).backward()
    optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    shape = (3, args.size, args.size)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((args.batch,) + shape, generator=generator).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=generator).to(device)
    names = args.methods.split(",")
    config = TrainConfig(arch="conv6", method="none", opnorm_iters=5)
    d = x[0].numel()
    strengths = {"fd-l2": 0.5, "fd-l1": 1.0, "crosslip": 0.01, "opnorm": 0.02}
    setups, skipped = {}, {}
    for name in names:
        torch.manual_seed(0)
        model = nets.build("conv6", shape).to(device)
        setups[name] = (model, torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9),
                        METHODS[name].strength(strengths.get(name, 0.01), d))
    times = {name: [] for name in names}
    for round_ in range(args.rounds + 1):  # round 0 warms up and is not counted
        order = names[round_ % len(names):] + names[:round_ % len(names)]
        for name in order:
            if name in skipped:
                continue
            model, optimizer, strength = setups[name]
            try:
                seconds = step_time(model, optimizer, METHODS[name], x, y, strength, config, round_, device)
            except ModuleNotFoundError as exc:  # a method whose module is not in this build
                skipped[name] = str(exc)
                continue
            if round_:
                times[name].append(seconds)
        print(f"round {round_}/{args.rounds} done", file=sys.stderr, flush=True)
    rows = []
    for name in names:
        if name in skipped:
            rows.append({"method": name, "skipped": skipped[name]})
            continue
        ratios = [t / p for t, p in zip(times[name], times["none"])]
        rows.append({"method": name, "median_step_s": statistics.median(times[name]),
                     "median_ratio_to_none": statistics.median(ratios), "min_ratio": min(ratios),
                     "max_ratio": max(ratios), "step_s": times[name]})
    by_name = {row["method"]: row for row in rows}
    goal = None
    if "fd-l2" in times and "grad-l2" in times and times["fd-l2"] and times["grad-l2"]:
        fd_vs_db = [f / g for f, g in zip(times["fd-l2"], times["grad-l2"])]
        goal = {"fd_l2_over_grad_l2_median": statistics.median(fd_vs_db), "min": min(fd_vs_db), "max": max(fd_vs_db),
                "goal": 0.5, "met": statistics.median(fd_vs_db) <= 0.5}
    print(f"conv6 {'x'.join(map(str, shape))}, batch {args.batch}, {device}, {args.rounds} interleaved rounds "
          f"(torch threads {torch.get_num_threads()})")
    print(f"{'method':14s} {'median step s':>14s} {'x none (median)':>16s} {'range':>14s}")
    for name in names:
        row = by_name[name]
        if "skipped" in row:
            print(f"{name:14s} skipped: {row['skipped']}")
        else:
            print(f"{name:14s} {row['median_step_s']:14.3f} {row['median_ratio_to_none']:16.2f} "
                  f"{row['min_ratio']:6.2f}-{row['max_ratio']:<6.2f}")
    if goal:
        print(f"fd-l2 / grad-l2 step time: median {goal['fd_l2_over_grad_l2_median']:.2f} "
              f"(range {goal['min']:.2f}-{goal['max']:.2f}; goal <= 0.5: {'met' if goal['met'] else 'not met'})")
    write_json(os.path.join(HERE, "train.json"), {
        "arch": "conv6", "input_shape": list(shape), "batch": args.batch, "device": str(device),
        "rounds": args.rounds, "threads": torch.get_num_threads(), "rows": rows, "fd_vs_double_backprop": goal,
        "provenance": provenance(seed=0, device=str(device))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
