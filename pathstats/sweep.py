"""Predictions across input sizes and their log-log scaling (paper, Corollary 6)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ._format import format_table
from ._io import pyplot, save_figure
from .errors import InvalidArgumentError
from .prediction import Prediction, predict
from .progress import progress as progress_bar
from .stats import loglog_slope

__all__ = ["SweepResult", "run_sweep", "save_sweep_figure"]

#: Slopes of log(quantity) against log(d) that the paper predicts under (S).
THEORY_SLOPES = {"loss_l1": 0.5, "loss_l2": 0.0, "grad_sq_mean": -1.0}


@dataclass
class SweepResult:
    """One prediction per input shape, and the fitted slopes."""

    arch: str
    mode: str
    predictions: list

    def rows(self) -> list:
        return [
            dict(input_shape=list(p.input_shape), d=p.d, grad_sq_total=float(p.grad_sq_map.sum()),
                 grad_sq_mean=float(p.grad_sq_map.mean()), logit_l1=p.logit_grad["l1"],
                 logit_l1_upper=p.logit_grad["l1_upper"], loss_l1=p.loss_grad["l1"], loss_l2=p.loss_grad["l2"],
                 s_times_d_min=float(p.path_sum_map.min()) * p.d, s_times_d_max=float(p.path_sum_map.max()) * p.d,
                 symmetric=p.symmetric, elapsed_s=p.elapsed_s)
            for p in self.predictions
        ]

    def slopes(self, rows: list | None = None) -> dict:
        """Fitted and theoretical log-log slopes (empty until two sizes are done)."""
        rows = rows or self.rows()
        if len(rows) < 2:
            return {}
        d = [r["d"] for r in rows]
        return {key: {"fitted": loglog_slope(d, [r[key] for r in rows]).value, "theory": theory} for key, theory in THEORY_SLOPES.items()}

    def to_dict(self) -> dict:
        rows = self.rows()
        return {"arch": self.arch, "mode": self.mode, "rows": rows, "slopes": self.slopes(rows)}

    def table(self) -> str:
        all_rows = self.rows()
        rows = [
            ["x".join(map(str, r["input_shape"])), r["d"], f"{r['grad_sq_total']:.5g}", f"{r['grad_sq_mean']:.4g}",
             f"{r['loss_l1']:.5g}", f"{r['loss_l2']:.5g}", f"{r['s_times_d_min']:.3g}..{r['s_times_d_max']:.3g}", f"{r['elapsed_s']:.2f}"]
            for r in all_rows
        ]
        lines = [
            f"{self.arch}, mode {self.mode}: predicted gradients at initialisation",
            "",
            format_table(["input", "d", "E||do/dx||^2", "E[(do/dx)^2]", "E||dL/dx||_1", "E||dL/dx||_2", "S(x)*d", "time (s)"], rows),
            "",
            "log-log slopes against d (fitted / theory under (S)):",
        ]
        names = {"loss_l1": "E||dL/dx||_1 (Gaussian approx.)", "loss_l2": "E||dL/dx||_2 (sqrt of 2nd moment)", "grad_sq_mean": "mean E[(do/dx)^2]"}
        lines += [f"  {names[k]}: {v['fitted']:+.4f} / {v['theory']:+.1f}" for k, v in self.slopes(all_rows).items()]
        if len(all_rows) < 2:
            lines.append("  (none yet: a slope needs two finished sizes)")
        return "\n".join(lines)


def run_sweep(arch: str, shapes: list, mode: str = "model", classes: int = 10, progress: bool = True,
              on_size: Callable[[SweepResult], None] | None = None) -> SweepResult:
    """Predict for each input shape (one :func:`pathstats.predict` per size).

    ``progress`` shows the running size on stderr; after each finished size,
    ``on_size`` receives the sweep so far (e.g. to write it, so that an
    interruption keeps the finished sizes).
    """
    if len(shapes) < 2:
        raise InvalidArgumentError("a sweep fits log-log slopes, which need at least two sizes")
    predictions: list = []
    def running(k: int) -> str:
        return f"sweep {arch}, size {k}/{len(shapes)}: {'x'.join(map(str, shapes[k - 1]))}"

    with progress_bar(total=len(shapes), desc=running(1), unit="size", disable=not progress) as bar:
        for k, shape in enumerate(shapes, start=1):
            bar.set_description(running(k))
            predictions.append(predict(arch, shape, mode=mode, classes=classes, progress=progress))
            bar.update(1)
            if on_size is not None:
                on_size(SweepResult(arch, mode, list(predictions)))
    return SweepResult(arch, mode, predictions)


def save_sweep_figure(result: SweepResult, path: str) -> None:
    """Save the ``S(x) d`` map of the largest size beside the log-log plot, atomically.

    Left: the path sum times ``d`` per input pixel of the largest size (mean over
    the channels; 1 everywhere under (S)), or per coordinate as a line for flat
    inputs.  Right: the predicted loss-gradient norms against ``d`` with their
    fitted log-log lines.  The format follows ``path``'s extension.
    """
    plt = pyplot()
    rows, slopes = result.rows(), result.slopes()
    d = np.array([r["d"] for r in rows], dtype=float)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    largest = result.predictions[-1]
    scaled = largest.path_sum_map * largest.d
    shape = " x ".join(map(str, largest.input_shape))
    if scaled.ndim == 3:
        image = left.imshow(scaled.mean(axis=0), cmap="viridis")
        fig.colorbar(image, ax=left, label="S(x) d, mean over the channels (1 under (S))")
        left.set_xlabel("column (pixel)")
        left.set_ylabel("row (pixel)")
        left.set_title(f"path sum S(x) times d per pixel, input {shape}", fontsize=10)
    else:
        left.plot(np.arange(scaled.size), scaled.ravel(), color="C0", linewidth=3, label="S(x) d")
        left.axhline(1.0, color="k", linestyle=":", linewidth=1, label="1: what (S) gives")
        left.set_xlabel("input coordinate x")
        left.set_ylabel("S(x) d (1 under (S))")
        left.set_ylim(0, max(1.5, 1.1 * float(scaled.max())))
        left.legend(loc="lower right", fontsize=8)
        left.set_title(f"path sum S(x) times d per coordinate, input {shape}", fontsize=10)
    for key, marker, label in [("loss_l1", "o", r"$\mathbb{E}\,\|\partial L/\partial x\|_1$ (Gaussian approx.)"),
                               ("loss_l2", "s", r"$\mathbb{E}\,\|\partial L/\partial x\|_2$ (sqrt of 2nd moment)")]:
        values = np.array([r[key] for r in rows])
        slope = slopes[key]["fitted"]
        points = right.loglog(d, values, marker, label=f"{label}: slope {slope:+.3f} (theory {THEORY_SLOPES[key]:+.1f})")
        line = loglog_slope(d, values)
        fit = np.exp(line["intercept"]) * d ** line.value
        right.loglog(d, fit, "-", color=points[0].get_color(), alpha=0.6)
    right.set_xlabel("input dimension d (log scale)")
    right.set_ylabel("predicted norm at initialisation (log scale)")
    right.set_title(f"predicted loss-gradient norms, cross-entropy, K = {largest.classes} classes", fontsize=10)
    right.legend(loc="best", fontsize=8, framealpha=0.9)
    sizes = "flat inputs" if len(largest.input_shape) == 1 else "inputs " + " x ".join(
        [str(largest.input_shape[0])] + ["s"] * (len(largest.input_shape) - 1))
    fig.suptitle(f"{result.arch}, {sizes} (d = {int(d[0])}..{int(d[-1])}), mode {result.mode}: predictions at initialisation",
                 fontsize=11)
    save_figure(fig, path, tight=False)
