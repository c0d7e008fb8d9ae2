"""Dimension sweeps and architecture comparisons of Monte Carlo estimates."""

from __future__ import annotations

import json
import math
import os
from typing import Callable

import numpy as np

from pathstats._format import format_table
from pathstats._io import pyplot, save_figure
from pathstats._validate import check_seed
from pathstats.errors import InvalidArgumentError
from pathstats.provenance import provenance
from pathstats.stats import loglog_slope

from .report import check_verify_samples, plan_verify, verify

__all__ = ["fit_loglog", "verify_plans", "verify_sweep", "resumable_rows", "read_resumable_rows", "sweep_text", "save_sweep_plot",
           "compare_architectures", "comparison_text", "save_comparison_plot"]

#: Slopes of log E||dL/dx|| against log d under (S) (Corollary 6): 1/2 for l1, 0 for l2.
THEORY = {"loss_grad_l1": 0.5, "loss_grad_l2": 0.0}


def fit_loglog(d, estimates, stderrs) -> dict:
    """The sweep's JSON form of :func:`pathstats.stats.loglog_slope` weighted by the Monte Carlo
    standard errors (``slope``, ``stderr``, ``ci95``; normal interval: the standard errors are known).

    Examples
    --------
    >>> fit = fit_loglog([1, 4, 16], [2.0, 4.0, 8.0], [0.02, 0.04, 0.08])
    >>> round(fit["slope"], 12), round(fit["ci95"][1] - fit["slope"], 4)
    (0.5, 0.01)
    """
    e = loglog_slope(d, estimates, stderr=stderrs)
    return {"slope": e.value, "stderr": e.stderr, "ci95": [e.ci_low, e.ci_high]}


def verify_plans(plans: list, samples: int, *, sweep: bool, seed: int = 0, device: str = "cpu", batch: int | None = None,
                 progress: bool = False, reduce: bool = True, classes: int = 10, on_row: Callable[[dict], None] | None = None,
                 finished: list | None = None) -> dict:
    """Run planned verifications (:func:`~pathstats.verify.report.plan_runs`): a sweep of
    one net over the plans' sizes (:func:`verify_sweep`, resuming after the ``finished``
    rows) or, without ``sweep``, a comparison of the plans' nets at one size
    (:func:`compare_architectures`).  ``on_row`` as theirs."""
    options = dict(samples=samples, seed=seed, device=device, batch=batch, progress=progress, reduce=reduce,
                   classes=classes, plans=plans, on_row=on_row)
    if sweep:
        return verify_sweep(plans[0].arch, [p.input_shape for p in plans], finished=finished, **options)
    return compare_architectures([p.arch for p in plans], plans[0].input_shape, **options)


def verify_sweep(arch: str, shapes: list, samples: int, seed: int = 0, device: str = "cpu", batch: int | None = None,
                 progress: bool = False, reduce: bool = True, *, classes: int = 10, plans: list | None = None,
                 on_row: Callable[[dict], None] | None = None, finished: list | None = None, init=None) -> dict:
    """Verify at each input shape; fit the slopes of the measured and predicted loss-gradient norms.

    Every size is planned (:func:`~pathstats.verify.report.plan_verify`: model,
    prediction, the map test's minimum ``samples``) before the first Monte Carlo,
    unless ``plans`` are given.  After each finished size, ``on_row`` receives the
    sweep so far (``complete`` False until the last), e.g. to write it to a file, so
    an interruption keeps the finished sizes.  ``finished``: the rows of the first
    sizes from an interrupted run with the same options (see :func:`resumable_rows`),
    reused as they are (size ``k`` always runs with seed ``seed + k``).  ``init``: as
    :func:`~pathstats.verify.report.verify`'s, for the plans made here (given ``plans``
    carry their own).
    """
    if len(plans or shapes) < 2:
        raise InvalidArgumentError("a sweep fits a log-log slope, which needs at least two sizes")
    check_seed(seed + len(plans or shapes) - 1, "seed (plus one per size)")
    plans = plans or [plan_verify(arch, shape, classes, init) for shape in shapes]
    for plan in plans:
        check_verify_samples(plan, samples)
    rows = list(finished or [])
    options = {"seed": seed, "batch": batch, "reduce": reduce, "classes": classes, **_init_option(plans[0].init)}
    data = _sweep_data(arch, samples, seed, device, rows, [list(p.input_shape) for p in plans], options)
    for k, plan in enumerate(plans[len(rows):], start=len(rows)):
        shape = "x".join(map(str, plan.input_shape))
        report, _, _ = verify(arch, plan.input_shape, samples=samples, seed=seed + k, device=device, batch=batch,
                              progress=progress, reduce=reduce, plan=plan, desc=f"size {k + 1}/{len(plans)}: {arch} {shape}")
        rows.append({"input_shape": list(plan.input_shape), "d": int(np.prod(plan.input_shape)), "seed": seed + k,
                     **{key: report[key] for key in ("grad_sq_total", "logit_grad_l1", "loss_grad_l1", "loss_grad_l2")},
                     "elapsed_s": report["elapsed_s"]})
        data = _sweep_data(arch, samples, seed, device, rows, [list(p.input_shape) for p in plans], options)
        if on_row is not None:
            on_row(data)
    return data


