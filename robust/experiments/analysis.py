"""Figures and claims of each experiment, computed from the collected run records.

Each ``figN(records, out_dir, context)`` draws the paper's figure from the finished runs
(PNG and PDF) and returns ``{"figures": [paths], "claims": [claim dicts]}``.  A claim
names the paper's statement and source, the statistic, its value with a 95% interval,
the region the statement allows (``expected``) and the verdict of
:func:`~pathstats.robust.experiments.stats.verdict`.  Records are those of
:func:`~pathstats.robust.experiments.store.collect`; failed runs are left out of every
statistic (their number is in ``n``).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from functools import lru_cache

import numpy as np

from . import stats
from .figures import Figure

__all__ = ["claim", "finished", "final", "tail", "strength", "dimension", "predicted_l1", "fig1", "fig2", "fig3", "fig4",
           "finlay", "roth"]

SG = "Simon-Gabriel et al. 2019"
FACTOR = 1.5  # curves "match" when they are within this factor of each other (equivalence margin)
RHO = 0.8  # a "functional relation": Spearman's rank correlation at least this
SHARED = 0.2  # "one curve for all groups": the groups explain at most this fraction of the residual variance
#              (beyond chance)
ACC_MARGIN = 0.03  # "dimension independent" / "very close" accuracies: within 3 points


def claim(text: str, source: str, statistic: str, estimate: dict, low: float = -math.inf, high: float = math.inf,
          expected: str | None = None) -> dict:
    """A claims.json entry: the estimate's value and 95% interval against the region ``[low, high]``.

    Examples
    --------
    >>> c = claim("grows like sqrt(d)", "paper", "log-log slope", {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 9},
    ...           0.25, 0.75)
    >>> c["verdict"], c["expected"]
    ('holds', 'in [0.25, 0.75]')
    """
    if expected is None:
        expected = (f"in [{low:g}, {high:g}]" if math.isfinite(low) and math.isfinite(high)
                    else f">= {low:g}" if math.isfinite(low) else f"<= {high:g}")
    extra = {k: v for k, v in estimate.items() if k not in ("value", "ci_low", "ci_high")}
    return {"claim": text, "source": source, "statistic": statistic, "value": estimate.get("value"),
            "ci_low": estimate.get("ci_low"), "ci_high": estimate.get("ci_high"), "expected": expected,
            "verdict": stats.verdict(estimate, low, high), **extra}


def finished(records: list) -> list:
    """The records of runs that finished, with metrics."""
    return [r for r in records if r.get("status") == "done" and r.get("metrics")]


def final(record: dict, key: str) -> float:
    """The last epoch's ``key`` (NaN if absent)."""
    value = record["metrics"][-1].get(key)
    return float("nan") if value is None else float(value)


def tail(record: dict, key: str, epochs: int) -> np.ndarray:
    """``key`` over the last ``epochs`` epochs."""
    return np.array([m.get(key, np.nan) for m in record["metrics"][-epochs:]], float)


def strength(record: dict) -> float:
    """The dimension-free strength ``eps`` of the run's configuration."""
    return float(record["train"].get("eps", 0.0))


def dimension(record: dict) -> int:
    """The input dimension ``d`` of the run (from the trainer's config.json)."""
    info = record.get("run_config") or {}
    if "d" in info:
        return int(info["d"])
    return int(np.prod(info.get("input_shape", [0])))


@lru_cache(maxsize=None)
def _predicted(arch: str, shape: tuple, classes: int) -> float:
    from pathstats.prediction import predict

    return predict(arch, shape, classes=classes).loss_grad["l1"]


def predicted_l1(record: dict) -> float:
    """``pathstats.predict``'s E||dL/dx||_1 at initialisation for the run's network and input shape
    (Gaussian approximation, uniform softmax); NaN if it cannot be predicted."""
    info = record.get("run_config") or {}
    try:
        return _predicted(record["train"]["arch"], tuple(info["input_shape"]), int(info.get("classes", 10)))
    except Exception:  # noqa: BLE001 - an unsupported layer: no prediction line, not a failed experiment
        return float("nan")


def _by(records: list, key) -> dict:
    groups = defaultdict(list)
    for r in records:
        groups[key(r)].append(r)
    return dict(sorted(groups.items(), key=lambda kv: str(kv[0])))


