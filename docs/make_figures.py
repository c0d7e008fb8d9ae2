"""Figures of the documentation, computed by the engine when the docs build."""

from __future__ import annotations

import os


def make_figures(directory: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from torch import nn

    from pathstats import predict
    from pathstats.stats import loglog_slope

    os.makedirs(directory, exist_ok=True)

    # where (S) fails: S(x) * d per pixel for three ways of reading a 3 x 32 x 32 image
    strided = nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1, padding_mode="circular"), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16 * 16, 2))
    cases = [
        ("conv6: 3x3, stride 2, reflect", predict("conv6", (3, 32, 32), mode="theory")),
        ("one 3x3 stride-2 conv, circular", predict(strided.eval(), (1, 32, 32), mode="theory")),
        ("resnet: zero padding (model mode)", predict("resnet", (3, 32, 32))),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4), layout="constrained")
    for ax, (title, p) in zip(axes, cases):
        scaled = p.path_sum_map * p.d
        image = ax.imshow(scaled.mean(axis=0), cmap="viridis")
        shape = " x ".join(map(str, p.input_shape))
        ax.set_title(f"{title}\ninput {shape}; S(x) d from {scaled.min():.2g} to {scaled.max():.2g}", fontsize=9)
        ax.set_xlabel("column (pixel)")
        ax.set_ylabel("row (pixel)")
        fig.colorbar(image, ax=ax, shrink=0.8, label="S(x) d, mean over the channels")
    fig.suptitle("Path sum S(x) times d per pixel (1 everywhere when (S) holds)", fontsize=10)
    fig.savefig(os.path.join(directory, "symmetry_maps.png"), dpi=90)
    plt.close(fig)

    # Corollary 6 at initialisation: predicted norms against d
    sizes = [32, 64, 128, 256]
    fig, ax = plt.subplots(figsize=(6.5, 4.5), layout="constrained")
    for arch in ("conv6", "conv6-strided", "conv6-avgpool"):
        ps = [predict(arch, (3, s, s)) for s in sizes]
        d = np.array([p.d for p in ps], dtype=float)
        l1 = np.array([p.loss_grad["l1"] for p in ps])
        slope = loglog_slope(d, l1).value
        ax.loglog(d, l1, "o-", label=f"{arch}: slope {slope:+.3f}")
    ax.set_xlabel("input dimension d = 3 s^2 (log scale)")
    ax.set_ylabel("predicted E||dL/dx||_1, Gaussian approx. (log scale)")
    ax.set_title(f"Corollary 6 at initialisation: inputs 3 x s x s, s = {sizes[0]}..{sizes[-1]} (model mode)", fontsize=9)
    ax.legend(loc="upper left", fontsize=8, title="fitted log-log slope", title_fontsize=8)
    fig.savefig(os.path.join(directory, "l1_scaling.png"), dpi=90)
    plt.close(fig)