def _init_option(init) -> dict:
    """The sweep option naming a chosen ``init`` (none for the declared one, so that
    sweeps written before ``init`` existed still resume)."""
    return {} if init is None else {"init": init}


def resumable_rows(data: object, arch: str, shapes: list, samples: int, device: str, *, seed: int = 0,
                   batch: int | None = None, reduce: bool = True, classes: int = 10, init=None) -> list:
    """The finished rows of an earlier run of the same sweep (a ``sweep.json`` object).

    Raises
    ------
    InvalidArgumentError
        If ``data`` is not a sweep written by :func:`verify_sweep`, or was run with
        other options or sizes (its rows would not be those of this sweep).
    """
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list) or "options" not in data:
        raise InvalidArgumentError("not a sweep written by pathstats verify --sizes")
    wanted = {"arch": arch, "samples": samples, "device": device,
              "options": {"seed": seed, "batch": batch, "reduce": reduce, "classes": classes, **_init_option(init)}}
    different = [key for key, value in wanted.items() if data.get(key) != value]
    done = [row.get("input_shape") if isinstance(row, dict) else None for row in data["rows"]]
    if different:
        raise InvalidArgumentError(f"it was run with another {' and '.join(different)} ({', '.join(f'{k}={data.get(k)!r}' for k in different)})")
    if done != [list(shape) for shape in shapes[:len(done)]]:
        raise InvalidArgumentError(f"its finished sizes {done} are not the first of this sweep")
    return data["rows"]


def read_resumable_rows(path: str, arch: str, shapes: list, samples: int, device: str, **options) -> list | None:
    """The finished rows that an interrupted run of this sweep left in the file ``path``
    (a ``sweep.json``), or None if there is no such file yet; ``options`` as
    :func:`resumable_rows`'.

    Raises
    ------
    InvalidArgumentError
        If the file is unreadable, not JSON, or not a run of this sweep with these options.
    """
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            data = json.load(f)
        return resumable_rows(data, arch, shapes, samples, device, **options)
    except (OSError, ValueError, RecursionError) as exc:  # unreadable, not JSON (too deeply nested), or not this sweep
        raise InvalidArgumentError(f"cannot continue from {path}: {' '.join(str(exc).split())}") from None


def _sweep_data(arch: str, samples: int, seed: int, device: str, rows: list, shapes: list, options: dict) -> dict:
    """The sweep's JSON object from its finished rows (slopes once two sizes are done)."""
    d = [r["d"] for r in rows]
    slopes = {}
    for key, theory in THEORY.items() if len(rows) >= 2 else ():
        measured = fit_loglog(d, [r[key]["estimate"] for r in rows], [r[key]["stderr"] for r in rows])
        predicted = loglog_slope(d, [r[key]["predicted"] for r in rows]).value
        slopes[key] = {**measured, "predicted": predicted, "theory": theory,
                       "theory_in_ci95": measured["ci95"][0] <= theory <= measured["ci95"][1]}
    return {"arch": arch, "samples": samples, "device": device, "options": options, "rows": rows, "slopes": slopes,
            "complete": len(rows) == len(shapes), "pending_shapes": shapes[len(rows):],
            "provenance": provenance(seed, device)}