def _curves(records: list, method: str, value) -> dict:
    """strength -> the per-seed values of ``value(record)`` for one method."""
    out = defaultdict(list)
    for r in records:
        if r["train"]["method"] == method:
            out[strength(r)].append(value(r))
    return dict(out)


def _log(x: float) -> float:
    return math.log(x) if x > 0 else float("nan")


def _match_claim(records, a: str, b: str, key: str, text: str, source: str) -> dict | None:
    ca = _curves(records, a, lambda r: _log(final(r, key)))
    cb = _curves(records, b, lambda r: _log(final(r, key)))
    if not (set(ca) & set(cb)):
        return None
    est = stats.curve_distance(ca, cb)
    return claim(text, source, f"mean log-ratio of {key} between {a} and {b} at matched strengths (95% CI from the "
                 f"spread between seeds; rms and chi-square p-value of one curve)", est, -math.log(FACTOR), math.log(FACTOR),
                 f"within a factor {FACTOR} (|log-ratio| <= {math.log(FACTOR):.3f})")


# ------------------------------------------------------------------------------ Figure 1


def fig1(records: list, out_dir: str, context: dict) -> dict:
    """Figure 1 a-f of Simon-Gabriel et al. and its claims."""
    done = finished(records)
    src = f"{SG}, Section 4.1, Figure 1"
    methods = _by(done, lambda r: r["train"]["method"])
    fig = Figure(2, 3, "Figure 1: training methods x strengths (test set, last epoch; bars: spread between seeds)")
    panels = [("test_grad_l1", "E||dL/dx||_1"), ("vulnerability", "adversarial vulnerability"), ("test_accuracy", "accuracy")]
    for i, (key, label) in enumerate(panels):
        ax = fig.panel(i, f"({'abc'[i]}) {label}", "strength eps (l_p methods get eps d^(1/p))", label,
                       logx=True, logy=i == 0)
        for method, rs in methods.items():
            if method == "none":
                ax.axhline(np.nanmean([final(r, key) for r in rs]), color="k", ls=":", label="none (eps = 0)")
                continue
            fig.curve(ax, _curves(rs, method, lambda r, k=key: final(r, k)), method)
        ax.legend(fontsize=6)
    for i, (xk, yk, xl, yl) in enumerate([("test_grad_l1", "vulnerability", "E||dL/dx||_1", "vulnerability"),
                                          ("test_grad_l1", "test_grad_l2", "E||dL/dx||_1", "E||dL/dx||_2"),
                                          ("vulnerability", "test_accuracy", "vulnerability", "accuracy")]):
        ax = fig.panel(3 + i, f"({'def'[i]}) {yl} against {xl}", xl, yl, logx=i == 1, logy=i == 1)
        for method, rs in methods.items():
            ax.scatter([final(r, xk) for r in rs], [final(r, yk) for r in rs], s=12, label=method)
        ax.legend(fontsize=6)
    figures = fig.save(os.path.join(out_dir, "fig1"))

    claims = [c for c in [
        _match_claim(done, "grad-l1", "fgsm", "test_grad_l1",
                     "l1 gradient regularisation matches l_inf adversarial augmentation (Proposition 3)", src),
        _match_claim(done, "grad-l2", "fgm-l2", "test_grad_l1",
                     "l2 gradient regularisation matches l2 adversarial augmentation (Proposition 3)", src),
        _match_claim(done, "grad-l1", "grad-l2", "test_grad_l1",
                     "with eps_p = eps d^(1/p) (eq. 3) the l_inf and l2 curves superimpose", src),
        _match_claim(done, "fgsm", "pgd", "vulnerability",
                     "iterative (PGD) and single-step adversarial training give the same curves", src),
    ] if c]
    grads = [final(r, "test_grad_l1") for r in done]
    claims.append(claim("vulnerability is a function of E||dL/dx||_1 whatever the training method", f"{src}d",
                        "Spearman rank correlation of vulnerability with E||dL/dx||_1 over all networks",
                        stats.spearman_ci(grads, [final(r, "vulnerability") for r in done]), RHO, 1.0))
    claims.append(claim("E||dL/dx||_2 is proportional to E||dL/dx||_1", f"{src}e",
                        "log-log slope of E||dL/dx||_2 on E||dL/dx||_1 over all networks",
                        stats.loglog_slope_ci(grads, [final(r, "test_grad_l2") for r in done]), 0.8, 1.2))
    claims.append(claim("the l2/l1 gradient-norm ratio does not depend on the training method", f"{src}e",
                        "standard deviation over all networks of log(E||dL/dx||_2 / E||dL/dx||_1) (chi-square CI)",
                        stats.std_ci(np.log([final(r, "test_grad_l2") for r in done]) - np.log(grads)), 0.0,
                        math.log(1.1), "<= log 1.1 = 0.095 (the ratio constant within about 10%)"))
    adv = [r for r in done if r["train"]["method"] not in ("none", "crosslip")]
    claims.append(claim("all gradient-regularisation and adversarial-augmentation methods reach the same "
                        "accuracy-vulnerability trade-off", f"{src}f",
                        "chance-adjusted fraction of residual variance of accuracy ~ vulnerability explained by the method",
                        stats.common_curve_test([final(r, "vulnerability") for r in adv], [final(r, "test_accuracy") for r in adv],
                                                [r["train"]["method"] for r in adv]), -math.inf, SHARED))
    return {"figures": figures, "claims": claims}


