"""Running a verification end to end: prediction, Monte Carlo, comparison, files."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from pathstats import nets
from pathstats._format import format_table
from pathstats._io import check_figure_path, pyplot, save_figure, write_json
from pathstats._validate import (check_classes, check_device, check_int, check_memory, check_samples, check_seed,
                                 physical_memory)
from pathstats.errors import InvalidArgumentError, PathstatsError
from pathstats.prediction import Prediction, predict
from pathstats.progress import progress as progress_bar
from pathstats.provenance import provenance
from pathstats.stats import standard_error

from .compare import compare, map_test_bin_bounds, map_test_min_samples
from .montecarlo import MonteCarloResult, default_batch, init_law, run_monte_carlo

__all__ = ["VerifyPlan", "plan_verify", "plan_runs", "check_samples_before_planning", "check_verify_samples", "check_batch_memory",
           "verify",
           "verify_text", "write_outputs", "save_map_figure", "channel_mean_map"]


@dataclass
class VerifyPlan:
    """What :func:`verify` needs before its Monte Carlo: the model, its predictions and
    the least number of initialisations the map test needs (``min_samples``).

    ``arch`` names the model in reports (a registered name, or the module's class);
    ``init`` is the policy both the prediction and the Monte Carlo take."""

    arch: str
    input_shape: tuple
    classes: int
    model: nn.Module
    prediction: Prediction
    theory: Prediction | None
    min_samples: int
    bins: int
    init: Any = None


def _model_and_name(model: str | nn.Module, input_shape: tuple, classes: int | None) -> tuple:
    """``(module, name, classes)``: a registered net built for the shape (10 classes by
    default), or the caller's own module with its own number of logits."""
    if isinstance(model, str):
        classes = check_classes(10 if classes is None else classes, "classes")
        return nets.build(model, input_shape, classes), model, classes
    if not isinstance(model, nn.Module):
        raise InvalidArgumentError(f"model must be a registered name or a torch.nn.Module, not {type(model).__name__}")
    if classes is not None:
        check_classes(classes, "classes")
    return model, type(model).__name__, classes


def plan_verify(model: str | nn.Module, input_shape: tuple, classes: int | None = None, init: Any = None) -> VerifyPlan:
    """Build the network and predict (model and theory modes): the cheap part of a
    verification, done first so that every input is checked before the Monte Carlo.

    ``model`` is a registered name (built with ``classes`` logits, default 10) or
    any module :func:`~pathstats.prediction.predict` accepts (``classes``, if given,
    must be its number of logits); ``init`` as :func:`~pathstats.prediction.predict`'s.

    Examples
    --------
    >>> plan = plan_verify("fc", (64,))
    >>> plan.min_samples, plan.bins
    (10, 8)
    >>> from torch import nn
    >>> plan = plan_verify(nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)), (16,), init="he")
    >>> plan.arch, plan.classes, plan.prediction.init
    ('Sequential', 3, 'he: 2/fan_in for every weight layer')
    """
    module, name, classes = _model_and_name(model, input_shape, classes)
    prediction = predict(module, input_shape, mode="model", classes=classes, init=init)
    try:
        theory = predict(module, input_shape, mode="theory")
    except PathstatsError:
        theory = None  # outside (H'): no theory-mode prediction to show beside
    init_law(module, init)  # a mapping must name every layer the Monte Carlo draws: refuse it now, not after the prediction
    min_samples, bins = map_test_min_samples(input_shape, prediction.grad_sq_map)
    return VerifyPlan(name, tuple(input_shape), prediction.classes, module, prediction, theory, min_samples, bins, init)


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


def check_batch_memory(arch: str | nn.Module, input_shape: tuple, batch: int, name: str = "batch", classes: int | None = None) -> int:
    """Refuse a batch of initialisations whose largest activation alone would take more
    than a quarter of this machine's memory (:func:`~pathstats.verify.montecarlo.default_batch`'s
    estimate; the run needs several times that). Needs no prediction, so it runs
    before :func:`plan_verify`."""
    total = physical_memory()
    if total:
        model, arch, _ = _model_and_name(arch, input_shape, classes)
        fits = default_batch(model, input_shape, budget_bytes=total // 4, largest=batch)
        if fits < batch:
            shape = "x".join(map(str, input_shape))
            raise InvalidArgumentError(f"{name} {batch}: that many initialisations of {arch} {shape} at once do not fit "
                                       f"in this machine's memory ({total / 2**30:.0f} GiB; the largest activation alone "
                                       f"allows at most {fits}): use a much smaller {name}, or leave the default")
    return batch


def plan_runs(archs: list, shapes: list, samples: int, *, classes: int = 10, batch: int | None = None, init: Any = None,
              progress: bool = False, unit: str = "net", names: tuple = ("samples", "batch")) -> list:
    """Check and plan several verifications (a sweep's sizes, a comparison's nets) before
    any Monte Carlo; return their :class:`VerifyPlan` s.

    The checks that need only the shapes come first (``samples`` against the map test's
    least number of bins and memory, ``batch`` against memory), then each run is planned
    (:func:`plan_verify`: minutes on large inputs, under a progress bar counting ``unit`` s),
    then ``samples`` is checked against each plan's map test.  ``names``: how errors name
    the sample count and the batch (e.g. the flags ``--samples``, ``--batch``).

    Examples
    --------
    >>> [(p.arch, p.input_shape) for p in plan_runs(["fc", "fc"], [(16,), (32,)], 20)]
    [('fc', (16,)), ('fc', (32,))]
    >>> plan_runs(["fc"], [(64,)], 3)
    Traceback (most recent call last):
    ...
    pathstats.errors.InvalidArgumentError: samples must be at least ...
    """
    samples_name, batch_name = names
    for arch, shape in zip(archs, shapes):
        check_samples_before_planning(arch, shape, samples, samples_name)
        if batch is not None:
            check_batch_memory(arch, shape, min(batch, samples), batch_name, classes)
    plans = []
    with progress_bar(total=len(archs), desc="planning: predictions before the Monte Carlo", unit=unit,
                      disable=not progress, delay=2.0) as bar:
        for arch, shape in zip(archs, shapes):
            plans.append(plan_verify(arch, shape, classes, init=init))
            bar.update()
    for plan in plans:
        check_verify_samples(plan, samples, samples_name)
    return plans


def _estimator(reduction, reduce: bool, law=None) -> str:
    """What the logit-gradient samples are, in one consistent sentence."""
    if reduction is None:
        why = ("reduction switched off" if not reduce
               else "nothing exact to integrate: init 'torch' draws uniform weights and non-zero biases"
               if law is not None and law.resets
               else "nothing to integrate: the output is not one linear layer of declared variance")
        return f"raw samples of one random logit's gradient per initialisation ({why})"
    text = (f"one random logit's gradient per initialisation, with the norm of its row of {reduction.classifier!r} "
            "integrated analytically")
    if reduction.flip_layer is not None:
        return (text + f" and the active-feature count of {reduction.flip_layer!r} replaced by its mean "
                f"n/2 = {reduction.features / 2:g} (both exact: same mean, lower variance)")
    return text + f" (exact: same mean, lower variance); the active-feature count is sampled ({reduction.reason})"


def verify(model: str | nn.Module, input_shape: tuple, samples: int = 200, seed: int = 0, device: str = "cpu",
           classes: int | None = None, batch: int | None = None, progress: bool = False, reduce: bool = True,
           plan: VerifyPlan | None = None, desc: str | None = None, init: Any = None) -> tuple:
    """Predict, run the Monte Carlo and compare; returns ``(report, result, prediction)``.

    ``model`` is a registered name or any module :func:`~pathstats.prediction.predict`
    accepts; ``init`` (``None``, ``"he"``, ``"torch"``, ``"weights"`` or a mapping
    from layer name to variance) sets both the prediction's variances and the law
    the Monte Carlo draws each initialisation from (:func:`~pathstats.verify.montecarlo.init_law`).
    ``classes``: the number of logits of a registered net (default 10); a module
    has its own.  ``reduce`` integrates the classifier's weights analytically where
    that is exact (:mod:`pathstats.verify.reduction`); the report's ``estimator``
    says what was done.  Every argument is checked before the Monte Carlo; ``plan``
    (from :func:`plan_verify`, whose ``init`` then applies) skips building and
    predicting again.  ``desc`` is what the progress shows as running.  The report
    records its ``provenance``.

    Examples
    --------
    A model of one's own, at PyTorch's default initialisation:

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 4))
    >>> report, result, prediction = verify(net, (20,), samples=40, seed=0, init="torch")
    >>> report["arch"], report["init"], result.samples
    ('Sequential', 'torch: PyTorch default, 1/(3 fan_in)', 40)
    >>> abs(report["grad_sq_total"]["z"]) < 4
    True
    """
    seed = check_seed(seed, "seed")
    device = check_device(device, "device")
    if batch is not None:
        check_int(batch, "batch", minimum=1, hint="initialisations evaluated together")
    plan = plan or plan_verify(model, input_shape, classes, init)
    check_verify_samples(plan, samples)
    result = run_monte_carlo(plan.model, plan.input_shape, samples, init=plan.init, seed=seed, device=device, batch=batch,
                             progress=progress, reduce=reduce, desc=desc or f"{plan.arch} {'x'.join(map(str, plan.input_shape))}")
    report = {"arch": plan.arch, "input_shape": list(plan.input_shape), "samples": result.samples, "seed": seed,
              "device": device, "elapsed_s": result.elapsed_s, "init": plan.prediction.init, "draws": result.law.draws,
              "estimator": _estimator(result.reduction, reduce, result.law),
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
        f"init {report.get('init', 'declared')}; each initialisation draws {report.get('draws', 'the declared law')}",
        "",
        format_table(["quantity", "predicted", "estimate", "stderr", "z", "rel. error"], rows),
        "",
        f"estimator: {report['estimator']}; loss gradients and the softmax factor: raw samples",
        f"per-coordinate map: F = {fit['statistic']:.3g} on {fit['dof']} dof, p = {fit['p_value']:.3g} ({fit['method']})",
        "predicted l1 norms use a Gaussian approximation, l2 norms are sqrt(E||.||^2) (Jensen upper bounds: for the loss",
        "gradient only at a uniform softmax, whose factor (K-1)/K is measured in the last row; at initialisation the factor",
        "is larger, below 2: see predict's loss_grad \"any_softmax\").",
    ]
    gaps = [label for key, label in names.items() if key in report and abs(report[key]["z"]) > 4]
    if gaps:
        causes = "cross terms that H5 drops, max-pooling routing, the Gaussian l1 approximation"
        if "softmax_factor" in report and abs(report["softmax_factor"]["z"]) > 4:
            causes += ", a softmax that is not uniform (the logits are not small)"
        lines.append("beyond 4 standard errors: " + ", ".join(gaps) + " -- measured gaps between the model-mode "
                     f"prediction and the network (possible causes: {causes})")
    if "theory" in report:
        why = "nominal fan-in, logits, BatchNorm eps"
        if not str(report.get("init", "declared")).startswith("declared"):  # theory mode's variances are the paper's
            why = f"theory mode takes the paper's variances, model mode init {report['init'].split(':')[0]}; " + why
        lines.append(f"theory mode predicts E||do/dx||_2^2 = {report['theory']['grad_sq_total']:.5g} "
                     f"({100 * report['theory']['relative_deviation_from_model']:+.2f}% from model mode: {why})")
    return "\n".join(lines)


def write_outputs(directory: str, report: dict, result, prediction, figure_format: str = "png") -> list:
    """Write ``verify.json`` and ``maps.png`` (predicted vs empirical maps; ``figure_format``
    ``"pdf"`` or ``"svg"`` for the other formats) under ``directory``; return the paths."""
    json_path, figure_path = os.path.join(directory, "verify.json"), os.path.join(directory, f"maps.{figure_format}")
    check_figure_path(figure_path)
    write_json(json_path, report)
    save_map_figure(result, prediction, figure_path, arch=report["arch"])
    return [json_path, figure_path]


def channel_mean_map(result: MonteCarloResult, prediction: Prediction) -> tuple:
    """Predicted and measured ``E[(do/dx)^2]`` per pixel (mean over the channels), the
    measured map's standard errors, and the per-pixel z-scores.

    For a flat input (one axis) the maps are per coordinate.  The standard error of
    a pixel is that of the channel mean of one initialisation's ``(do/dx)^2``, over
    the ``N`` initialisations.

    Returns
    -------
    tuple
        ``(predicted, measured, stderr, z)``, arrays of shape ``(H, W)`` or ``(d,)``.

    Examples
    --------
    >>> from pathstats.verify.report import verify
    >>> report, result, prediction = verify("fc", (12,), samples=20, seed=0)
    >>> predicted, measured, stderr, z = channel_mean_map(result, prediction)
    >>> predicted.shape, measured.shape, bool((stderr > 0).all()), bool(np.allclose(z, (measured - predicted) / stderr))
    ((12,), (12,), True, True)
    """
    samples = result.grad_sq_samples.reshape((result.samples,) + tuple(prediction.input_shape))
    predicted = np.asarray(prediction.grad_sq_map, dtype=np.float64)
    if predicted.ndim == 3:  # channels, rows, columns: average over the channels
        samples, predicted = samples.mean(axis=1), predicted.mean(axis=0)
    samples = samples.reshape(result.samples, *predicted.shape)
    measured = samples.mean(axis=0)
    stderr = standard_error(samples, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(stderr > 0, (measured - predicted) / stderr, 0.0)
    return predicted, measured, stderr, z


def _shape_text(shape) -> str:
    return " x ".join(map(str, shape))


def save_map_figure(result: MonteCarloResult, prediction: Prediction, path: str, arch: str | None = None) -> None:
    """Draw the predicted and the measured ``E[(do/dx)^2]`` maps and their z-scores.

    Images (``C x H x W``): three panels on the pixel grid, the first two on one
    colour scale (the mean over the ``C`` channels of ``E[(do/dx)^2]``, for one
    logit ``o``), the third ``(measured - predicted) / stderr`` per pixel.  Flat
    inputs: the same as lines against the coordinate, the measurement with a band
    of 2 standard errors.  The title names ``arch`` (default: the model's class) and
    the input shape.

    Parameters
    ----------
    result : MonteCarloResult
        The Monte Carlo run (its per-initialisation ``(do/dx)^2``).
    prediction : Prediction
        The model-mode prediction for the same network and input shape.
    path : str
        The file to write; its extension (``.png``, ``.pdf``, ``.svg``) sets the format.
    arch : str, optional
        The architecture's name for the title.
    """
    plt = pyplot()
    predicted, measured, stderr, z = channel_mean_map(result, prediction)
    shape, d, n = tuple(prediction.input_shape), prediction.d, result.samples
    quantity = r"$\mathbb{E}[(\partial o/\partial x)^2]$"
    where = f"per pixel, mean over the {shape[0]} channels" if len(shape) == 3 else "per input coordinate"
    title = (f"{arch or prediction.arch}, input {_shape_text(shape)} (d = {d}) at initialisation: {quantity} {where}, "
             f"for one logit o (1/d = {1 / d:.3g}); N = {n} initialisations")
    if predicted.ndim == 1:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=[2, 1], layout="constrained")
        x = np.arange(len(predicted))
        top.fill_between(x, measured - 2 * stderr, measured + 2 * stderr, color="C0", alpha=0.25, linewidth=0,
                         label="measured +- 2 stderr")
        top.plot(x, measured, color="C0", linewidth=1, label=f"measured (N = {n})")
        top.plot(x, predicted, color="C1", linewidth=2, label="predicted (model mode)")
        top.axhline(1 / d, color="0.4", linestyle=":", linewidth=1, label=f"1/d = {1 / d:.3g}")
        top.set_ylabel(quantity)
        top.set_ylim(bottom=0)
        top.legend(loc="lower right", fontsize=8, framealpha=0.9)
        bottom.plot(x, z, ".", color="C0", markersize=3)
        for level in (-2, 2):
            bottom.axhline(level, color="0.5", linestyle="--", linewidth=0.8)
        bottom.set_ylabel("z = (measured - predicted)\n/ stderr")
        bottom.set_xlabel("input coordinate x")
        fig.suptitle(title, fontsize=10)
        save_figure(fig, path, tight=False)
        return
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.6), layout="constrained")
    vmax = float(max(predicted.max(), measured.max()))
    for ax, data, name in [(axes[0], predicted, "predicted (model mode)"), (axes[1], measured, f"measured, N = {n}")]:
        image = ax.imshow(data, vmin=0, vmax=vmax, cmap="viridis")
        ax.set_title(name, fontsize=10)
    fig.colorbar(image, ax=axes[:2], shrink=0.9, label=f"{quantity}, channel mean" if len(shape) == 3 else quantity)
    limit = max(4.0, float(np.abs(z).max()))
    zimage = axes[2].imshow(z, cmap="RdBu_r", vmin=-limit, vmax=limit)
    axes[2].set_title(f"z per pixel: |z| > 3 at {int((np.abs(z) > 3).sum())} of {z.size}", fontsize=10)
    fig.colorbar(zimage, ax=axes[2], shrink=0.9, label="z = (measured - predicted) / stderr")
    rows, columns = ("row (pixel)", "column (pixel)") if len(shape) == 3 else ("channel", "position")
    for ax in axes:
        ax.set_xlabel(columns)
        ax.set_ylabel(rows)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path, tight=False)
