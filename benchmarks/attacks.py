"""Benchmark: PGD-7 (l_inf) and DeepFool (l2) throughput, pathstats.robust against foolbox 3.

Same model (conv6 at 3 x 32 x 32, freshly initialised, eval mode), same inputs
(uniform pixels, labels = the clean predictions), same CPU, same process; the
methods alternate ``--repeats`` times and the medians are compared.  Both PGDs run
without random start (their random draws differ; the start costs one uniform draw),
7 steps of ``0.2 eps``, so their results must agree to 1e-5; DeepFool runs 50 steps,
all classes, overshoot 0.02, and must agree in success rate and median distance.

What differs: foolbox computes each gradient with ``loss.backward()``, which also
computes (and accumulates) every parameter's gradient, and its DeepFool runs one
forward and one backward pass per candidate class; pathstats asks autograd for the
input gradient only, and DeepFool shares one forward pass among the class gradients
and drops images as soon as they are fooled; it runs images in channels-last layout
(oneDNN convolutions are about twice as fast so on CPUs).

A third row feeds foolbox the same images in channels-last layout: its gradients are
then computed by the same kernels as pathstats', so the two must agree exactly, and
the speed-up over that row is the part due to computing input gradients only.  With
the default layout the kernels sum in another order; l_inf PGD's ``sign(g)`` can then
flip on a coordinate whose gradient is at rounding level, and the table counts the
coordinates that differ by more than 1e-5.

The machine may be shared: the table gives wall-clock throughput and the process's
CPU time per image, which other processes disturb less.

Usage: python benchmarks/attacks.py [--out benchmarks/attacks.json] [--repeats 3] [--batch 32] [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

# benchmarks/ must not shadow anything: drop the script's own folder from the import path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import foolbox  # noqa: E402
import torch  # noqa: E402

from pathstats import nets  # noqa: E402
from pathstats._format import format_table  # noqa: E402
from pathstats._io import write_json  # noqa: E402
from pathstats.provenance import provenance  # noqa: E402
from pathstats.robust.attacks import deepfool, pgd  # noqa: E402

SHAPE = (3, 32, 32)
EPS = 8 / 255  # l_inf radius of the PGD rows (a common CIFAR-10 budget)
CL = "foolbox 3, channels-last input"


def _timed(call) -> tuple:
    """``(wall seconds, process CPU seconds, output)`` of ``call()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = call()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def _distances(model, x, x_adv, y, p: float) -> tuple:
    with torch.no_grad():
        fooled = model(x_adv).argmax(1) != y
    dist = torch.linalg.vector_norm((x_adv - x).flatten(1), ord=p, dim=1)[fooled]
    return float(fooled.double().mean()), (float(dist.median()) if len(dist) else float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/attacks.json")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: on a shared machine, 2-thread OpenMP runs are dominated by "
                        "waiting for descheduled threads)")
    parser.add_argument("--quick", action="store_true", help="8 images, 1 repeat: a smoke run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batch, repeats = (8, 1) if args.quick else (args.batch, args.repeats)

    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nets.build("conv6", SHAPE).eval()
    x = torch.rand((batch,) + SHAPE, generator=generator)
    with torch.no_grad():
        y = model(x).argmax(1)
    fmodel = foolbox.PyTorchModel(model, bounds=(0, 1), device="cpu")
    fb_pgd = foolbox.attacks.LinfPGD(steps=7, abs_stepsize=0.2 * EPS, random_start=False)
    fb_deepfool = foolbox.attacks.L2DeepFoolAttack(steps=50, candidates=None, overshoot=0.02)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    methods = {
        ("PGD-7 l_inf", "foolbox 3"): lambda: fb_pgd(fmodel, x, y, epsilons=EPS)[0],
        ("PGD-7 l_inf", CL): lambda: fb_pgd(fmodel, x_cl, y, epsilons=EPS)[0],
        ("PGD-7 l_inf", "pathstats"): lambda: pgd(model, x, y, EPS, norm="inf", steps=7, random_start=False),
        ("DeepFool l2", "foolbox 3"): lambda: fb_deepfool(fmodel, x, y, epsilons=None)[0],
        ("DeepFool l2", CL): lambda: fb_deepfool(fmodel, x_cl, y, epsilons=None)[0],
        ("DeepFool l2", "pathstats"): lambda: deepfool(model, x, norm=2, steps=50, overshoot=0.02),
    }
    for call in methods.values():  # warm-up: the first calls pay for lazy initialisation
        call()
    times: dict = {key: [] for key in methods}
    cpu_times: dict = {key: [] for key in methods}
    outputs: dict = {}
    for repeat in range(repeats):
        for key, call in methods.items():
            seconds, cpu, outputs[key] = _timed(call)
            times[key].append(seconds)
            cpu_times[key].append(cpu)
            print(f"  repeat {repeat + 1}: {key[0]}, {key[1]}: {seconds:.2f} s wall, {cpu:.2f} s CPU", file=sys.stderr)
        for p in model.parameters():  # foolbox's backward() accumulates parameter gradients
            p.grad = None

    rows = []
    for attack in ("PGD-7 l_inf", "DeepFool l2"):
        tools = ("foolbox 3", CL, "pathstats")
        wall = {tool: statistics.median(times[(attack, tool)]) for tool in tools}
        cpu = {tool: statistics.median(cpu_times[(attack, tool)]) for tool in tools}
        p = float("inf") if attack.startswith("PGD") else 2.0
        ours = outputs[(attack, "pathstats")]
        for tool in tools:
            out = outputs[(attack, tool)]
            success, median = _distances(model, x, out, y, p)
            differ = (out - ours).abs() > 1e-5
            rows.append({"attack": attack, "tool": tool, "seconds": wall[tool], "images_per_s": batch / wall[tool],
                         "speedup_vs_foolbox": wall["foolbox 3"] / wall[tool], "cpu_ms_per_image": 1e3 * cpu[tool] / batch,
                         "cpu_speedup_vs_foolbox": cpu["foolbox 3"] / cpu[tool], "success_rate": success,
                         "median_distance": median, "max_abs_difference_to_pathstats": float((out - ours).abs().max()),
                         "coordinates_differing_by_more_than_1e-5": int(differ.sum()), "coordinates": differ.numel(),
                         "runs_wall_s": times[(attack, tool)], "runs_cpu_s": cpu_times[(attack, tool)]})
    print(f"\nconv6 {'x'.join(map(str, SHAPE))} eval, {batch} images, CPU ({torch.get_num_threads()} threads), "
          f"median of {repeats} alternating runs; PGD eps = 8/255, 7 steps of 0.2 eps, no random start; "
          "DeepFool 50 steps, all classes, overshoot 0.02")
    print(format_table(["attack", "tool", "images/s", "speed-up", "CPU ms/image", "CPU speed-up", "success", "median dist",
                        "max |diff| to pathstats", "coords > 1e-5"],
                       [[r["attack"], r["tool"], f"{r['images_per_s']:.2f}", f"{r['speedup_vs_foolbox']:.2f}x",
                         f"{r['cpu_ms_per_image']:.0f}", f"{r['cpu_speedup_vs_foolbox']:.2f}x",
                         f"{r['success_rate']:.3f}", f"{r['median_distance']:.4g}", f"{r['max_abs_difference_to_pathstats']:.2g}",
                         f"{r['coordinates_differing_by_more_than_1e-5']}/{r['coordinates']}"]
                        for r in rows], align="llrrrrrrrr"))
    print("images/s and speed-up from wall-clock medians; CPU time is the process's (less sensitive to other load)")
    result = {"machine": {"python": platform.python_version(), "torch": torch.__version__, "foolbox": foolbox.__version__,
                          "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "device": "cpu"},
              "model": "conv6", "input_shape": list(SHAPE), "batch": batch, "repeats": repeats, "pgd_eps": EPS, "rows": rows,
              "provenance": provenance(seed=0, device="cpu")}
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
