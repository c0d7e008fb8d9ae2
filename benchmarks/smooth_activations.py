"""Smooth activations in model mode against the Monte Carlo (issue 18, item 7).

Nets on ``N(0, I)`` inputs at He initialisation, width 32, each activation in every
hidden layer: ``mlp`` (1x8x8 -> 256 -> 256 -> 10), ``conv-flat`` (two 3x3 zero-padded
convolutions, flatten, linear: no pooling), ``pool-1`` (one 3x3 circular convolution,
global average pooling, linear: the first layer is the whole effect) and ``pool-2`` (two
such convolutions), with 3 or 32 input channels; and the depth study ``mlp4-64`` and
``mlp4-256`` (four hidden layers of width 64 or 256: the gap of SiLU grows with depth and
shrinks with width).  Prints measured / predicted - 1 of
``sum_i E[(do/dx_i)^2]`` with its SE and z, and writes the table as JSON.

    python benchmarks/smooth_activations.py --samples 1000 --out benchmarks/smooth_activations.json
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from pathstats._io import write_json
from pathstats.provenance import provenance
from pathstats.verify.report import verify

ACTIVATIONS = {"tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU, "relu": nn.ReLU}


def build(kind: str, act, channels: int) -> tuple:
    if kind.startswith("mlp4-"):
        width = int(kind.split("-")[1])
        layers, n = [nn.Flatten()], 64
        for _ in range(4):
            layers += [nn.Linear(n, width), act()]
            n = width
        return nn.Sequential(*layers, nn.Linear(n, 10)), (1, 8, 8)
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 256), act(), nn.Linear(256, 256), act(), nn.Linear(256, 10)), (1, 8, 8)
    if kind == "conv-flat":
        return nn.Sequential(nn.Conv2d(channels, 32, 3, padding=1), act(), nn.Conv2d(32, 32, 3, padding=1), act(),
                             nn.Flatten(), nn.Linear(32 * 64, 10)), (channels, 8, 8)
    convs = int(kind[-1])
    layers, c = [], channels
    for _ in range(convs):
        layers += [nn.Conv2d(c, 32, 3, padding=1, padding_mode="circular"), act()]
        c = 32
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)), (channels, 8, 8)


def measured_row(report: dict, label: str, **keys) -> dict:
    """``keys`` plus verify's ``sum_i E[(do/dx_i)^2]``: predicted, measured (SE), relative gap (SE), z; printed
    after ``label``."""
    g = report["grad_sq_total"]
    row = {**keys, "predicted": g["predicted"], "measured": g["estimate"], "measured_se": g["stderr"],
           "relative": g["relative_error"], "relative_se": g["stderr"] / g["predicted"], "z": g["z"],
           "samples": g["samples"]}
    print(f"{label} {row['predicted']:10.5g} {row['measured']:10.5g} {row['relative']:+7.3f} {row['relative_se']:6.3f} "
          f"{row['z']:+6.2f}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    print(f"{'net':10s} {'c_in':>4s} {'act':5s} {'predicted':>10s} {'measured':>10s} {'rel':>7s} {'SE':>6s} {'z':>6s}")
    for kind in ("mlp", "conv-flat", "pool-1", "pool-2", "mlp4-64", "mlp4-256"):
        for channels in ((1,) if kind.startswith("mlp") else (3, 32)):
            for name, act in ACTIVATIONS.items():
                torch.manual_seed(0)
                model, shape = build(kind, act, channels)
                report, _, _ = verify(model, shape, samples=args.samples, seed=args.seed, init="he")
                rows.append(measured_row(report, f"{kind:10s} {channels:4d} {name:5s}", net=kind, in_channels=channels,
                                         activation=name))
    if args.out:
        write_json(args.out, {"rows": rows, "provenance": provenance(args.seed, "cpu")})


if __name__ == "__main__":
    main()