def sweep_text(sweep: dict) -> str:
    rows = [["x".join(map(str, r["input_shape"])), r["d"],
             f"{r['loss_grad_l1']['estimate']:.4g} +- {r['loss_grad_l1']['stderr']:.2g}", f"{r['loss_grad_l1']['predicted']:.4g}",
             f"{r['loss_grad_l2']['estimate']:.4g} +- {r['loss_grad_l2']['stderr']:.2g}", f"{r['loss_grad_l2']['predicted']:.4g}",
             f"{r['elapsed_s']:.1f}"] for r in sweep["rows"]]
    lines = [f"{sweep['arch']}: {sweep['samples']} initialisations per size on {sweep['device']}", "",
             format_table(["input", "d", "E||dL/dx||_1", "predicted", "E||dL/dx||_2", "predicted", "time (s)"], rows), "",
             "log-log slopes against d: measured [95% CI] / model-mode prediction / theory under (S)"]
    if not sweep["slopes"]:
        lines.append("  (none yet: a slope needs two finished sizes)")
    for key, label in [("loss_grad_l1", "E||dL/dx||_1"), ("loss_grad_l2", "E||dL/dx||_2")]:
        if key not in sweep["slopes"]:
            continue
        s = sweep["slopes"][key]
        lines.append(f"  {label}: {s['slope']:+.3f} [{s['ci95'][0]:+.3f}, {s['ci95'][1]:+.3f}] / {s['predicted']:+.3f} / {s['theory']:+.1f}"
                     + ("" if s["theory_in_ci95"] else "  (theory outside the interval)"))
    return "\n".join(lines)


def _shape_text(shapes) -> str:
    """``inputs 3 x s x s`` for image sweeps, ``flat inputs`` otherwise."""
    first = shapes[0]
    return "flat inputs" if len(first) == 1 else "inputs " + " x ".join([str(first[0])] + ["s"] * (len(first) - 1))


