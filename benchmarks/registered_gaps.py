"""Model mode against the Monte Carlo on every registered net, predictions made first.

Configurations: every registered net at 3x32x32 and 3x64x64 (``fc`` at d = 3072
and 12288) as registered (reflect padding for the conv6 family), plus the
pooled nets of Figure 3 with zero and circular padding.  Phase 1 predicts every
configuration with the code as it is and writes the predictions (with the git
commit) to the output JSON before any Monte Carlo runs; phase 2 runs the Monte
Carlo (``run_monte_carlo``, one random logit per initialisation, the classifier
integrated analytically where exact), configuration by configuration, writing
the JSON after each.  The table gives predicted, measured +- SE, the gap and z;
a configuration meets the target when the gap is within 3% or 4 standard errors.

``--write-measured`` then stores, in ``nets/measured_gaps.json``, the nets at
3x32x32 as registered whose gap misses the target (``pathstats.predict`` quotes
their measured size in its notes); nets that meet it carry no stored measurement.

    python benchmarks/registered_gaps.py                       # everything (an hour or more on 2 cores)
    python benchmarks/registered_gaps.py --arch conv6-avgpool --sizes 32
    python benchmarks/registered_gaps.py --table benchmarks/registered_gaps.json   # print a finished run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

from pathstats import nets, predict
from pathstats._format import format_table
from pathstats._io import write_json
from pathstats.provenance import provenance
from pathstats.verify.compare import compare
from pathstats.verify.montecarlo import run_monte_carlo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEASURED_PATH = os.path.join(ROOT, "nets", "measured_gaps.json")
POOLED = ("conv6-avgpool", "conv6-maxpool", "conv6-strided")
#: initialisations per configuration: about a 1% standard error where a net is cheap;
#: the ResNet-18s and VGG draw millions of weights per initialisation, so fewer.
SAMPLES = {32: {"resnet18": 1200, "resnet18-nopool": 1200, "vgg": 1200}, 64: {"resnet18": 500, "resnet18-nopool": 500, "vgg": 500}}
DEFAULT_SAMPLES = {32: 1600, 64: 1200}
REL_TARGET, Z_TARGET = 0.03, 4.0
#: cheap nets first, so that an interrupted run has the most configurations
ORDER = ("conv6-avgpool", "conv6-strided", "conv6-maxpool", "conv6", "fc", "resnet", "conv8", "vgg", "resnet18-nopool", "resnet18")


def configurations(archs: list, sizes: list) -> list:
    """``(arch, padding, size)`` triples: every net as registered, the pooled nets also with zeros and circular."""
    out = []
    for size in sizes:
        for arch in archs:
            paddings = ("reflect", "zeros", "circular") if arch in POOLED else ("registered",)
            out += [(arch, padding, size) for padding in paddings]
    return out


def _build(arch: str, padding: str, size: int) -> tuple:
    architecture = nets.get(arch)
    shape = (3, size, size) if architecture.image else (3 * size * size,)
    options = {} if padding in ("registered", "reflect") else {"padding_mode": padding}
    return nets.build(arch, shape, **options), shape


def _key(arch: str, padding: str, size: int) -> str:
    return f"{arch}/{padding}/{size}"


def meets_target(row: dict) -> bool:
    """Within 3% of the Monte Carlo or within 4 of its standard errors."""
    return abs(row["measured"] / row["predicted"] - 1) <= REL_TARGET or abs(row["z"]) <= Z_TARGET


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def table(data: dict) -> str:
    rows = []
    for key, row in data["rows"].items():
        if "measured" not in row:
            rows.append([row["arch"], row["padding"], f"{row['size']}", f"{row['predicted']:.5g}", "-", "-", "-", "-"])
            continue
        gap = row["measured"] / row["predicted"] - 1
        rows.append([row["arch"], row["padding"], f"{row['size']}", f"{row['predicted']:.5g}",
                     f"{row['measured']:.5g} +- {row['stderr']:.2g}", f"{100 * gap:+.1f}%", f"{row['z']:+.1f}",
                     "yes" if meets_target(row) else "NO"])
    return format_table(["net", "padding", "px", "predicted", "Monte Carlo", "gap", "z", "target"], rows, align="llrrrrrl")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", help="comma-separated registered nets (default: all)")
    parser.add_argument("--sizes", default="32,64", help="comma-separated image sides (default 32,64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, help="initialisations per configuration (default: SAMPLES, DEFAULT_SAMPLES)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "registered_gaps.json"))
    parser.add_argument("--table", metavar="JSON", help="print the table of a finished run and exit")
    parser.add_argument("--repredict", metavar="JSON", help="predict a finished run's configurations again with the code as it "
                        "is now, against the stored Monte Carlo (kept apart: 'repredicted' rows, the commit beside them)")
    parser.add_argument("--write-measured", action="store_true", help="store the 32 px gaps that miss the target in nets/measured_gaps.json")
    args = parser.parse_args()
    if args.table:
        with open(args.table) as f:
            print(table(json.load(f)))
        return 0
    if args.repredict:
        return repredict(args.repredict, args.write_measured)
    torch.set_num_threads(1)
    archs = args.arch.split(",") if args.arch else [a for a in ORDER if a in nets.ARCHITECTURES]
    configs = configurations(archs, [int(s) for s in args.sizes.split(",")])
    data = {"commit": _commit(), "predicted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": {},
            "seed": args.seed, "provenance": provenance(args.seed, "cpu")}
    for arch, padding, size in configs:  # phase 1: every prediction, before any Monte Carlo
        model, shape = _build(arch, padding, size)
        p = predict(model, shape, init=model.init_variances())
        data["rows"][_key(arch, padding, size)] = {"arch": arch, "padding": padding, "size": size, "input_shape": list(shape),
                                                  "predicted": float(p.grad_sq_map.sum()), "notes": [str(n) for n in p.notes]}
    write_json(args.out, data)
    print(f"phase 1: {len(configs)} predictions written to {args.out}", flush=True)
    for arch, padding, size in configs:  # phase 2: the Monte Carlo
        row = data["rows"][_key(arch, padding, size)]
        model, shape = _build(arch, padding, size)
        samples = args.samples or (SAMPLES[size].get(arch, DEFAULT_SAMPLES[size]) if size in SAMPLES else 800)
        start = time.perf_counter()
        result = run_monte_carlo(model, shape, samples, seed=args.seed, loss=False)
        p = predict(model, shape, init=model.init_variances())
        total = compare(result, p)["grad_sq_total"]
        if abs(total["predicted"] - row["predicted"]) > 1e-9 * abs(row["predicted"]):
            raise RuntimeError(f"{arch}: the prediction changed during the run")
        row.update(measured=total["estimate"], stderr=total["stderr"], z=total["z"], samples=result.samples,
                   mc_seconds=time.perf_counter() - start)
        write_json(args.out, data)
        print(f"{arch:16s} {padding:10s} {size:4d}px predicted {row['predicted']:.5g}  measured {row['measured']:.5g} "
              f"+- {row['stderr']:.2g}  z {row['z']:+.1f}  N {row['samples']}  ({row['mc_seconds']:.0f} s)", flush=True)
    print(table(data))
    if args.write_measured:
        write_measured(data)
    return 0


def repredict(path: str, write: bool) -> int:
    """Predict the measured configurations of a run again with the present code; the Monte Carlo is not re-run,
    so these predictions were made after it (the JSON says so: ``repredicted`` with its commit)."""
    torch.set_num_threads(1)
    with open(path) as f:
        data = json.load(f)
    rows = {}
    for key, row in data["rows"].items():
        if "measured" not in row:
            continue
        model, shape = _build(row["arch"], row["padding"], row["size"])
        predicted = float(predict(model, shape, init=model.init_variances()).grad_sq_map.sum())
        rows[key] = {**row, "predicted_first": row["predicted"], "predicted": predicted,
                     "z": (row["measured"] - predicted) / row["stderr"]}
    out = {**data, "rows": rows, "repredicted": {"commit": _commit(), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                                 "monte_carlo_commit": data["commit"]}}
    target = path.replace(".json", "_repredicted.json")
    write_json(target, out)
    print(table(out))
    print(f"wrote {target}")
    if write:
        write_measured(out)
    return 0


def write_measured(data: dict) -> None:
    """``nets/measured_gaps.json``: the nets at 3x32x32 as registered that miss the target.

    A net this run did not measure keeps its stored entry while that entry's prediction is still model mode's."""
    entries = {}
    measured = {row["arch"] for row in data["rows"].values() if row["size"] == 32 and "measured" in row}
    if os.path.exists(MEASURED_PATH):
        with open(MEASURED_PATH) as f:
            for arch, entry in json.load(f)["entries"].items():
                if arch not in measured and arch in nets.ARCHITECTURES:
                    model, shape = _build(arch, "registered", entry["input_shape"][-1] if nets.get(arch).image else 32)
                    now = float(predict(model, shape, init=model.init_variances()).grad_sq_map.sum())
                    if abs(now - entry["predicted"]) <= 1e-6 * abs(now) and not meets_target(entry):
                        entries[arch] = entry
    for row in data["rows"].values():
        if row["size"] != 32 or row["padding"] not in ("registered", "reflect") or "measured" not in row or meets_target(row):
            continue
        entries[row["arch"]] = {"arch": row["arch"], "input_shape": row["input_shape"], "samples": row["samples"],
                                "seed": data["seed"], "predicted": row["predicted"], "measured": row["measured"],
                                "stderr": row["stderr"], "z": row["z"], "elapsed_s": row["mc_seconds"],
                                "provenance": data["provenance"]}
    write_json(MEASURED_PATH, {"entries": entries})
    print(f"wrote {MEASURED_PATH} ({len(entries)} nets miss the target)")


if __name__ == "__main__":
    sys.exit(main())