# ------------------------------------------------------------------------------ Figure 2 and 12


def _median_tail(record: dict, key: str, epochs: int) -> float:
    values = tail(record, key, epochs)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else float("nan")


def fig2(records: list, out_dir: str, context: dict) -> dict:
    """Figures 2 a-d and 12 of Simon-Gabriel et al. and their claims."""
    done = finished(records)
    last = int(context.get("last_epochs", 20))
    src = f"{SG}, Section 4.2, Figure 2"
    by_eps = _by(done, strength)
    fig = Figure(2, 2, f"Figure 2: input dimension x PGD strength (medians and 10-90% bands over the last {last} epochs)")
    for i, (key, label) in enumerate([("vulnerability", "adversarial vulnerability"), ("test_grad_l1", "E||dL/dx||_1")]):
        ax = fig.panel(i, f"({'ab'[i]}) {label} against sqrt(d)", "sqrt(d)", label)
        for eps, rs in by_eps.items():
            fig.band(ax, [math.sqrt(dimension(r)) for r in rs], [tail(r, key, last) for r in rs], f"eps = {eps:g}")
        if key == "test_grad_l1":
            fig.prediction(ax, {math.sqrt(dimension(r)): predicted_l1(r) for r in done})
        ax.legend(fontsize=6)
    by_d = _by(done, dimension)
    ax = fig.panel(2, "(c) accuracy against PGD strength", "PGD strength eps", "accuracy", logx=True)
    for d, rs in by_d.items():
        fig.band(ax, [strength(r) for r in rs], [tail(r, "test_accuracy", last) for r in rs], f"d = {d}", positive_x=True)
    ax.legend(fontsize=6)
    ax = fig.panel(3, "(d) accuracy-vulnerability trade-off (smoothing splines)", "vulnerability", "accuracy")
    for d, rs in by_d.items():
        xs = np.concatenate([tail(r, "vulnerability", last) for r in rs])
        ys = np.concatenate([tail(r, "test_accuracy", last) for r in rs])
        fig.spline(ax, xs, ys, f"d = {d}")
    ax.legend(fontsize=6)
    figures = fig.save(os.path.join(out_dir, "fig2"))

    fig = Figure(2, max(1, len(by_d)), "Figure 12: E||dL/dx||_1 over training epochs, test (top) and train (bottom)")
    for j, (d, rs) in enumerate(by_d.items()):
        for row, split in enumerate(("test", "train")):
            ax = fig.panel(row * len(by_d) + j, f"{split}, d = {d}", "epoch", "E||dL/dx||_1", logy=True)
            for r in rs:
                ax.plot([m["epoch"] for m in r["metrics"]], [m.get(f"{split}_grad_l1") for m in r["metrics"]],
                        label=f"eps = {strength(r):g}, seed {r['train']['seed']}", lw=1)
            ax.legend(fontsize=5)
    figures += fig.save(os.path.join(out_dir, "fig12"))

    med = {r["id"]: {k: _median_tail(r, k, last) for k in ("test_grad_l1", "train_grad_l1", "vulnerability", "test_accuracy")}
           for r in done}
    plain = by_eps.get(0.0, [])
    claims = [claim("E||dL/dx||_1 grows like sqrt(d) after usual training", f"{src}b",
                    "log-log slope of E||dL/dx||_1 (median over the last epochs) on d, eps = 0",
                    stats.loglog_slope_ci([dimension(r) for r in plain], [med[r["id"]]["test_grad_l1"] for r in plain]),
                    0.25, 0.75, "in [0.25, 0.75] (0.5: like sqrt(d))"),
              claim("adversarial vulnerability increases with the input dimension", f"{src}a",
                    "slope of vulnerability on log d, eps = 0",
                    stats.slope_ci(np.log([dimension(r) for r in plain]), [med[r["id"]]["vulnerability"] for r in plain]),
                    0.0, math.inf, "> 0")]
    strongest = by_eps[max(by_eps)] if by_eps and max(by_eps) > 0 else []
    if plain and strongest:
        s0 = stats.loglog_slope_ci([dimension(r) for r in plain], [med[r["id"]]["test_grad_l1"] for r in plain])
        s1 = stats.loglog_slope_ci([dimension(r) for r in strongest], [med[r["id"]]["test_grad_l1"] for r in strongest])
        est = stats.Estimate(None, None, None, s0["n"] + s1["n"])
        if s0.get("stderr") is not None and s1.get("stderr") is not None:
            diff, se = s1["value"] - s0["value"], math.hypot(s0["stderr"], s1["stderr"])
            est = stats.Estimate(diff, diff - 1.96 * se, diff + 1.96 * se, s0["n"] + s1["n"], stderr=se)
        claims.append(claim("stronger PGD regularisation dampens the dimension dependence", f"{src}b",
                            f"slope at eps = {max(by_eps):g} minus slope at eps = 0 (log E||dL/dx||_1 on log d; normal CI)",
                            est, -math.inf, 0.0, "< 0"))
    centred_x, centred_y = [], []
    for rs in by_eps.values():
        ys = [med[r["id"]]["test_accuracy"] for r in rs]
        centred_x += [math.log2(dimension(r)) for r in rs]
        centred_y += list(np.asarray(ys) - np.nanmean(ys))
    claims.append(claim("accuracies are dimension independent", f"{src}c",
                        "slope of accuracy per doubling of d (centred within each PGD strength)",
                        stats.slope_ci(centred_x, centred_y), -ACC_MARGIN, ACC_MARGIN))
    claims.append(claim("PGD reaches the same accuracy-vulnerability trade-off whatever the input dimension", f"{src}d",
                        "chance-adjusted fraction of residual variance of accuracy ~ vulnerability explained by d",
                        stats.common_curve_test([med[r["id"]]["vulnerability"] for r in done],
                                                [med[r["id"]]["test_accuracy"] for r in done], [dimension(r) for r in done]),
                        -math.inf, SHARED))
    claims.append(claim("gradient norms do not generalise: larger on the test set than on the training set",
                        f"{SG}, Section 4.2, Figure 12",
                        "mean log(test / train E||dL/dx||_1) over the last epochs, eps = 0",
                        stats.mean_ci([math.log(med[r["id"]]["test_grad_l1"] / med[r["id"]]["train_grad_l1"]) for r in plain]),
                        0.0, math.inf, "> 0"))
    claims.append(claim("on the training set the gradient norms become dimension independent", f"{SG}, Figure 12",
                        "log-log slope of the training-set E||dL/dx||_1 on d, eps = 0",
                        stats.loglog_slope_ci([dimension(r) for r in plain], [med[r["id"]]["train_grad_l1"] for r in plain]),
                        -0.25, 0.25))
    return {"figures": figures, "claims": claims}


