"""Running a verification end to end: prediction, Monte Carlo, comparison, files."""

from __future__ import annotations

import os

import numpy as np

from pathstats import nets
from pathstats._format import format_table
from pathstats._io import pyplot, save_figure, write_json
from pathstats.errors import PathstatsError
from pathstats.prediction import predict

from .compare import compare
from .montecarlo import run_monte_carlo

__all__ = ["verify", "verify_text", "write_outputs"]


def verify(arch: str, input_shape: tuple, samples: int = 200, seed: int = 0, device: str = "cpu",
           classes: int = 10, batch: int | None = None, progress: bool = False, reduce: bool = True) -> tuple:
    """Predict, run the Monte Carlo and compare; returns ``(report, result, prediction)``.

    ``reduce`` integrates the classifier's weights analytically where that is
    exact (:mod:`pathstats.verify.reduction`); the report's ``estimator`` says what was done.
    """
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise PathstatsError("--device cuda: no CUDA device is available here; use --device cpu")
    model = nets.build(arch, input_shape, classes)
    prediction = predict(model, input_shape, mode="model")
    try:
        theory = predict(model, input_shape, mode="theory")
    except PathstatsError:
        theory = None  # outside (H'): no theory-mode prediction to show beside
    result = run_monte_carlo(model, input_shape, samples, seed=seed, device=device, batch=batch, progress=progress, reduce=reduce)
    estimator = (f"{result.reduction.describe()} (exact: same mean, lower variance)" if result.reduction
                 else "raw gradients of one random logit per initialisation")
    report = {"arch": arch, "input_shape": list(input_shape), "samples": result.samples, "seed": seed,
              "device": device, "elapsed_s": result.elapsed_s, "estimator": estimator, **compare(result, prediction, theory)}
    return report, result, prediction


def verify_text(report: dict) -> str:
    rows = []
    names = {"grad_sq_total": "E||do/dx||_2^2", "logit_grad_l1": "E||do/dx||_1 (Gauss.)", "logit_grad_l2": "E||do/dx||_2",
             "loss_grad_l1": "E||dL/dx||_1 (Gauss.)", "loss_grad_l2": "E||dL/dx||_2", "softmax_factor": "softmax factor"}
    for key, label in names.items():
        if key not in report:
            continue
        e = report[key]
        rows.append([label, f"{e['predicted']:.5g}", f"{e['estimate']:.5g}", f"{e['stderr']:.2g}", f"{e['z']:+.2f}", f"{100 * e['relative_error']:+.2f}%"])
    fit = report["map_fit"]
    shape = "x".join(map(str, report["input_shape"]))
    lines = [
        f"{report['arch']} {shape}: {report['samples']} initialisations on {report['device']} in {report['elapsed_s']:.1f} s (seed {report['seed']})",
        "",
        format_table(["quantity", "predicted", "estimate", "stderr", "z", "rel. error"], rows),
        "",
        f"logit-gradient estimator: {report['estimator']}; loss gradients as measured",
        f"per-coordinate map: F = {fit['statistic']:.3g} on {fit['dof']} dof, p = {fit['p_value']:.3g} ({fit['method']})",
        "predicted l1 norms use a Gaussian approximation, l2 norms are sqrt(E||.||^2) (Jensen upper bounds);",
        "the loss-gradient prediction assumes a uniform softmax, whose factor (K-1)/K is measured in the last row.",
    ]
    gaps = [label for key, label in names.items() if key in report and key != "softmax_factor" and abs(report[key]["z"]) > 4]
    if gaps:
        lines.append("beyond 4 standard errors: " + ", ".join(gaps) + " -- a measured gap between the model-mode "
                     "prediction and reality (cross terms that H5 drops, max-pooling routing, Gaussian l1 approximation...)")
    if "theory" in report:
        lines.append(f"theory mode predicts E||do/dx||_2^2 = {report['theory']['grad_sq_total']:.5g} "
                     f"({100 * report['theory']['relative_deviation_from_model']:+.2f}% from model mode: nominal fan-in, logits, BatchNorm eps)")
    return "\n".join(lines)


def write_outputs(directory: str, report: dict, result, prediction) -> list:
    """Write ``verify.json`` and ``maps.png`` (predicted vs empirical maps) under ``directory``."""
    os.makedirs(directory, exist_ok=True)
    json_path, figure_path = os.path.join(directory, "verify.json"), os.path.join(directory, "maps.png")
    write_json(json_path, report)
    plt = pyplot()
    mean, _ = result.map_estimate()
    predicted = prediction.grad_sq_map
    if predicted.ndim == 3:
        predicted, mean = predicted.mean(axis=0), mean.mean(axis=0)
    else:
        predicted, mean = predicted.reshape(1, -1), mean.reshape(1, -1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    vmax = max(predicted.max(), mean.max())
    for ax, data, title in [(axes[0], predicted, "predicted (model mode)"), (axes[1], mean, f"empirical, N = {result.samples}")]:
        image = ax.imshow(data, vmin=0, vmax=vmax, cmap="viridis", aspect="auto" if data.shape[0] == 1 else "equal")
        ax.set_title(f"E[(do/dx)^2], {title}")
    fig.colorbar(image, ax=axes, shrink=0.8)
    save_figure(fig, figure_path, dpi=100, tight=False)  # a colorbar shared by two axes
    return [json_path, figure_path]
