"""Model mode against the Monte Carlo on the architectures researchers use (issue 9's table).

For each network: the model-mode prediction of ``E||do/dx||_2^2``, the Monte
Carlo estimate (``pathstats.verify``: independent initialisations, classifier
weights integrated analytically) with its standard error, z, and the notes the
prediction carries.  Networks are narrow (16-32 channels) at 3x32x32 so that
each row takes a few minutes on a CPU; depths are realistic.

Usage::

    python benchmarks/model_mode.py [--quick] [--out benchmarks/model_mode.json]

``--quick`` runs a tenth of the samples (a smoke test).  Monte Carlo results
are written after every row (atomic writes) and rows already in the output
file are kept (resumable); the predictions, notes and z are recomputed with
the present code every run.  The ``meas/uniform`` column divides the
measurement by the uniform-gate model (ReLU 1/2, max pooling 1/n: model mode
before the forward laws).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch

from pathstats import nets, predict
from pathstats._io import write_json
from pathstats.layer_engine import backward_map
from pathstats.layer_engine.trace import read_model
from pathstats.nets.probes import Probe
from pathstats.verify.compare import compare
from pathstats.verify.montecarlo import run_monte_carlo

SHAPE = (3, 32, 32)

#: name -> (builder, samples): the table's rows
ROWS = {
    "double ReLU (2 x conv-BN-ReLU-ReLU, 16 ch, fc head)": (lambda: Probe("double-relu", SHAPE, channels=16, depth=2).eval(), 1500),
    "post-add-ReLU residual (stem + 3 basic blocks, 32 ch, fc head)": (lambda: Probe("residual", SHAPE, channels=32, depth=3).eval(), 2000),
    "resnet (registered: 3 blocks, 16 ch, global avg pool)": (lambda: nets.build("resnet", SHAPE, channels=16), 2000),
    "VGG-style max pooling (vgg, VGG-11 layout, width 16)": (lambda: nets.build("vgg", SHAPE, width=16), 1200),
    "max pooling before the ReLU (3 x conv-BN-maxpool-ReLU, 16 ch)": (lambda: Probe("pool-before-relu", SHAPE, channels=16, depth=3).eval(), 1500),
    "overlapping max pooling (2 x conv-BN-ReLU-maxpool 3x3/2, 16 ch)": (lambda: Probe("maxpool-overlap", SHAPE, channels=16, depth=2).eval(), 1500),
    "conv6-maxpool (16 ch)": (lambda: nets.build("conv6-maxpool", SHAPE, channels=16), 1500),
    "global average pooling (2 x conv-BN-ReLU, 16 ch, GAP)": (lambda: Probe("gap", SHAPE, channels=16, depth=2).eval(), 2000),
    "resnet18 (width 16, stem max pooling)": (lambda: nets.build("resnet18", SHAPE, width=16), 2800),
    "resnet18-nopool (width 16)": (lambda: nets.build("resnet18-nopool", SHAPE, width=16), 1400),
}


def measure(name: str, build, samples: int, seed: int = 0) -> dict:
    """One row: the Monte Carlo estimate +- SE (then :func:`predicted` adds the prediction)."""
    result = run_monte_carlo(build(), SHAPE, samples, seed=seed, loss=False)
    total = result.total()
    return {"network": name, "input_shape": list(SHAPE), "estimate": total.estimate, "stderr": total.stderr,
            "samples": total.samples, "seed": seed, "elapsed_s": result.elapsed_s}


def predicted(row: dict, build) -> dict:
    """The row with the present code's model-mode prediction, z, notes, and the uniform-gate model beside it
    (ReLU 1/2, max pooling 1/n: model mode before the forward laws)."""
    model = build()
    prediction = predict(model, SHAPE)
    uniform = float(backward_map(read_model(model, SHAPE, init=model.init_variances()), "model").sum())
    value = float(prediction.grad_sq_map.sum())
    return {**row, "predicted": value, "z": (row["estimate"] - value) / row["stderr"],
            "relative_error": row["estimate"] / value - 1, "uniform_gates": uniform,
            "notes": [str(n) for n in prediction.notes if "(S) fails" not in n],
            "gates": prediction.gates, "maxpool_routing": prediction.maxpool_routing}


def table(rows: list) -> str:
    """The rows as a reStructuredText-friendly plain table."""
    lines = [f"{'network':66s} {'predicted':>10s} {'measured +- SE':>22s} {'z':>7s} {'meas/pred':>9s} {'meas/uniform':>12s}  notes"]
    for r in rows:
        notes = "; ".join(sorted({n.split(": ", 1)[1].split(" (")[0][:40] for n in r["notes"]})) or "none"
        lines.append(f"{r['network']:66s} {r['predicted']:10.4g} {r['estimate']:12.4g} +- {r['stderr']:<7.2g} "
                     f"{r['z']:+7.2f} {1 + r['relative_error']:9.3f} {r['estimate'] / r['uniform_gates']:12.2f}  {notes}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the samples")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "model_mode.json"))
    parser.add_argument("--only", help="run only the rows whose name contains this text")
    args = parser.parse_args(argv)
    done = {}
    if os.path.exists(args.out):
        with open(args.out) as f:
            done = {r["network"]: r for r in json.load(f)["rows"]}
    for name, (build, samples) in ROWS.items():
        if name in done or (args.only and args.only not in name):
            continue
        start = time.perf_counter()
        done[name] = measure(name, build, max(samples // 10, 50) if args.quick else samples)
        print(f"{name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        write_json(args.out, {"rows": [done[n] for n in ROWS if n in done], "torch_version": torch.__version__,
                              "python_version": platform.python_version(), "command": " ".join(sys.argv)})
    rows = [predicted(done[n], ROWS[n][0]) for n in ROWS if n in done]
    write_json(args.out, {"rows": rows, "torch_version": torch.__version__, "python_version": platform.python_version(),
                          "command": " ".join(sys.argv)})
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