# ------------------------------------------------------------------------------ Figure 3


def fig3(records: list, out_dir: str, context: dict) -> dict:
    """Figure 3 (Appendix B) of Simon-Gabriel et al. and its claims."""
    done = finished(records)
    src = f"{SG}, Appendix B, Figure 3"
    archs = _by(done, lambda r: r["train"]["arch"])
    fig = Figure(1, 3, "Figure 3: average vs strided vs max pooling after training (points: seeds; x: init prediction)")
    for i, (key, label) in enumerate([("vulnerability", "adversarial vulnerability"), ("test_accuracy", "accuracy"),
                                      ("test_grad_l1", "E||dL/dx||_1")]):
        ax = fig.panel(i, label, "architecture", label, logy=i == 2)
        for j, (arch, rs) in enumerate(archs.items()):
            values = [final(r, key) for r in rs]
            ax.scatter([j] * len(values), values, s=14, alpha=0.7)
            ax.errorbar([j + 0.15], [np.mean(values)], yerr=[stats.mean_ci(values).get("stderr") or 0], fmt="o", color="k")
            if key == "test_grad_l1":
                ax.scatter([j - 0.15], [predicted_l1(rs[0])], marker="x", color="r", s=40,
                           label="pathstats.predict at init" if j == 0 else None)
        ax.set_xticks(range(len(archs)), list(archs), rotation=15, fontsize=7)
        if key == "test_grad_l1":
            ax.legend(fontsize=6)
    figures = fig.save(os.path.join(out_dir, "fig3"))

    def values(arch, key):
        return [final(r, key) for r in archs.get(arch, [])]

    claims = []
    for other in ("conv6-strided", "conv6-maxpool"):
        if "conv6-avgpool" in archs and other in archs:
            claims.append(claim(f"average pooling makes networks less vulnerable than {other.split('-')[1]} ones",
                                src, f"mean vulnerability, avgpool minus {other} (Welch CI over seeds)",
                                stats.mean_difference_ci(values("conv6-avgpool", "vulnerability"), values(other, "vulnerability")),
                                -math.inf, 0.0, "< 0"))
            claims.append(claim(f"accuracies of avgpool and {other.split('-')[1]} networks are very close", src,
                                f"mean accuracy, avgpool minus {other}",
                                stats.mean_difference_ci(values("conv6-avgpool", "test_accuracy"), values(other, "test_accuracy")),
                                -ACC_MARGIN, ACC_MARGIN))
    if "conv6-avgpool" in archs and "conv6-strided" in archs:
        ratio = {a: [math.log10(final(r, "test_grad_l1") / predicted_l1(r)) for r in archs[a]]
                 for a in ("conv6-avgpool", "conv6-strided")}
        claims.append(claim("after training, average-pooling gradients rise further above their initialisation-time "
                            "prediction than strided ones", src,
                            "log10(trained / predicted E||dL/dx||_1), avgpool minus strided",
                            stats.mean_difference_ci(ratio["conv6-avgpool"], ratio["conv6-strided"]), 0.0, math.inf, "> 0"))
    return {"figures": figures, "claims": claims}


