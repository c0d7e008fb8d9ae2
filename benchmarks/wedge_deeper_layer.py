"""The deeper layers' part of mechanism 2 (issue 18), evaluated by sampling: what model mode still misses.

Net: two 3x3 circular convolutions (3 -> C1 -> 64 channels) with ReLUs, global
average pooling, a linear layer; He weights; inputs 3x16x16 ``N(0, I)``.  The
gates of the second convolution at positions ``p != q`` share its weights ``w``:
``E[w w^T g_p g_q] = sigma^2 [(pi - theta)/(2 pi) I + R_pq]``
(:func:`pathstats.layer_engine.moments.wedge_moment`), where gradient independence keeps only
the first part.  The rank-two part ``R_pq`` reaches the input through the
Jacobians ``J_p`` of the patches that the layer reads, and adds
``C_out sigma^2 sum_{p != q} D(p, q) tr(J_p^T R_pq J_q)`` to ``sum_i E[(do/dx_i)^2]``;
under global pooling ``D(p, q) = E[u^2] / P^2`` for every pair.  This script
samples the input and the first layer (``C1`` channels), computes that term
exactly for each sample (``theta`` from the actual patches, ``J^T`` by its taps
and gates), and prints its mean relative to model mode's prediction for the
net (first layer exact).  Measured on this machine: +9.7% at ``C1 = 64`` (3
samples), +9.3% at ``C1 = 256`` (2 samples); the Monte Carlo leaves +9.3% +- 0.9%
(64 channels, 2000 initialisations).

    python benchmarks/wedge_deeper_layer.py --c1 64 --samples 3
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn

from pathstats import predict

SIDE = 16
TAPS = [(ty, tx) for ty in range(3) for tx in range(3)]
OFFSETS = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)]  # pairs whose receptive fields overlap


def _shift(dy: int, dx: int) -> torch.Tensor:
    """Flat index of position ``p + (dy, dx)`` (circular) for every flat ``p``."""
    py, px = torch.arange(SIDE * SIDE) // SIDE, torch.arange(SIDE * SIDE) % SIDE
    return ((py + dy) % SIDE) * SIDE + (px + dx) % SIDE


def _to_image(windows: torch.Tensor) -> torch.Tensor:
    """``(P, 3, 5, 5)`` windows centred on each position -> ``(P, 3 * SIDE * SIDE)`` (circular)."""
    positions = SIDE * SIDE
    image = torch.zeros(positions, 3, SIDE, SIDE, dtype=windows.dtype)
    py, px = torch.arange(positions) // SIDE, torch.arange(positions) % SIDE
    for dy in range(5):
        for dx in range(5):
            image[torch.arange(positions), :, (py + dy - 2) % SIDE, (px + dx - 2) % SIDE] += windows[:, :, dy, dx]
    return image.reshape(positions, -1)


def deeper_term(c1: int, generator: torch.Generator) -> float:
    """``C_out sigma^2 sum_{p != q} D tr(J_p^T R_pq J_q)`` for one sampled input and first layer (``C_out sigma^2 D``
    folded in: ``2 / P^2`` times the second layer's variance ``2 / (9 c1)``)."""
    positions = SIDE * SIDE
    x = torch.randn(3, SIDE, SIDE, dtype=torch.float64, generator=generator)
    weights = torch.randn(c1, 3, 3, 3, dtype=torch.float64, generator=generator) * math.sqrt(2 / 27)
    z = nn.functional.conv2d(nn.functional.pad(x[None], (1, 1, 1, 1), mode="circular"), weights)[0]
    gates, h = (z > 0).double().reshape(c1, positions), torch.relu(z)
    padded = nn.functional.pad(h[None], (1, 1, 1, 1), mode="circular")[0]
    patches = torch.stack([padded[:, ty:ty + SIDE, tx:tx + SIDE] for ty, tx in TAPS], -1).reshape(c1, positions, 9).transpose(0, 1)
    norms = patches.flatten(1).norm(dim=1)
    unit = patches / norms[:, None, None]
    flat_weights = weights.reshape(c1, 27)
    back = {}  # offset d -> J_p^T (unit patch at p + d), as images (P, d_in)
    for d in OFFSETS:
        q = _shift(*d)
        windows = torch.zeros(positions, 3, 5, 5, dtype=torch.float64)
        for k, (ty, tx) in enumerate(TAPS):
            read = _shift(ty - 1, tx - 1)
            kernels = ((unit[q, :, k] * gates[:, read].T) @ flat_weights).reshape(positions, 3, 3, 3)
            windows[:, :, ty:ty + 3, tx:tx + 3] += kernels
        back[d] = _to_image(windows)
    total = 0.0
    for d in OFFSETS:
        if d == (0, 0):
            continue
        q = _shift(*d)
        cos = (patches.flatten(1) * patches[q].flatten(1)).sum(1) / (norms * norms[q])
        app, aqq, apq, aqp = back[(0, 0)], back[(0, 0)][q], back[d], back[(-d[0], -d[1])][q]
        trace = (app * aqq).sum(1) + (apq * aqp).sum(1) - cos * ((app * aqp).sum(1) + (apq * aqq).sum(1))
        total += float((trace / (2 * math.pi * torch.sqrt(1 - cos**2))).sum())
    return 2 / positions**2 * 2 / (9 * c1) * total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--c1", type=int, default=64, help="channels of the first layer (infinite width: large)")
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    net = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1, padding_mode="circular", bias=False), nn.ReLU(),
                        nn.Conv2d(64, 64, 3, padding=1, padding_mode="circular", bias=False), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10, bias=False)).eval()
    predicted = float(predict(net, (3, SIDE, SIDE), init="he").grad_sq_map.sum())
    generator = torch.Generator().manual_seed(args.seed)
    values = [deeper_term(args.c1, generator) for _ in range(args.samples)]
    mean = sum(values) / len(values)
    print(f"model mode {predicted:.6g}; deeper layer's wedge term {mean:.4g} = {100 * mean / predicted:+.1f}% "
          f"(C1 = {args.c1}, {args.samples} samples: {', '.join(f'{v:.4g}' for v in values)})")


if __name__ == "__main__":
    main()
