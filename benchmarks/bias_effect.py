"""What the zero-bias assumption costs at PyTorch's default initialisation (``init="torch"``).

Both modes predict as if every bias were zero; the Monte Carlo of ``init="torch"`` draws each
layer's weights AND biases from its own ``reset_parameters``.  Net: two 3x3 zero-padded
convolutions (3 -> 16 -> 16 channels) with the activation after each, flatten, linear; inputs
``N(0, I)`` of shape 3x8x8.  For each activation the same net is measured with its biases and
with them removed (``bias=False``), so the difference isolates the biases.  Prints
measured / predicted - 1 with its SE and z, and writes the table as JSON; the prediction's bias
note quotes these figures.

    python benchmarks/bias_effect.py --samples 1600 --out benchmarks/bias_effect.json
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from pathstats._io import write_json
from pathstats.provenance import provenance
from pathstats.verify.report import verify
from smooth_activations import measured_row  # benchmarks/ is the script's own folder

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU}


def build(act, bias: bool) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=bias), act(), nn.Conv2d(16, 16, 3, padding=1, bias=bias),
                         act(), nn.Flatten(), nn.Linear(16 * 64, 10, bias=bias))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    print(f"{'act':5s} {'biases':6s} {'predicted':>10s} {'measured':>10s} {'rel':>7s} {'SE':>6s} {'z':>6s}")
    for name, act in ACTIVATIONS.items():
        for bias in (True, False):
            torch.manual_seed(0)
            report, _, _ = verify(build(act, bias), (3, 8, 8), samples=args.samples, seed=args.seed, init="torch")
            rows.append(measured_row(report, f"{name:5s} {str(bias):6s}", activation=name, biases=bias))
    if args.out:
        write_json(args.out, {"rows": rows, "provenance": provenance(args.seed, "cpu")})


if __name__ == "__main__":
    main()
