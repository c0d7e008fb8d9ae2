"""Benchmark: the cost of ``predict`` (model mode) on conv6 from 32 to 1024 px, and its growth with d.

Each size runs in a fresh single-threaded subprocess: one warm-up prediction at
3x64x64 (imports, first trace), then ``predict("conv6", (3, s, s))`` timed in
process, and the process's peak resident memory.  The table shows today's
figures beside the ones recorded before the vectorised backward pass
(``BEFORE``: measured once on the old code, 32..256 px; the 1024 px figure is
the one reported in issue 18).

The script fails (exit status 1) when the cost grows faster than d: the
log-log slope of time on d, fitted over the sizes from 128 px up, must stay
below ``MAX_SLOPE`` (1.15: linear plus the noise of a shared machine); and when
the targets of issue 18 are missed (256 px under 1 s, 1024 px under 15 s and
2 GiB resident).

    python benchmarks/predict_scaling.py                 # 32..1024 px, writes benchmarks/predict_scaling.json
    python benchmarks/predict_scaling.py --sizes 32,64   # a quick look (no targets checked above 64 px)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

SIZES = (32, 64, 128, 256, 512, 1024)
MAX_SLOPE = 1.15
FIT_FROM = 128
TARGETS = {256: (1.0, None), 1024: (15.0, 2048.0)}  # size -> (seconds, peak RSS MiB)
#: The old code (forward laws on every position, ``ufunc.at`` backward), measured with this
#: script's worker at commit 1ba94f6 on the shared 2-core machine (load about 2.5), single
#: thread: size -> (s, peak RSS MiB).  1024 px: issue 18's figure (186 s, 18 GB resident),
#: not re-run (it needs most of the machine's memory).
BEFORE = {32: (0.151, 413.0), 64: (0.653, 426.0), 128: (2.795, 633.0), 256: (15.12, 1474.0), 1024: (186.0, 18000.0)}

_WORKER = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(1)
from pathstats import predict
predict("conv6", (3, 64, 64))
size = int(sys.argv[1])
start = time.perf_counter()
p = predict("conv6", (3, size, size))
seconds = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"size": size, "seconds": seconds, "peak_rss_mib": rss, "grad_sq_total": float(p.grad_sq_map.sum())}))
"""


def run_size(size: int, timeout: float = 900.0) -> dict:
    """Time one prediction in a fresh single-threaded process."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", _WORKER, str(size)], capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"3x{size}x{size}: worker failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def loglog_slope(rows: list, fit_from: int = FIT_FROM) -> float | None:
    """Least-squares slope of log(seconds) on log(d) over the sizes >= ``fit_from``."""
    fit = [r for r in rows if r["size"] >= fit_from]
    if len(fit) < 2:
        return None
    d = np.log([3 * r["size"] ** 2 for r in fit])
    t = np.log([r["seconds"] for r in fit])
    return float(np.polyfit(d, t, 1)[0])


def failures(rows: list, slope: float | None) -> list:
    """What misses the targets: the slope above ``MAX_SLOPE``, a size over its time or memory target."""
    problems = []
    if slope is not None and slope > MAX_SLOPE:
        problems.append(f"cost grows like d^{slope:.2f} from {FIT_FROM} px up (limit d^{MAX_SLOPE})")
    for r in rows:
        seconds, rss = TARGETS.get(r["size"], (None, None))
        if seconds is not None and r["seconds"] > seconds:
            problems.append(f"3x{r['size']}x{r['size']}: {r['seconds']:.2f} s > {seconds} s")
        if rss is not None and r["peak_rss_mib"] > rss:
            problems.append(f"3x{r['size']}x{r['size']}: {r['peak_rss_mib']:.0f} MiB resident > {rss:.0f} MiB")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated image sides")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "predict_scaling.json"))
    args = parser.parse_args()
    from pathstats._format import format_table
    from pathstats._io import write_json
    from pathstats.provenance import provenance

    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        rows.append(run_size(size))
        print(f"  3x{size}x{size}: {rows[-1]['seconds']:.3f} s, {rows[-1]['peak_rss_mib']:.0f} MiB", file=sys.stderr, flush=True)
    slope = loglog_slope(rows)
    table = []
    for r in rows:
        before = BEFORE.get(r["size"])
        table.append([f"3x{r['size']}x{r['size']}", f"{3 * r['size'] ** 2:,}", f"{r['seconds']:.3f}", f"{r['peak_rss_mib']:.0f}",
                      f"{before[0]:.3g}" if before else "-", f"{before[1]:.0f}" if before else "-",
                      f"{before[0] / r['seconds']:.0f}x" if before else "-"])
    print("predict('conv6') in model mode, one thread, fresh process per size")
    print(format_table(["input", "d", "seconds", "peak RSS MiB", "before s", "before MiB", "speed-up"], table, align="lrrrrrr"))
    print(f"log-log slope of time on d from {FIT_FROM} px: {slope:.3f}" if slope is not None else "slope: too few sizes")
    problems = failures(rows, slope)
    write_json(args.out, {"rows": rows, "slope": slope, "fit_from_px": FIT_FROM, "max_slope": MAX_SLOPE,
                          "before": {str(k): {"seconds": v[0], "peak_rss_mib": v[1]} for k, v in BEFORE.items()},
                          "failures": problems, "provenance": provenance(device="cpu")})
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
