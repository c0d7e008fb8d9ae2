"""Does ``--amp bf16`` change the measured gradient norms?  (conv6, digits at 32 px, CPU)

Trains conv6 on the bundled digits up-sampled to 1 x 32 x 32 twice per seed and method,
in float32 and with ``--amp bf16`` (the training forward passes under
``torch.autocast(bfloat16)``), from the same initialisation, data order and attack
seeds, and compares the per-image ``||dL/dx||_1`` of the two trained networks on the
n = 359 test images (the evaluation stays float32 in both).  At initialisation the
two runs hold the same weights and the evaluation does not autocast, so their epoch-0
norms must agree exactly; the script checks that.

Reported per method: the float32 and bf16 means of E||dL/dx||_1 after training
(pooled over seeds; standard error over seeds), the paired per-image relative
difference (bf16 - fp32) / fp32 of the means per seed with its standard error over
images, and, for scale, the seed-to-seed standard deviation of the float32 means
(how much a different seed moves the same statistic).

Usage: ``python benchmarks/amp_gradients.py [--seeds 0 1 2] [--methods none grad-l1]
[--epochs 3] [--channels 16] [--out DIR]``; writes ``benchmarks/amp_gradients.json``.
Single thread (the CPU is shared).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import torch

from pathstats._io import write_json
from pathstats.provenance import provenance
from pathstats.robust.gradients import grad_norms
from pathstats.robust.train import TrainConfig, load_run_dataset, load_trained_model, train

HERE = os.path.dirname(os.path.abspath(__file__))

#: eps of each method (eps_inf for grad-l1, as in benchmarks/train_digits.py).
STRENGTHS = {"none": 0.0, "grad-l1": 0.03, "pgd": 0.03}


def per_image_l1(run_dir: str) -> torch.Tensor:
    """Per-image ||dL/dx||_1 of the run's last checkpoint on its test split (float32, eval mode)."""
    model, _ = load_trained_model(run_dir)
    data = load_run_dataset(run_dir)
    return torch.cat([grad_norms(model, data.test_x[i:i + 128], data.test_y[i:i + 128])["l1"]
                      for i in range(0, data.test_x.shape[0], 128)])


def mean_se(values) -> tuple[float, float]:
    values = [float(v) for v in values]
    if len(values) < 2:
        return values[0], float("nan")
    return statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["none", "grad-l1"], choices=sorted(STRENGTHS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--out", default=os.path.join(HERE, "_runs", "amp"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for method in args.methods:
        fp32_means, bf16_means, paired, seconds = [], [], [], {"fp32": 0.0, "bf16": 0.0}
        for seed in args.seeds:
            results, norms = {}, {}
            for amp in (None, "bf16"):
                tag = amp or "fp32"
                config = TrainConfig(arch="conv6", data="digits", size=32, method=method, eps=STRENGTHS[method],
                                     epochs=args.epochs, eval_every=args.epochs, channels=args.channels,
                                     train_eval_n=200, seed=seed, amp=amp)
                run_dir = os.path.join(args.out, f"{method}-s{seed}-{tag}")
                start = time.perf_counter()
                results[tag] = train(config, run_dir, progress=False)
                seconds[tag] += time.perf_counter() - start
                norms[tag] = per_image_l1(run_dir)
                with open(os.path.join(run_dir, "metrics.jsonl")) as f:
                    results[tag]["epoch0"] = next(line for line in map(json.loads, f) if line["epoch"] == 0)
            init = {tag: results[tag]["epoch0"]["test_grad_l1"] for tag in results}
            if init["fp32"] != init["bf16"]:
                print(f"{method} seed {seed}: epoch-0 norms differ ({init}); the evaluation should not autocast",
                      file=sys.stderr)
                return 1
            fp32, bf16 = norms["fp32"].double(), norms["bf16"].double()
            fp32_means.append(float(fp32.mean()))
            bf16_means.append(float(bf16.mean()))
            diff = bf16 - fp32
            rel, rel_se = float(diff.mean() / fp32.mean()), float(diff.std() / math.sqrt(diff.numel()) / fp32.mean())
            paired.append({"seed": seed, "n": int(diff.numel()), "init_l1": init["fp32"],
                           "fp32_l1": float(fp32.mean()), "bf16_l1": float(bf16.mean()),
                           "relative_difference": rel, "relative_difference_se": rel_se,
                           "z": rel / rel_se if rel_se > 0 else float("nan"),
                           "fp32_test_accuracy": results["fp32"]["metrics"]["test_accuracy"],
                           "bf16_test_accuracy": results["bf16"]["metrics"]["test_accuracy"]})
        row = {"method": method, "eps": STRENGTHS[method], "seeds": len(args.seeds),
               "fp32_l1": mean_se(fp32_means), "bf16_l1": mean_se(bf16_means),
               "relative_difference": mean_se([p["relative_difference"] for p in paired]),
               "seed_sd_fp32_relative": (statistics.stdev(fp32_means) / statistics.fmean(fp32_means)
                                         if len(fp32_means) > 1 else float("nan")),
               "train_s": seconds, "per_seed": paired}
        rows.append(row)
        print(f"{method}: fp32 {row['fp32_l1'][0]:.4g} ± {row['fp32_l1'][1]:.2g}, bf16 {row['bf16_l1'][0]:.4g} ± "
              f"{row['bf16_l1'][1]:.2g}, relative difference {row['relative_difference'][0]:+.3%} ± "
              f"{row['relative_difference'][1]:.2%} (seed sd of fp32 {row['seed_sd_fp32_relative']:.1%})")
        for p in paired:
            print(f"  seed {p['seed']}: init {p['init_l1']:.4g} (equal), fp32 {p['fp32_l1']:.4g}, bf16 {p['bf16_l1']:.4g},"
                  f" paired {p['relative_difference']:+.3%} ± {p['relative_difference_se']:.2%} (n {p['n']})")
    write_json(os.path.join(HERE, "amp_gradients.json"), {
        "rows": rows, "arch": "conv6", "data": "digits", "size": 32, "channels": args.channels, "epochs": args.epochs,
        "device": "cpu, 1 thread", "load_average": os.getloadavg(),
        "provenance": provenance(seed=args.seeds[0], device="cpu")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
