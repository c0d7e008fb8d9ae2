"""Measure model mode against the Monte Carlo on every registered architecture.

Writes ``nets/measured_gaps.json``: for each registered net at its default input
(3 x 32 x 32 images; ``fc`` at d = 3072), model mode's prediction of
``E||do/dx||_2^2``, the Monte Carlo estimate with its standard error, the number of
initialisations, the seed and the provenance.  :func:`pathstats.predict` reads the
file and, where the measurement and the prediction differ by more than 4 standard
errors, says so in the prediction's notes with the measured size; a test checks that
the stored predictions still equal model mode's (re-run this script when model mode
changes).

    python benchmarks/registered_gaps.py            # every registered net (minutes on 2 cores)
    python benchmarks/registered_gaps.py --arch vgg # one net, merged into the file
"""

from __future__ import annotations

import argparse
import json
import os
import time

from pathstats import nets
from pathstats._io import write_json
from pathstats.provenance import provenance
from pathstats.verify.report import verify

#: initialisations per net: about a 1% standard error where a net is cheap; the
#: ResNet-18s and VGG draw millions of weights per initialisation (about 0.1 s each), so fewer.
SAMPLES = {"resnet18": 1200, "resnet18-nopool": 1200, "vgg": 1200}
DEFAULT_SAMPLES = 1600
PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "nets", "measured_gaps.json")


def measure(arch: str, seed: int = 0) -> dict:
    architecture = nets.get(arch)
    shape = (3, 32, 32) if architecture.image else (3072,)
    samples = SAMPLES.get(arch, DEFAULT_SAMPLES)
    report, _, _ = verify(arch, shape, samples=samples, seed=seed)
    total = report["grad_sq_total"]
    return {"arch": arch, "input_shape": list(shape), "samples": report["samples"], "seed": seed,
            "predicted": total["predicted"], "measured": total["estimate"], "stderr": total["stderr"], "z": total["z"],
            "estimator": report["estimator"], "elapsed_s": report["elapsed_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", help="comma-separated registered nets (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    archs = args.arch.split(",") if args.arch else list(nets.ARCHITECTURES)
    data = {"entries": {}}
    if os.path.exists(PATH):
        with open(PATH) as f:
            data = json.load(f)
    for arch in archs:
        start = time.perf_counter()
        entry = measure(arch, args.seed)
        entry["provenance"] = provenance(args.seed, "cpu")
        data["entries"][arch] = entry
        write_json(PATH, data)  # after each net: an interruption keeps the finished ones
        print(f"{arch:16s} predicted {entry['predicted']:.5g}  measured {entry['measured']:.5g} +- {entry['stderr']:.2g}"
              f"  z {entry['z']:+.1f}  N {entry['samples']}  ({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
