"""Benchmark: E||dL/dx||_1 at initialisation on nearest-neighbour up-sampled inputs, against
i.i.d. inputs of the same size (Figure 2's "prediction at initialisation").

The theorems (Simon-Gabriel et al., Theorems 4-5) give E[(do/dx_i)^2] = 1/d whatever the
input, so E||dL/dx||_1 grows like sqrt(d).  ``conv8`` (the paper's Section 4.2 net) dilates
its convolutions by the up-sampling factor and max-pools 2x2: on an image up-sampled by
copying pixels, the first convolutions' outputs are constant on each copied block, so a 2x2
max pooling sees ties and sends the whole gradient to ONE of the tied inputs (PyTorch's
max-pool gradient goes to the first maximum).  The gradient then lives on a fraction of the
coordinates and its l1 norm grows slower than sqrt(d).  This script measures, for each
input kind (digits up-sampled as the medium fig2 grid feeds them, Gaussian images
up-sampled the same way, i.i.d. Gaussian images) and size: the mean E||dL/dx||_1 over
``--inits`` He initialisations (each on a batch of ``--batch`` images, eval mode), its
standard error over initialisations, the fraction of exactly-zero gradient coordinates, and
the log-log slope on d with its 95% interval (:func:`pathstats.stats.loglog_slope`).

    python benchmarks/upsampled_init.py            # conv8, 8 channels, native side 16, 16/32/64 px
    python benchmarks/upsampled_init.py --channels 16 --inits 16 --out /tmp/u.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from pathstats import stats
from pathstats.nets import registry
from pathstats.provenance import provenance

KINDS = ("digits up-sampled", "gaussian up-sampled", "gaussian i.i.d.")


def _inputs(kind: str, size: int, native: int, batch: int, gen: torch.Generator, digits: torch.Tensor) -> torch.Tensor:
    if kind == "digits up-sampled":
        small = F.interpolate(digits[:batch], size=native, mode="nearest")  # digits' 8 px to the native side
        return F.interpolate(small, size=size, mode="nearest")
    if kind == "gaussian up-sampled":
        return F.interpolate(torch.randn(batch, 3, native, native, generator=gen), size=size, mode="nearest")
    return torch.randn(batch, 3, size, size, generator=gen)


def measure(arch: str, sizes: tuple, channels: int, native: int, inits: int, batch: int) -> list:
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = torch.tensor(raw.images, dtype=torch.float32) / 16.0
    x = ((x - x.mean()) / x.std())[:, None].repeat(1, 3, 1, 1)  # normalised like the medium grid
    y_all = torch.tensor(raw.target)
    rows = []
    for kind in KINDS:
        for size in sizes:
            norms, zeros = [], []
            for init in range(inits):
                torch.manual_seed(init)
                net = registry.build(arch, (3, size, size), 10, channels=channels, native_side=native).eval()
                gen = torch.Generator().manual_seed(1000 + init)
                xs = _inputs(kind, size, native, batch, gen, x).requires_grad_(True)
                loss = F.cross_entropy(net(xs), y_all[:batch], reduction="sum")
                (g,) = torch.autograd.grad(loss, xs)
                norms.append(float(g.abs().flatten(1).sum(1).mean()))
                zeros.append(float((g == 0).float().mean()))
            est = stats.mean_ci(norms)
            rows.append({"kind": kind, "size": size, "d": 3 * size * size, "grad_l1": est["value"],
                         "grad_l1_se": est["stderr"], "zero_fraction": float(np.mean(zeros)), "inits": inits,
                         "batch": batch, "_norms": norms})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="conv8")
    p.add_argument("--sizes", default="16,32,64")
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--native-side", type=int, default=16, help="the side before up-sampling (conv8's dilation base)")
    p.add_argument("--inits", type=int, default=8)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "upsampled_init.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    sizes = tuple(int(s) for s in a.sizes.split(","))
    t0 = time.perf_counter()
    rows = measure(a.arch, sizes, a.channels, a.native_side, a.inits, a.batch)
    slopes = {}
    print(f"{a.arch}, {a.channels} channels, native side {a.native_side}: E||dL/dx||_1 at initialisation "
          f"(mean over {a.inits} He initialisations x {a.batch} images; +- standard error over initialisations)")
    print(f"{'input':<22}{'size':>6}{'E||dL/dx||_1':>22}{'zero coords':>13}")
    for kind in KINDS:
        rs = [r for r in rows if r["kind"] == kind]
        for r in rs:
            print(f"{kind:<22}{r['size']:>6}{r['grad_l1']:>14.2f} +- {r['grad_l1_se']:<5.2f}{r['zero_fraction']:>13.3f}")
        d = np.repeat([r["d"] for r in rs], a.inits)
        v = np.concatenate([r["_norms"] for r in rs])
        slopes[kind] = stats.loglog_slope(d, v)
        s = slopes[kind]
        print(f"{'':<22}log-log slope on d: {s['value']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}] (theory 0.5)")
    for r in rows:
        r.pop("_norms")
    out = {"arch": a.arch, "channels": a.channels, "native_side": a.native_side, "rows": rows,
           "slopes": {k: dict(v) for k, v in slopes.items()}, "elapsed_s": time.perf_counter() - t0,
           "provenance": provenance(seed=0, device="cpu")}
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