# ------------------------------------------------------------------------------ Figures 4 and 6

ATTACK_NAMES = ("fgsm", "fgm-l2", "pgd-inf", "pgd-l2", "deepfool")


def fig4(records: list, out_dir: str, context: dict) -> dict:
    """Figures 4 and 6 (Appendix F) of Simon-Gabriel et al. and their claims."""
    done = [r for r in finished(records) if r["evaluations"].get("attacks")]
    src = f"{SG}, Appendix F, Figure 4"
    figures, claims = [], []
    for threshold, number in (("inf", 4), ("2", 6)):
        fig = Figure(1, 2, f"Figure {number}: vulnerability under five attacks, l_{threshold} threshold")
        ax_a = fig.panel(0, "(a) against the l1-gradient regularisation strength", "strength eps", "vulnerability", logx=True)
        ax_b = fig.panel(1, "(b) against E||dL/dx||_1", "E||dL/dx||_1", "vulnerability")
        for attack in ATTACK_NAMES:
            rows = [(strength(r), final(r, "test_grad_l1"), r["evaluations"]["attacks"]["thresholds"][threshold][attack])
                    for r in done]
            rows.sort(key=lambda t: t[0])
            eps = [t[0] for t in rows if t[0] > 0]
            ax_a.plot(eps, [t[2]["vulnerability"] for t in rows if t[0] > 0], "o-", label=attack)
            ax_b.plot([t[1] for t in rows], [t[2]["vulnerability"] for t in rows], "o", label=attack)
            if threshold == "inf":
                claims.append(claim(f"vulnerability under {attack} is a function of E||dL/dx||_1", f"{src}b",
                                    "Spearman rank correlation of vulnerability with E||dL/dx||_1 over the networks",
                                    stats.spearman_ci([t[1] for t in rows], [t[2]["vulnerability"] for t in rows]), RHO, 1.0))
        ax_a.legend(fontsize=6)
        ax_b.legend(fontsize=6)
        figures += fig.save(os.path.join(out_dir, f"fig{number}"))
    for threshold, better, worse, number in (("inf", "pgd-inf", "pgd-l2", 4), ("2", "pgd-l2", "pgd-inf", 6)):
        diffs = [r["evaluations"]["attacks"]["thresholds"][threshold][better]["vulnerability"]
                 - r["evaluations"]["attacks"]["thresholds"][threshold][worse]["vulnerability"] for r in done]
        claims.append(claim(f"under an l_{threshold} threshold, {better} attacks are more effective than {worse}",
                            f"{SG}, Appendix F, Figure {number}",
                            f"mean over networks of vulnerability({better}) - vulnerability({worse})",
                            stats.mean_ci(diffs), 0.0, math.inf, "> 0"))
    return {"figures": figures, "claims": claims}


