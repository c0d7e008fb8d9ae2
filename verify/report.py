"""Running a verification end to end: prediction, Monte Carlo, comparison, files."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from torch import nn

from pathstats import nets
from pathstats._format import format_table
from pathstats._io import check_figure_path, pyplot, save_figure, write_json
from pathstats._validate import (check_classes, check_device, check_int, check_memory, check_samples, check_seed,
                                 physical_memory)
from pathstats.errors import InvalidArgumentError, PathstatsError
from pathstats.prediction import Prediction, predict
from pathstats.provenance import provenance

from .compare import compare, map_test_bin_bounds, map_test_min_samples
from .montecarlo import default_batch, run_monte_carlo

__all__ = ["VerifyPlan", "plan_verify", "check_samples_before_planning", "check_verify_samples", "check_batch_memory", "verify", "verify_text", "write_outputs"]


@dataclass
class VerifyPlan:
    """What :func:`verify` needs before its Monte Carlo: the model, its predictions and
    the least number of initialisations the map test needs (``min_samples``)."""

    arch: str
    input_shape: tuple
    classes: int
    model: nn.Module
    prediction: Prediction
    theory: Prediction | None
    min_samples: int
    bins: int


def plan_verify(arch: str, input_shape: tuple, classes: int = 10) -> VerifyPlan:
    """Build the network and predict (model and theory modes): the cheap part of a
    verification, done first so that every input is checked before the Monte Carlo.

    Examples
    --------
    >>> plan = plan_verify("fc", (64,))
    >>> plan.min_samples, plan.bins
    (10, 8)
    """
    classes = check_classes(classes, "classes")
    model = nets.build(arch, input_shape, classes)
    prediction = predict(model, input_shape, mode="model")
    try:
        theory = predict(model, input_shape, mode="theory")
    except PathstatsError:
        theory = None  # outside (H'): no theory-mode prediction to show beside
    min_samples, bins = map_test_min_samples(input_shape, prediction.grad_sq_map)
    return VerifyPlan(arch, tuple(input_shape), classes, model, prediction, theory, min_samples, bins)


def check_samples_before_planning(arch: str, input_shape: tuple, samples: int, name: str = "samples") -> int:
    """Refuse, from the shape alone, a sample count that no prediction could make
    enough for the map test (fewer than the least number of bins + 2), or that
    would not fit in memory; run before :func:`plan_verify`, which may take minutes
    on large inputs."""
    low, _ = map_test_bin_bounds(input_shape)
    shape = "x".join(map(str, input_shape))
    samples = check_samples(samples, low + 2, name,
                            why=f"the map test of {arch} {shape} compares at least {low} bins of coordinates")
    d = math.prod(input_shape)
    check_memory(8 * samples * d, f"{name} {samples} at d = {d} keeps N x d float64 gradient samples",
                 f"use fewer {name} or a smaller input")
    return samples


def check_verify_samples(plan: VerifyPlan, samples: int, name: str = "samples") -> int:
    """Refuse a sample count too small for the plan's map test, or too large for memory
    (the run keeps ``N x d`` float64 gradient samples)."""
    check_samples_before_planning(plan.arch, plan.input_shape, samples, name)
    shape = "x".join(map(str, plan.input_shape))
    return check_samples(samples, plan.min_samples, name,
                         why=f"the map test of {plan.arch} {shape} compares {plan.bins} bins of coordinates")


def check_batch_memory(plan: VerifyPlan, batch: int, name: str = "batch") -> int:
    """Refuse a batch of initialisations whose largest activation alone would take more
    than a quarter of this machine's memory (:func:`~pathstats.verify.montecarlo.default_batch`'s
    estimate; the run needs several times that)."""
    total = physical_memory()
    if total:
        fits = default_batch(plan.model, plan.input_shape, budget_bytes=total // 4, largest=batch)
        if fits < batch:
            shape = "x".join(map(str, plan.input_shape))
            raise InvalidArgumentError(f"{name} {batch}: that many initialisations of {plan.arch} {shape} at once do not fit "
                                       f"in this machine's memory ({total / 2**30:.0f} GiB; the largest activation alone "
                                       f"allows at most {fits}): use a much smaller {name}, or leave the default")
    return batch


def _estimator(reduction, reduce: bool) -> str:
    """What the logit-gradient samples are, in one consistent sentence."""
    if reduction is None:
        why = ("reduction switched off" if not reduce
               else "nothing to integrate: the output is not one linear layer of declared variance")
        return f"raw samples of one random logit's gradient per initialisation ({why})"
    text = (f"one random logit's gradient per initialisation, with the norm of its row of {reduction.classifier!r} "
            "integrated analytically")
    if reduction.flip_layer is not None:
        return (text + f" and the active-feature count of {reduction.flip_layer!r} replaced by its mean "
                f"n/2 = {reduction.features / 2:g} (both exact: same mean, lower variance)")
    return text + f" (exact: same mean, lower variance); the active-feature count is sampled ({reduction.reason})"


def verify(arch: str, input_shape: tuple, samples: int = 200, seed: int = 0, device: str = "cpu",
           classes: int = 10, batch: int | None = None, progress: bool = False, reduce: bool = True,
           plan: VerifyPlan | None = None, desc: str | None = None) -> tuple:
    """Predict, run the Monte Carlo and compare; returns ``(report, result, prediction)``.

    ``reduce`` integrates the classifier's weights analytically where that is
    exact (:mod:`pathstats.verify.reduction`); the report's ``estimator`` says what was done.
    Every argument is checked before the Monte Carlo; ``plan`` (from
    :func:`plan_verify`) skips building and predicting again.  ``desc`` is what
    the progress shows as running.  The report records its ``provenance``.
    """
    seed = check_seed(seed, "seed")
    device = check_device(device, "device")
    if batch is not None:
        check_int(batch, "batch", minimum=1, hint="initialisations evaluated together")
    plan = plan or plan_verify(arch, input_shape, classes)
    check_verify_samples(plan, samples)
    result = run_monte_carlo(plan.model, plan.input_shape, samples, seed=seed, device=device, batch=batch, progress=progress,
                             reduce=reduce, desc=desc or f"{arch} {'x'.join(map(str, plan.input_shape))}")
    report = {"arch": arch, "input_shape": list(plan.input_shape), "samples": result.samples, "seed": seed,
              "device": device, "elapsed_s": result.elapsed_s, "estimator": _estimator(result.reduction, reduce),
              **compare(result, plan.prediction, plan.theory), "provenance": provenance(seed, device)}
    return report, result, plan.prediction


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
        f"estimator: {report['estimator']}; loss gradients and the softmax factor: raw samples",
        f"per-coordinate map: F = {fit['statistic']:.3g} on {fit['dof']} dof, p = {fit['p_value']:.3g} ({fit['method']})",
        "predicted l1 norms use a Gaussian approximation, l2 norms are sqrt(E||.||^2) (Jensen upper bounds);",
        "the loss-gradient prediction assumes a uniform softmax, whose factor (K-1)/K is measured in the last row.",
    ]
    gaps = [label for key, label in names.items() if key in report and abs(report[key]["z"]) > 4]
    if gaps:
        causes = "cross terms that H5 drops, max-pooling routing, the Gaussian l1 approximation"
        if "softmax_factor" in report and abs(report["softmax_factor"]["z"]) > 4:
            causes += ", a softmax that is not uniform (the logits are not small)"
        lines.append("beyond 4 standard errors: " + ", ".join(gaps) + " -- measured gaps between the model-mode "
                     f"prediction and the network (possible causes: {causes})")
    if "theory" in report:
        lines.append(f"theory mode predicts E||do/dx||_2^2 = {report['theory']['grad_sq_total']:.5g} "
                     f"({100 * report['theory']['relative_deviation_from_model']:+.2f}% from model mode: nominal fan-in, logits, BatchNorm eps)")
    return "\n".join(lines)


def write_outputs(directory: str, report: dict, result, prediction, figure_format: str = "png") -> list:
    """Write ``verify.json`` and ``maps.png`` (predicted vs empirical maps; ``figure_format``
    ``"pdf"`` or ``"svg"`` for the other formats) under ``directory``; return the paths."""
    json_path, figure_path = os.path.join(directory, "verify.json"), os.path.join(directory, f"maps.{figure_format}")
    check_figure_path(figure_path)
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