def save_sweep_plot(sweep: dict, path: str) -> None:
    """Log-log plot of the measured norms (points, 2 stderr bars) and the model-mode
    predictions (lines) against the input dimension ``d``, one colour per norm."""
    plt = pyplot()
    rows = sweep["rows"]
    d = np.array([r["d"] for r in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(7, 4.8), layout="constrained")
    for key, label in [("loss_grad_l1", r"$\mathbb{E}\,\|\partial L/\partial x\|_1$"),
                       ("loss_grad_l2", r"$\mathbb{E}\,\|\partial L/\partial x\|_2$")]:
        est = np.array([r[key]["estimate"] for r in rows])
        err = np.array([r[key]["stderr"] for r in rows])
        pred = np.array([r[key]["predicted"] for r in rows])
        s = sweep["slopes"][key]
        bars = ax.errorbar(d, est, yerr=2 * err, fmt="o", capsize=3, zorder=3,
                           label=f"{label} measured (+- 2 stderr): slope {s['slope']:+.3f} "
                                 f"(95% CI {s['ci95'][0]:+.3f} to {s['ci95'][1]:+.3f})")
        ax.plot(d, pred, "--", color=bars[0].get_color(), alpha=0.8,
                label=f"{label} predicted (model mode): slope {s['predicted']:+.3f}, theory {s['theory']:+.1f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("input dimension d (log scale)")
    ax.set_ylabel("loss-gradient norm at initialisation (log scale)")
    shapes = [tuple(r["input_shape"]) for r in rows]
    ax.set_title(f"{sweep['arch']}, {_shape_text(shapes)} (d = {int(d[0])}..{int(d[-1])}), cross-entropy loss, "
                 f"N = {sweep['samples']} initialisations per size", fontsize=9)
    ax.legend(loc="best", fontsize=7, framealpha=0.9)
    save_figure(fig, path, tight=False)


def compare_architectures(archs: list, shape: tuple, samples: int, seed: int = 0, device: str = "cpu", batch: int | None = None,
                          progress: bool = False, reduce: bool = True, *, classes: int = 10, plans: list | None = None,
                          on_row: Callable[[dict], None] | None = None, init=None) -> dict:
    """Figure 3 of the paper at initialisation: measured totals of several nets and Theorem 11's factor.

    As :func:`verify_sweep`: every net is planned before the first Monte Carlo, and
    ``on_row`` receives the comparison so far after each net; ``init`` as in :func:`verify_sweep`.
    """
    plans = plans or [plan_verify(arch, shape, classes, init) for arch in archs]
    for plan in plans:
        check_verify_samples(plan, samples)
    rows = []
    for k, plan in enumerate(plans):
        report, _, prediction = verify(plan.arch, plan.input_shape, samples=samples, seed=seed, device=device, batch=batch,
                                       progress=progress, reduce=reduce, plan=plan,
                                       desc=f"net {k + 1}/{len(plans)}: {plan.arch} {'x'.join(map(str, plan.input_shape))}")
        rows.append({"arch": plan.arch, "avgpool_factor": prediction.avgpool_factor,
                     "theory_total": report.get("theory", {}).get("grad_sq_total"), **{k: report[k] for k in ("grad_sq_total", "loss_grad_l1")}})
        data = _comparison_data(plans, samples, seed, device, rows)
        if on_row is not None:
            on_row(data)
    return data


def _comparison_data(plans: list, samples: int, seed: int, device: str, rows: list) -> dict:
    """The comparison's JSON object from its finished rows (ratios to the first net)."""
    base = rows[0]["grad_sq_total"]
    for row in rows:
        total = row["grad_sq_total"]
        ratio = total["estimate"] / base["estimate"]
        rel = math.hypot(total["stderr"] / total["estimate"], base["stderr"] / base["estimate"]) if row is not rows[0] else 0.0
        row["ratio_to_first"] = {"estimate": ratio, "stderr": ratio * rel,
                                 "theorem11": row["avgpool_factor"] / rows[0]["avgpool_factor"]}
    return {"input_shape": list(plans[0].input_shape), "samples": samples, "device": device, "rows": rows,
            "complete": len(rows) == len(plans), "pending_archs": [p.arch for p in plans[len(rows):]],
            "provenance": provenance(seed, device)}


def comparison_text(comparison: dict) -> str:
    first = comparison["rows"][0]["arch"]
    rows = [[r["arch"], f"{r['avgpool_factor']:.4g}", "-" if r["theory_total"] is None else f"{r['theory_total']:.4g}",
             f"{r['grad_sq_total']['predicted']:.4g}", f"{r['grad_sq_total']['estimate']:.4g} +- {r['grad_sq_total']['stderr']:.2g}",
             f"{r['grad_sq_total']['z']:+.1f}", f"{r['ratio_to_first']['estimate']:.4g} +- {r['ratio_to_first']['stderr']:.2g}",
             f"{r['ratio_to_first']['theorem11']:.4g}"] for r in comparison["rows"]]
    shape = "x".join(map(str, comparison["input_shape"]))
    return "\n".join([
        f"E||do/dx||_2^2 at initialisation, {shape}, N = {comparison['samples']} per net",
        "",
        format_table(["net", "1/(a1..an)", "theory", "model", "measured", "z", f"ratio to {first}", "Thm 11 ratio"], rows),
        "",
        "theory: (H') literally ('-' where a layer is outside it); model: model-mode prediction; z: measured vs model.",
    ])


def save_comparison_plot(comparison: dict, path: str) -> None:
    """Figure 3 of the paper at initialisation, as points with error bars.

    Left: each net's measured ``E||do/dx||_2^2`` (2 stderr bars) beside its
    model-mode prediction and Theorem 11's factor ``1/(a1...an)`` (log scale).
    Right: the measured ratio to the first net against Theorem 11's ratio.
    """
    plt = pyplot()
    rows = comparison["rows"]
    x = np.arange(len(rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    total = r"$\mathbb{E}\,\|\partial o/\partial x\|_2^2$"
    left.errorbar(x - 0.08, [r["grad_sq_total"]["estimate"] for r in rows], yerr=[2 * r["grad_sq_total"]["stderr"] for r in rows],
                  fmt="o", color="C0", capsize=4, zorder=3, label="measured (+- 2 stderr)")
    left.plot(x + 0.08, [r["grad_sq_total"]["predicted"] for r in rows], "s", color="C1", mfc="none", markersize=8,
              label="predicted (model mode)")
    left.plot(x, [r["avgpool_factor"] for r in rows], "x", color="k", markersize=9, label="Theorem 11: 1/(a1...an)")
    left.set_yscale("log")
    left.set_ylabel(f"{total} at initialisation (log scale)")
    left.set_title(f"{total}, one logit o", fontsize=10)
    first = rows[0]["arch"]
    ratio = [r["ratio_to_first"] for r in rows]
    right.errorbar(x - 0.08, [q["estimate"] for q in ratio], yerr=[2 * q["stderr"] for q in ratio], fmt="o", color="C0",
                   capsize=4, zorder=3, label="measured (+- 2 stderr)")
    right.plot(x + 0.08, [q["theorem11"] for q in ratio], "x", color="k", markersize=9, label="Theorem 11")
    right.set_yscale("log")
    right.set_ylabel(f"{total} relative to {first} (log scale)")
    right.set_title(f"ratio to {first}", fontsize=10)
    for ax in (left, right):
        ax.set_xticks(x, [r["arch"] for r in rows])
        ax.set_xlim(-0.5, len(rows) - 0.5)
        ax.set_xlabel("architecture")
        ax.grid(axis="y", which="major", alpha=0.3)
        ax.legend(loc="best", fontsize=8, framealpha=0.9)
    shape = " x ".join(map(str, comparison["input_shape"]))
    fig.suptitle(f"Input-gradient size at initialisation by architecture (paper, Figure 3): input {shape}, "
                 f"N = {comparison['samples']} initialisations per net", fontsize=10)
    save_figure(fig, path, tight=False)