# ------------------------------------------------------------------------------ Finlay & Oberman

FO = "Finlay & Oberman 2019"


def finlay(records: list, out_dir: str, context: dict) -> dict:
    """Finlay & Oberman's bounds against DeepFool's distances, and their claims."""
    done = [r for r in finished(records) if r["evaluations"].get("bounds")]
    groups = _by(done, lambda r: f"{r['train']['method']} {strength(r):g}".replace("none 0", "none"))
    kinds = [k for k in ("lipschitz", "curvature") if any(r["evaluations"]["bounds"].get(f"{k}_bound") for r in done)]
    fig = Figure(1, max(1, len(kinds)), "Finlay & Oberman: lower bounds against measured l2 distances (DeepFool)")
    claims = []
    for i, kind in enumerate(kinds):
        ax = fig.panel(i, f"{kind} bound (Proposition 2.1)", "DeepFool l2 distance (upper bound on the minimum)",
                       f"{kind} lower bound", logx=True, logy=True)
        held = total = 0
        for label, rs in groups.items():
            xs, ys = [], []
            for r in rs:
                ev = r["evaluations"]["bounds"]
                if not ev.get(f"{kind}_bound"):
                    continue
                for dist, bound, fooled in zip(ev["distance"], ev[f"{kind}_bound"], ev["fooled"]):
                    if fooled and bound is not None and math.isfinite(bound):
                        xs.append(dist)
                        ys.append(bound)
            ax.scatter(xs, np.maximum(ys, 1e-6), s=6, alpha=0.6, label=label)
            held += int(np.sum(np.asarray(ys) <= np.asarray(xs)))
            total += len(xs)
        lim = ax.get_xlim()
        ax.plot(lim, lim, "k--", lw=1, label="bound = distance")
        ax.legend(fontsize=6)
        claims.append(claim(f"the {kind} bound lies below the measured minimal adversarial distance", f"{FO}, Section 4, Table 2",
                            "fraction of attacked images (all networks) with bound <= DeepFool's l2 distance "
                            "(exact binomial CI)", stats.proportion_ci(held, total), 0.95, 1.0, ">= 0.95"))
    figures = fig.save(os.path.join(out_dir, "finlay"))

    def mean_log_distance(r):
        ev = r["evaluations"]["bounds"]
        ds = [dist for dist, fooled in zip(ev["distance"], ev["fooled"]) if fooled]
        return float(np.mean(np.log(ds))) if ds else float("nan")

    plain = groups.get("none", [])
    for label, rs in groups.items():
        if not label.startswith("fd-") or not plain:
            continue
        claims.append(claim(f"gradient regularisation ({label}) increases the minimal adversarial distance",
                            f"{FO}, Section 4, Table 2", f"mean log DeepFool distance, {label} minus none (Welch CI over seeds)",
                            stats.mean_difference_ci([mean_log_distance(r) for r in rs], [mean_log_distance(r) for r in plain]),
                            0.0, math.inf, "> 0"))
        if all(r["evaluations"]["bounds"].get("lipschitz_constant") for r in rs + plain):
            claims.append(claim(f"gradient regularisation ({label}) reduces the loss's Lipschitz estimate L",
                                f"{FO}, Section 4 (Table 3)",
                                f"log10 L (max gradient norm over the attacked images), none minus {label} (Welch CI over seeds)",
                                stats.mean_difference_ci(
                                    [math.log10(r["evaluations"]["bounds"]["lipschitz_constant"]) for r in plain],
                                    [math.log10(r["evaluations"]["bounds"]["lipschitz_constant"]) for r in rs]),
                                0.0, math.inf, "> 0 (the paper: one to two orders of magnitude)"))
    return {"figures": figures, "claims": claims}


# ------------------------------------------------------------------------------ Roth et al.

ROTH = "Roth et al. 2020"


def roth(records: list, out_dir: str, context: dict) -> dict:
    """Roth et al.'s Figures 2 and 3: alignment, singular values, accuracy under attack, and claims."""
    done = [r for r in finished(records) if r["evaluations"].get("alignment")]
    groups = _by(done, lambda r: r["train"]["method"])
    fig = Figure(1, 3, "Roth et al.: logit-Jacobian spectrum, alignment of l2 PGD perturbations, accuracy under attack")
    ax_s = fig.panel(0, "singular values of J(x)", "rank", "singular value", logy=True)
    ax_c = fig.panel(1, "|cos(delta, v_r)|", "rank r", "|cosine|")
    ax_r = fig.panel(2, "accuracy under l_inf PGD", "eps", "accuracy")
    for method, rs in groups.items():
        sing = np.concatenate([np.asarray(r["evaluations"]["alignment"]["singular_values"]) for r in rs])
        cos = np.concatenate([np.asarray(r["evaluations"]["alignment"]["cos_by_rank"]) for r in rs])
        rank = np.arange(1, sing.shape[1] + 1)
        ax_s.errorbar(rank, sing.mean(0), yerr=sing.std(0, ddof=1) / math.sqrt(len(sing)), label=method, capsize=2)
        ax_c.errorbar(rank, cos.mean(0), yerr=cos.std(0, ddof=1) / math.sqrt(len(cos)), label=method, capsize=2)
        curve = defaultdict(list)
        for r in rs:
            for point in r["evaluations"]["alignment"]["robust_accuracy"]:
                curve[point["eps"]].append(point["accuracy_adv"])
        eps = sorted(curve)
        ax_r.plot(eps, [np.mean(curve[e]) for e in eps], "o-", label=method)
    if done:
        rnd = np.concatenate([r["evaluations"]["alignment"]["cos_random"] for r in done])
        ax_c.axhline(rnd.mean(), color="k", ls=":", label="random direction")
    for ax in (ax_s, ax_c, ax_r):
        ax.legend(fontsize=6)
    figures = fig.save(os.path.join(out_dir, "roth"))

    cos1 = [float(np.mean(np.asarray(r["evaluations"]["alignment"]["cos_by_rank"])[:, 0])) for r in done]
    gap = [float(np.mean(np.asarray(r["evaluations"]["alignment"]["cos_by_rank"])[:, 0]
                         - np.asarray(r["evaluations"]["alignment"]["cos_by_rank"])[:, 1])) for r in done]
    src = f"{ROTH}, Section 5.2, Figure 2"
    claims = [claim("PGD perturbations align with the dominant singular vector of the Jacobian", src,
                    "mean |cos(delta, v_1)| per network, mean over networks (t CI)", stats.mean_ci(cos1), 0.5, 1.0,
                    ">= 0.5 (a random direction gives about sqrt(2 / (pi d)))"),
              claim("the alignment decreases with the rank of the singular vector", src,
                    "mean |cos(delta, v_1)| - |cos(delta, v_2)| over networks", stats.mean_ci(gap), 0.0, math.inf, "> 0")]
    top = {m: [float(np.mean(np.log(np.asarray(r["evaluations"]["alignment"]["singular_values"])[:, 0]))) for r in rs]
           for m, rs in groups.items()}
    for method in ("pgd", "opnorm"):
        if method in top and "none" in top:
            claims.append(claim(f"{method} training dampens the dominant singular value", src,
                                f"mean log sigma_1, {method} minus none (Welch CI over seeds)",
                                stats.mean_difference_ci(top[method], top["none"]), -math.inf, 0.0, "< 0"))
    if "pgd" in groups and "opnorm" in groups:
        eps = max(strength(r) for r in groups["pgd"])

        def acc(r):
            points = {p["eps"]: p["accuracy_adv"] for p in r["evaluations"]["alignment"]["robust_accuracy"]}
            key = min(points, key=lambda e: abs(e - eps))
            return points[key]

        claims.append(claim("operator-norm regularisation is as robust as PGD training", f"{ROTH}, Section 5.3, Figure 3",
                            f"accuracy under l_inf PGD near eps = {eps:g}, opnorm minus pgd (Welch CI over seeds)",
                            stats.mean_difference_ci([acc(r) for r in groups["opnorm"]], [acc(r) for r in groups["pgd"]]),
                            -0.05, 0.05))
    return {"figures": figures, "claims": claims}
