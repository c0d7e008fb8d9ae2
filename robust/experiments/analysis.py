"""Claims and figures of each experiment, computed from ``results.csv`` and ``epochs.csv`` alone.

:func:`analyse_tables` is the one entry point: it reads nothing but the two tables'
rows (:mod:`.tables`), so ``--reanalyse DIR`` works on a cluster's or a colleague's
tables and the statistics can be tested on tables with known answers.  Each
experiment's analysis draws the paper's figures (PNG and PDF) and returns its claims
catalogue: EVERY claim of the corresponding section, figures and theorems, each either
tested (the statistic, its value with a 95% interval, the region the statement allows
with its tolerance and why, the verdict) or listed as ``untested`` with the reason.

Rules (SPEC 9).  Runs that did not finish, diverged (a non-finite metric) or collapsed
to chance (test accuracy within :data:`~.tables.CHANCE_MARGIN` of ``1/K``) are kept out
of every statistic (their number is in the report).  Intervals come from independent
replicates (seeds, networks, images), never from epochs of one run.  Curves are
matched strength by strength (:func:`pathstats.stats.curve_match`); a functional
relation across methods is a common-curve test (:func:`pathstats.stats.common_curve`);
a trend over strengths is a regression over all of them.  The regions are stated
before the data are seen and never widened.  A claim from an incomplete grid is marked
``provisional``.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict

import numpy as np

from pathstats import stats

from .figures import Figure, colour
from .tables import CHANCE_MARGIN, records_to_tables

__all__ = ["analyse_tables", "analyse_records", "claim", "untested", "ANALYSES", "FACTOR", "ACC_MARGIN", "RHO",
           "DEGENERATE_RULE"]

SG = "Simon-Gabriel et al. 2019"
FO = "Finlay & Oberman 2019"
ROTH = "Roth et al. 2020"

#: Two curves "match" when they are within this factor of each other at every strength.
FACTOR = 1.5
_FACTOR_WHY = ("a factor 1.5 (0.18 decade) is about the smallest gap between two curves that the papers' log-scale "
               "figures, spanning two or more decades, show as distinct; 'near superposition' allows less")
#: Accuracies are "the same" / "dimension independent" within this many points (absolute).
ACC_MARGIN = 0.03
_ACC_WHY = "3 accuracy points: about the spread the papers' accuracy curves show between curves they call overlapping"
#: A "functional-like" monotone relation: Spearman's rank correlation at least this.
RHO = 0.8
SQRT = (0.25, 0.75)
FLAT = (-0.25, 0.25)
_EXPONENT_WHY = ("exponent 0.5 is sqrt(d), 0 is dimension independent; 0.25, halfway, separates the two laws on "
                 "the log scale")
DEGENERATE_RULE = (f"a run is kept out of every statistic if it did not finish, if a final metric is not finite "
                   f"(diverged), or if its test accuracy is within {CHANCE_MARGIN:g} of chance 1/K (collapsed: its "
                   "gradients and vulnerability say nothing about the method)")


# ------------------------------------------------------------------------------ claims


def claim(text: str, source: str, statistic: str, estimate: dict, low: float = -math.inf, high: float = math.inf,
          expected: str | None = None, why: str = "") -> dict:
    """A claims.json entry: the estimate's value and 95% interval against the region ``[low, high]``.

    A joint estimate (per strength or per group) carries its own ``verdict``
    (:func:`pathstats.stats.all_within`); otherwise :func:`pathstats.stats.verdict` decides.

    Examples
    --------
    >>> c = claim("grows like sqrt(d)", "paper", "log-log slope", {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 9},
    ...           0.25, 0.75)
    >>> c["verdict"], c["expected"], c["n"]
    ('holds', 'in [0.25, 0.75]', 9)
    """
    if expected is None:
        expected = (f"in [{low:g}, {high:g}]" if math.isfinite(low) and math.isfinite(high)
                    else f">= {low:g}" if math.isfinite(low) else f"<= {high:g}")
    verdict = estimate.get("verdict") or stats.verdict(estimate, low, high)
    extra = {k: v for k, v in estimate.items() if k not in ("value", "ci_low", "ci_high", "n", "verdict")}
    shown = {"value": estimate.get("value"), "ci_low": estimate.get("ci_low"), "ci_high": estimate.get("ci_high")}
    members = estimate.get("per_x") or estimate.get("per_group")
    if estimate.get("verdict") and members:
        # a joint claim shows the member that decides its verdict, so that the row's interval reads by the
        # one rule (inside: holds, outside: fails, straddling: inconclusive); the envelope stays in the entry
        member = deciding_member(members, verdict, low, high)
        extra["envelope"] = [estimate.get("ci_low"), estimate.get("ci_high")]
        extra["shown"] = {k: member[k] for k in ("x", "group", "at") if member.get(k) is not None}
        shown = {k: member.get(k) for k in shown}
    return {"claim": text, "source": source, "statistic": statistic, **shown, "n": estimate.get("n", 0),
            "expected": expected, "why": why, "verdict": verdict,
            "region": [v if math.isfinite(v) else None for v in (low, high)], **extra}


def deciding_member(members: list, verdict: str, low: float, high: float) -> dict:
    """The member (strength or group) of a joint claim that decides its ``verdict``: for "fails" the one
    lying farthest outside ``[low, high]``, for "inconclusive" the one reaching farthest past it (or one
    without an interval), for "holds" the one nearest the region's edge.

    Examples
    --------
    >>> members = [{"value": 0.1, "ci_low": 0.0, "ci_high": 0.2}, {"value": 0.3, "ci_low": 0.2, "ci_high": 0.5}]
    >>> deciding_member(members, "inconclusive", -0.4, 0.4)["value"], deciding_member(members[:1], "holds", -0.4, 0.4)["value"]
    (0.3, 0.1)
    """
    def has_interval(m):
        return m.get("ci_low") is not None and m.get("ci_high") is not None

    def own(m):
        return stats.verdict(m, low, high) if has_interval(m) else "inconclusive"

    pool = [m for m in members if own(m) == verdict] or list(members)
    if verdict == "fails":
        return max(pool, key=lambda m: max(low - m["ci_high"], m["ci_low"] - high) if has_interval(m) else -math.inf)
    if verdict == "inconclusive":
        return max(pool, key=lambda m: max(low - m["ci_low"], m["ci_high"] - high) if has_interval(m) else math.inf)
    return min(pool, key=lambda m: min(m["ci_low"] - low, high - m["ci_high"]) if has_interval(m) else math.inf)


def untested(text: str, source: str, reason: str) -> dict:
    """A catalogue entry the data cannot test, with the reason.

    Examples
    --------
    >>> untested("PGD beats down-sampling", "paper, App. H", "needs Mini-ImageNet")["verdict"]
    'untested'
    """
    return {"claim": text, "source": source, "statistic": "", "value": None, "ci_low": None, "ci_high": None, "n": 0,
            "expected": "", "why": reason, "verdict": "untested"}


def _per_x(groups: dict, low: float, high: float, level: float = stats.LEVEL) -> dict:
    """Mean with a simultaneous t interval (Bonferroni over the x values) at each x of ``groups``
    (x -> replicate values); verdict :func:`pathstats.stats.all_within`; value the worst x."""
    cells = {x: v for x, v in groups.items() if len([a for a in v if np.isfinite(a)])}
    k = len(cells)
    if not k:
        return stats.Estimate(None, None, None, 0, verdict="inconclusive", per_x=[])
    per = [stats.Estimate(**{**stats.mean_ci(v, 1 - (1 - level) / k), "x": x}) for x, v in sorted(cells.items())]
    return _joint(per, low, high)


def _joint(per: list, low: float, high: float) -> dict:
    def badness(e):
        v = e["value"]
        return -math.inf if v is None else max(low - v, v - high, -abs(v))

    worst = max(per, key=badness)
    complete = all(e["ci_low"] is not None for e in per)
    return stats.Estimate(worst["value"], min(e["ci_low"] for e in per) if complete else None,
                          max(e["ci_high"] for e in per) if complete else None, sum(e["n"] for e in per),
                          verdict=stats.all_within(per, low, high), per_x=[dict(e) for e in per])


# ------------------------------------------------------------------------------ the tables


def _num(value) -> float:
    try:
        return float(value) if value is not None and value != "" else math.nan
    except (TypeError, ValueError):
        return math.nan


class Tables:
    """The two tables, indexed: the runs that enter the statistics, their epochs, tail medians."""

    def __init__(self, results: list, epochs: list, context: dict):
        self.results = results
        self.runs = [r for r in results if r.get("status", "done") == "done" and not r.get("degenerate")]
        self.excluded = [r for r in results if r.get("status", "done") == "done" and r.get("degenerate")]
        self.last = max(1, int(context.get("last_epochs", 20)))
        by_id = defaultdict(list)
        for row in epochs:
            by_id[row.get("id")].append(row)
        self.epochs = {k: sorted(v, key=lambda e: _num(e.get("epoch"))) for k, v in by_id.items()}

    @staticmethod
    def get(row: dict, *keys) -> float:
        """The first of ``keys`` the row has, as a float (NaN if none)."""
        for k in keys:
            if row.get(k) is not None and row.get(k) != "":
                return _num(row[k])
        return math.nan

    def trained(self, row: dict) -> list:
        """The run's epoch rows after the initialisation."""
        return [e for e in self.epochs.get(row.get("id"), []) if _num(e.get("epoch")) > 0]

    def init(self, row: dict) -> dict | None:
        """The run's epoch-0 row (the initialisation), if the table has one."""
        rows = [e for e in self.epochs.get(row.get("id"), []) if _num(e.get("epoch")) == 0]
        return rows[0] if rows else None

    def tail(self, row: dict, key: str) -> np.ndarray:
        """``key`` over the run's last ``last_epochs`` EPOCHS (the evaluated ones among them: a run
        evaluated every 2 epochs contributes half as many rows), the final value if epochs.csv lacks the run."""
        trained = self.trained(row)
        final = max((_num(e.get("epoch")) for e in trained), default=0.0)
        rows = [e for e in trained if _num(e.get("epoch")) > final - self.last]
        values = np.array([_num(e.get(key)) for e in rows], float)
        values = values[np.isfinite(values)]
        return values if len(values) else np.array([self.get(row, key)])

    def median(self, row: dict, key: str) -> float:
        values = self.tail(row, key)
        values = values[np.isfinite(values)]
        return float(np.median(values)) if len(values) else math.nan

    def series(self, row: dict, key: str) -> tuple:
        rows = self.trained(row)
        return np.array([_num(e.get("epoch")) for e in rows]), np.array([_num(e.get(key)) for e in rows])


def eps(row: dict) -> float:
    """The dimension-free strength ``eps`` of a run."""
    return _num(row.get("eps")) if row.get("eps") not in (None, "") else 0.0


def dim(row: dict) -> float:
    return _num(row.get("d"))


def _by(rows: list, key) -> dict:
    groups = defaultdict(list)
    for r in rows:
        groups[key(r)].append(r)
    return dict(sorted(groups.items(), key=lambda kv: (str(type(kv[0])), kv[0])))


def _log(x: float) -> float:
    return math.log(x) if x > 0 else math.nan


def _ranks(strengths) -> dict:
    """Strength -> its rank (0 for the smallest; the grids are log-spaced, so rank ~ log eps with eps = 0 first)."""
    return {e: i for i, e in enumerate(sorted(set(strengths)))}


def _last_half_slope(t: Tables, row: dict, key: str, log: bool = False) -> float:
    """Slope per epoch of ``key`` (or its log) over the second half of the run's epochs (NaN below 4 epochs)."""
    ep, v = t.series(row, key)
    keep = np.isfinite(v) & ((v > 0) if log else True)
    ep, v = ep[keep], v[keep]
    if len(ep) < 4:
        return math.nan
    half = ep >= np.median(ep)
    return stats.slope_ci(ep[half], np.log(v[half]) if log else v[half])["value"] or math.nan


# ------------------------------------------------------------------------------ Figure 1 (and 5)

#: Metrics that are proportions: their intervals are drawn cut to [0, 1].
_PROPORTIONS = ("vulnerability", "test_accuracy")
_FIG1_PANELS = (("test_grad_l1", "E||dL/dx||_1", True), ("vulnerability", "adversarial vulnerability", True),
                ("test_accuracy", "accuracy", False))
_FIG1_PAIRS = (
    ("grad-l1", "fgsm", "l1 gradient regularisation matches l_inf adversarial augmentation (Proposition 3)",
     f"{SG}, Section 4.1, Figure 1 a-c"),
    ("grad-l2", "fgm-l2", "l2 gradient regularisation matches l2 adversarial augmentation (Proposition 3)",
     f"{SG}, Section 4.1, Figure 1 a-c"),
    ("grad-l1", "grad-l2", "with eps_p = eps d^(1/p) (eq. 3) the q = 1 and q = 2 gradient-penalty curves superimpose",
     f"{SG}, Section 4.1, eq. 3, Figure 1 a-c"),
    ("fgsm", "fgm-l2", "with eps_p = eps d^(1/p) (eq. 3) the l_inf and l2 augmentation curves superimpose",
     f"{SG}, Section 4.1, eq. 3, Figure 1 a-c"),
    ("pgd", "fgsm", "iterative (PGD) and single-step adversarial augmentation give strikingly similar curves",
     f"{SG}, Section 4.1 (ii), Figure 1 a-c"),
    ("fgsm-through", "fgsm", "back-propagating through the attack (FGSM variant) makes no significant difference",
     f"{SG}, Appendix E, Figure 1"),
)


def _curves(rows: list, method: str, value) -> dict:
    """strength -> {(seed, arch, size): value} of one method, so that
    :func:`pathstats.stats.curve_match` pairs the two methods' runs of the same seed (and network)."""
    out = defaultdict(dict)
    for r in rows:
        if r.get("method") == method:
            out[eps(r)][(r.get("seed"), r.get("arch"), r.get("size"))] = value(r)
    return dict(out)


def _match(t: Tables, a: str, b: str, key: str, label: str, log: bool, text: str, source: str) -> dict:
    rows = t.runs
    methods = {r.get("method") for r in rows}
    if a not in methods or b not in methods:
        missing = " and ".join(m for m in (a, b) if m not in methods)
        return untested(f"{text}: {label}", source, f"no finished, non-degenerate run of {missing} in the tables")
    f = (lambda r: _log(t.get(r, key))) if log else (lambda r: t.get(r, key))
    ca, cb = _curves(rows, a, f), _curves(rows, b, f)
    if log:
        est, low, high = stats.curve_match(ca, cb, -math.log(FACTOR), math.log(FACTOR)), -math.log(FACTOR), math.log(FACTOR)
        region, why = f"|log-ratio| <= log {FACTOR:g} = {math.log(FACTOR):.3f} at every strength", _FACTOR_WHY
        what = f"log({label}, {a} / {b})"
    else:
        est, low, high = stats.curve_match(ca, cb, -ACC_MARGIN, ACC_MARGIN), -ACC_MARGIN, ACC_MARGIN
        region, why, what = f"|difference| <= {ACC_MARGIN:g} at every strength", _ACC_WHY, f"{label}, {a} minus {b}"
    if not est["per_x"]:
        return untested(f"{text}: {label}", source, f"{a} and {b} share no strength")
    return claim(f"{text}: {label}", source,
                 f"{what} at each common strength (the deciding one shown; "
                 + ("seed-paired: a seed fixes the initialisation, data order and augmentation of both methods' runs; "
                    "spread of the per-seed differences" if est["paired"] else "seed spread")
                 + f" pooled over strengths, Bonferroni over {len(est['per_x'])} strengths)", est, low, high, region, why)


def fig1(t: Tables, out_dir: str, context: dict) -> dict:
    """Figures 1 (a-f) and 5 of Simon-Gabriel et al. and the claims of Section 4.1."""
    rows = t.runs
    src = f"{SG}, Section 4.1, Figure 1"
    methods = _by(rows, lambda r: r.get("method"))
    fig = Figure(2, 3, "Figure 1: training methods x strengths (test set, last epoch; means, 95% intervals over seeds)")
    for i, (key, label, logy) in enumerate(_FIG1_PANELS):
        ax = fig.panel(i, f"({'abc'[i]}) {label}", "strength eps (l_p methods get eps d^(1/p))", label, logx=True,
                       logy=logy)
        fig.zero_position(ax, [eps(r) for r in rows])
        for method, rs in methods.items():
            fig.curve(ax, _curves(rs, method, lambda r, k=key: t.get(r, k)), method,
                      bounds=(0.0, 1.0) if key in _PROPORTIONS else None)
    for i, (xk, yk, xl, yl, log) in enumerate([("test_grad_l1", "vulnerability", "E||dL/dx||_1", "vulnerability", True),
                                               ("test_grad_l1", "test_grad_l2", "E||dL/dx||_1", "E||dL/dx||_2", True),
                                               ("vulnerability", "test_accuracy", "vulnerability", "accuracy", False)]):
        ax = fig.panel(3 + i, f"({'def'[i]}) {yl} against {xl}", xl, yl, logx=log, logy=log)
        for method, rs in methods.items():
            fig.points(ax, [t.get(r, xk) for r in rs], [t.get(r, yk) for r in rs], method)
    figures = fig.save(os.path.join(out_dir, "fig1"))

    claims = []
    for a, b, text, source in _FIG1_PAIRS:
        for key, label, log in _FIG1_PANELS:
            claims.append(_match(t, a, b, key, label, log, text, source))

    lg = [_log(t.get(r, "test_grad_l1")) for r in rows]
    names = [r.get("method") for r in rows]
    strengths = [eps(r) for r in rows]  # a method trained at one strength (none) is judged by its mean deviation
    claims.append(claim("vulnerability is a function of E||dL/dx||_1 whatever the training method", f"{src}d",
                        "deviation of each method's log vulnerability from the common curve of the other methods "
                        "(a polynomial in log E||dL/dx||_1 of degree 1-4, chosen on their runs by F tests), at both ends "
                        "of its range inside their support (3 of their runs at or beyond each end; a method run at one "
                        "strength: its mean deviation); the deciding one shown",
                        stats.common_curve(lg, [_log(t.get(r, "vulnerability")) for r in rows], names,
                                           -math.log(FACTOR), math.log(FACTOR), levels=strengths),
                        -math.log(FACTOR), math.log(FACTOR), f"every deviation within log {FACTOR:g}", _FACTOR_WHY))
    claims.append(claim("E||dL/dx||_2 is proportional to E||dL/dx||_1 (near-perfect linear relation)", f"{src}e",
                        "log-log slope of E||dL/dx||_2 on E||dL/dx||_1 over all networks",
                        stats.loglog_slope([t.get(r, "test_grad_l1") for r in rows], [t.get(r, "test_grad_l2") for r in rows]),
                        0.8, 1.2, "in [0.8, 1.2]",
                        "proportional means exponent 1; 0.8 would change the l2/l1 ratio by half a decade over the 2.5 "
                        "decades Figure 1e spans"))
    claims.append(claim("the l2/l1 relation is independent of the training method", f"{src}e",
                        "deviation of each method's log E||dL/dx||_2 from the other methods' common curve in "
                        "log E||dL/dx||_1; the deciding one shown",
                        stats.common_curve(lg, [_log(t.get(r, "test_grad_l2")) for r in rows], names,
                                           -math.log(FACTOR), math.log(FACTOR), levels=strengths),
                        -math.log(FACTOR), math.log(FACTOR), f"every deviation within log {FACTOR:g}", _FACTOR_WHY))
    adv = [r for r in rows if r.get("method") != "crosslip"]
    claims.append(claim("all gradient-regularisation and adversarial-augmentation methods (PGD included) reach the "
                        "same accuracy-vulnerability trade-off", f"{src}f",
                        "deviation of each method's accuracy from the other methods' common curve in vulnerability "
                        "(crosslip left out); the deciding one shown",
                        stats.common_curve([t.get(r, "vulnerability") for r in adv], [t.get(r, "test_accuracy") for r in adv],
                                           [r.get("method") for r in adv], -ACC_MARGIN, ACC_MARGIN,
                                           levels=[eps(r) for r in adv]),
                        -ACC_MARGIN, ACC_MARGIN, f"every deviation within {ACC_MARGIN:g}", _ACC_WHY))
    claims.append(_crosslip(t, adv, f"{src}f"))
    claims.append(_first_order(t, rows, f"{SG}, Lemma 2, eq. 2, Section 4.1"))
    gl1 = [r for r in rows if r.get("method") in ("grad-l1", "none")]
    rank = _ranks([eps(r) for r in gl1])
    claims.append(claim("the first-order defence (l1 gradient penalty) works against iterative attacks: the PGD "
                        "vulnerability falls as eps grows", f"{SG}, Section 4.1 (i), Figures 1b and 4a",
                        "slope of log vulnerability (l_inf PGD) on the strength's rank, grad-l1 and eps = 0 runs, all "
                        "strengths", stats.slope_ci([rank[eps(r)] for r in gl1], [_log(t.get(r, "vulnerability")) for r in gl1]),
                        -math.inf, 0.0, "< 0", "a decrease is all the statement says"))
    claims.append(_fig5(t, rows))
    return {"figures": figures, "claims": claims}


def _crosslip(t: Tables, adv: list, source: str) -> dict:
    text = "for higher penalisation the other methods' trade-offs are much better than cross-Lipschitz's"
    cross = [r for r in t.runs if r.get("method") == "crosslip" and eps(r) > 0]
    if not cross or not adv:
        return untested(text, source, "no finished, non-degenerate crosslip runs (or no other methods) in the tables")
    strengths = sorted({eps(r) for r in cross})
    high = [r for r in cross if eps(r) >= strengths[len(strengths) // 2]]
    est = stats.common_curve([t.get(r, "vulnerability") for r in adv + high],
                             [t.get(r, "test_accuracy") for r in adv + high],
                             ["others"] * len(adv) + ["crosslip"] * len(high), -math.inf, 0.0)
    mine = [e for e in est["per_group"] if e["group"] == "crosslip"]
    if not mine:
        return untested(text, source, "crosslip's high-strength vulnerabilities lie outside the other methods' range")
    return claim(text, source, "accuracy of crosslip's upper-half strengths minus the other methods' common curve at the "
                 "same vulnerability, at both ends of its range (simultaneous intervals)", _joint(
                     [stats.Estimate(**e) for e in mine], -math.inf, 0.0), -math.inf, 0.0, "< 0 everywhere (worse)",
                 "'much better' for the others means crosslip's accuracy lies below their curve")


def _first_order(t: Tables, rows: list, source: str) -> dict:
    text = "the first-order term eps E||dL/dx||_1 (Lemma 2) accounts for the measured loss damage"
    groups = defaultdict(list)
    for r in rows:
        groups[eps(r)].append(_log(t.get(r, "test_loss_damage", "loss_damage") / t.get(r, "test_first_order_damage",
                                                                                       "first_order_damage")))
    if not any(np.isfinite(v).any() for v in groups.values()):
        return untested(text, source, "the tables have no loss_damage and first_order_damage columns")
    return claim(text, source, "log(measured loss damage / first-order damage) at each strength (all methods' runs "
                 "at that strength; simultaneous t intervals; the deciding one shown)", _per_x(groups, -math.log(3), math.log(3)),
                 -math.log(3), math.log(3), "|log ratio| <= log 3 at every strength",
                 "the paper's own Figure 9a finds the measured damage about twice the first-order term; a factor 3 "
                 "admits that and still rejects a first-order term off by an order of magnitude")


def _fig5(t: Tables, rows: list) -> dict:
    text = "with an l2 threshold eps sqrt(d) and DeepFool attacks all curves look essentially the same as in Figure 1"
    source = f"{SG}, Appendix F, Figure 5"
    key = "atk_2_deepfool_vulnerability"
    if not any(r.get(key) is not None for r in rows):
        return untested(text, source, "the grid runs no attack suite on these networks (no atk_2_deepfool_vulnerability "
                        "column): add the 'attacks' evaluation to fig1's grid")
    return _match(t, "grad-l1", "fgsm", key, "DeepFool vulnerability under the l2 threshold", True,
                  "Figure 5: l1 gradient regularisation matches l_inf augmentation", source)


# ------------------------------------------------------------------------------ Figures 2, 7-12


def fig2(t: Tables, out_dir: str, context: dict) -> dict:
    """Figures 2 (a-d), 8, 10-12 of Simon-Gabriel et al. and the claims of Section 4.2 and Appendix G."""
    rows = t.runs
    last = t.last
    src = f"{SG}, Section 4.2, Figure 2"
    by_eps = _by(rows, eps)
    by_d = _by(rows, dim)
    fig = Figure(2, 2, f"Figure 2: input dimension x PGD strength (medians and 10-90% bands over the last {last} epochs)")
    for i, (key, label) in enumerate([("vulnerability", "adversarial vulnerability"), ("test_grad_l1", "E||dL/dx||_1")]):
        ax = fig.panel(i, f"({'ab'[i]}) {label} against sqrt(d)", "sqrt(d)", label)
        for e, rs in by_eps.items():
            fig.band(ax, [math.sqrt(dim(r)) for r in rs], [t.tail(r, key) for r in rs], f"eps = {e:g}")
        if key == "test_grad_l1":
            fig.prediction(ax, {math.sqrt(dim(r)): t.get(r, "predicted_grad_l1") for r in rows},
                           "pathstats.predict at init (model mode)")
            # the same networks measured at initialisation (epoch 0), on the grid's own inputs
            at_init = defaultdict(list)
            for r in by_eps.get(0.0, []):
                row0 = t.init(r)
                if row0 is not None:
                    at_init[math.sqrt(dim(r))].append(_num(row0.get("test_grad_l1")))
            if at_init:
                fig.curve(ax, dict(at_init), "measured at init (eps = 0, epoch 0)", "none", linestyle=":")
    ax = fig.panel(2, "(c) accuracy against PGD strength", "PGD strength eps", "accuracy", logx=True)
    fig.zero_position(ax, [eps(r) for r in rows])
    for d, rs in by_d.items():
        fig.curve(ax, {e: [t.median(r, "test_accuracy") for r in rs if eps(r) == e] for e in {eps(r) for r in rs}},
                  f"d = {d:g}", bounds=(0.0, 1.0))
    ax = fig.panel(3, "(d) accuracy-vulnerability trade-off (per-strength means)", "vulnerability",
                   "accuracy")
    for d, rs in by_d.items():
        cells = [([t.median(r, "vulnerability") for r in rs if eps(r) == e],
                  [t.median(r, "test_accuracy") for r in rs if eps(r) == e]) for e in sorted({eps(r) for r in rs})]
        fig.trade_off(ax, cells, f"d = {d:g}", xbounds=(0.0, 1.0), ybounds=(0.0, 1.0))
    figures = fig.save(os.path.join(out_dir, "fig2"))
    if t.epochs and by_d:
        fig = Figure(2, len(by_d), "Figure 12: E||dL/dx||_1 over training epochs, test (top) and train (bottom)")
        for j, (d, rs) in enumerate(by_d.items()):
            for row, split in enumerate(("test", "train")):
                ax = fig.panel(row * len(by_d) + j, f"{split}, d = {d:g}", "epoch", "E||dL/dx||_1", logy=True)
                for e, group in _by(rs, eps).items():
                    for k, r in enumerate(group):
                        ep = [_num(x.get("epoch")) for x in t.epochs.get(r.get("id"), [])]
                        v = [_num(x.get(f"{split}_grad_l1")) for x in t.epochs.get(r.get("id"), [])]
                        ax.plot(ep, v, lw=1, color=colour(f"eps = {e:g}"), label=f"eps = {e:g}" if k == 0 else None)
        figures += fig.save(os.path.join(out_dir, "fig12"))

    med = {r.get("id"): {k: t.median(r, k) for k in ("test_grad_l1", "train_grad_l1", "vulnerability", "test_accuracy")}
           for r in rows}
    plain = by_eps.get(0.0, [])
    claims = [claim("E||dL/dx||_1 grows like sqrt(d) after usual training", f"{src}b",
                    f"log-log slope of E||dL/dx||_1 (median over the last {last} epochs) on d, eps = 0 runs",
                    stats.loglog_slope([dim(r) for r in plain], [med[r.get('id')]["test_grad_l1"] for r in plain]),
                    *SQRT, "in [0.25, 0.75] (0.5: like sqrt(d))", _EXPONENT_WHY)]
    inits = [(dim(r), t.get(t.init(r), "test_grad_l1")) for r in plain if t.init(r)]
    if inits:
        claims.append(claim("at initialisation E||dL/dx||_1 grows like sqrt(d) (the theorems' prediction)",
                            f"{SG}, Theorems 4-5, Corollary 6, Figure 2b caption",
                            "log-log slope of the epoch-0 E||dL/dx||_1 on d, eps = 0 runs",
                            stats.loglog_slope(*zip(*inits)), *SQRT, "in [0.25, 0.75]", _EXPONENT_WHY))
    else:
        claims.append(untested("at initialisation E||dL/dx||_1 grows like sqrt(d)", f"{SG}, Corollary 6",
                               "epochs.csv has no epoch-0 rows (the initialisation)"))
    claims.append(claim("adversarial vulnerability increases with the input dimension", f"{src}a",
                        "slope of vulnerability (median over the last epochs) on log d, eps = 0 runs",
                        stats.slope_ci(np.log([dim(r) for r in plain]), [med[r.get('id')]["vulnerability"] for r in plain]),
                        0.0, math.inf, "> 0", "an increase is all the statement says"))
    claims += _dampening(t, rows, med, src)
    claims.append(_per_strength_accuracy(rows, med, src))
    claims.append(claim("PGD reaches the same accuracy-vulnerability trade-off whatever the input dimension", f"{src}d",
                        "deviation of each d's accuracy from the other dimensions' common curve in vulnerability "
                        "(inside their support); the deciding one shown",
                        stats.common_curve([med[r.get('id')]["vulnerability"] for r in rows],
                                           [med[r.get('id')]["test_accuracy"] for r in rows], [f"d = {dim(r):g}" for r in rows],
                                           -ACC_MARGIN, ACC_MARGIN),
                        -ACC_MARGIN, ACC_MARGIN, f"every deviation within {ACC_MARGIN:g}", _ACC_WHY))
    claims += _fig12(t, plain, med)
    claims += _overfitting(t, plain)
    claims += [
        untested("the l1-l2 relation is linear but its slope does not change just like sqrt(d)", f"{SG}, Figure 7e",
                 "the paper states no law or region for the slope's dependence on d"),
        untested("the gradient-vulnerability relation keeps its slope up to size 128 and is slightly dampened at 256",
                 f"{SG}, Figure 7d", "'slightly dampened' gives no region to test"),
        untested("vulnerability and loss damage follow the evolution of the cross-entropy over epochs; loss and "
                 "accuracy damage relate functionally (Figures 8, 9)", f"{SG}, Appendix G, Figures 8, 9",
                 "epochs of one run are not independent replicates, so a relation over epochs has no honest interval"),
        untested("accuracy starts getting damaged when the dimension dependence is nearly broken (eps ~ .0005)",
                 f"{src}c", "a qualitative threshold with no region"),
        untested("PGD training outperforms down-sampling on genuinely high-resolution images", f"{SG}, Appendix H, Figure 13",
                 "needs the authors' 12-class Mini-ImageNet, which no grid trains on"),
    ]
    return {"figures": figures, "claims": claims}


def _dampening(t: Tables, rows: list, med: dict, src: str) -> list:
    """Figure 2's caption: larger PGD strengths dampen "this dimension dependence", of the gradient norm (2b, a
    log-log exponent) and of the vulnerability (2a, a proportion: its slope on log d, the statistic of "vulnerability
    increases with d"); and at the largest strength the gradient norm's dependence breaks."""
    out = []
    exps = {}
    for key, panel, log_y in (("test_grad_l1", "b", True), ("vulnerability", "a", False)):
        per = {}
        for e, rs in _by(rows, eps).items():
            if len({dim(r) for r in rs}) >= 2:
                per[e] = (stats.loglog_slope([dim(r) for r in rs], [med[r.get('id')][key] for r in rs]) if log_y else
                          stats.slope_ci(np.log([dim(r) for r in rs]), [med[r.get('id')][key] for r in rs]))
        per = {e: s for e, s in per.items() if s["value"] is not None}
        if key == "test_grad_l1":
            exps = per
        label = "E||dL/dx||_1" if log_y else "vulnerability"
        text = ("larger PGD regularisation decreases the slope of the dimension dependence" if log_y else
                "larger PGD regularisation decreases the slope of the vulnerability's dimension dependence")
        runs = [r for r in rows if eps(r) in per and (med[r.get("id")][key] > 0 or not log_y)]
        y = [math.log(med[r.get("id")][key]) if log_y else med[r.get("id")][key] for r in runs]
        est = stats.slope_trend([math.log(dim(r)) for r in runs], y, [eps(r) for r in runs], _ranks(per))
        slope = "log-log exponent" if log_y else "slope on log d"
        of = f"log-log exponent of {label} on d" if log_y else f"slope of {label} on log d"
        if len(per) >= 3 and est["value"] is not None:
            out.append(claim(text, f"{src}{panel}", f"change of the {of} per step of strength "
                             f"(rank; all {len(per)} strengths, eps = 0 first): one regression over all runs with an "
                             f"intercept per strength and a {slope} linear in the rank, residuals pooled",
                             {**est, "per_x": [{"x": e, **s} for e, s in per.items()]}, -math.inf, 0.0, "< 0",
                             "a decrease over the strengths is all the statement says; every strength enters the fit"))
        else:
            out.append(untested(text, f"{src}{panel}",
                                f"a trend needs {slope}s at 3 or more strengths; the tables give {len(per)}"))
    if exps:
        top = max(exps)
        out.append(claim("with strong enough regularisation the dimension dependence eventually breaks", f"{src}b",
                         f"log-log exponent of E||dL/dx||_1 on d at the largest strength eps = {top:g}", exps[top], *FLAT,
                         "in [-0.25, 0.25]", _EXPONENT_WHY))
    return out


def _per_strength_accuracy(rows: list, med: dict, src: str) -> dict:
    text = "accuracies are dimension independent"
    per = []
    groups = _by(rows, eps)
    k = len(groups)
    for e, rs in groups.items():
        est = stats.slope_ci(np.log2([dim(r) for r in rs]), [med[r.get('id')]["test_accuracy"] for r in rs],
                             level=1 - (1 - stats.LEVEL) / max(k, 1))
        per.append(stats.Estimate(**{**est, "x": e}))
    if not per:
        return untested(text, f"{src}c", "no runs")
    return claim(text, f"{src}c", "slope of accuracy per doubling of d at each strength (simultaneous intervals; worst "
                 "shown)", _joint(per, -ACC_MARGIN, ACC_MARGIN), -ACC_MARGIN, ACC_MARGIN,
                 f"|slope| <= {ACC_MARGIN:g} per doubling at every strength", _ACC_WHY)


def _fig12(t: Tables, plain: list, med: dict) -> list:
    src = f"{SG}, Section 4.2, Appendix G, Figure 12"
    out = [claim("gradient norms do not generalise: larger on the test set than on the training set", src,
                 "mean log(test / train E||dL/dx||_1) over eps = 0 runs (medians over the last epochs)",
                 stats.mean_ci([_log(med[r.get('id')]["test_grad_l1"] / med[r.get('id')]["train_grad_l1"]) for r in plain]),
                 0.0, math.inf, "> 0", "'larger' is all the statement says"),
           claim("on the training set the gradient norms become dimension independent", src,
                 "log-log slope of the training-set E||dL/dx||_1 on d, eps = 0",
                 stats.loglog_slope([dim(r) for r in plain], [med[r.get('id')]["train_grad_l1"] for r in plain]), *FLAT,
                 "in [-0.25, 0.25]", _EXPONENT_WHY),
           claim("the test/train discrepancy grows with the input dimension like sqrt(d)", src,
                 "log-log slope of test / train E||dL/dx||_1 on d, eps = 0",
                 stats.loglog_slope([dim(r) for r in plain], [med[r.get('id')]["test_grad_l1"] / med[r.get('id')]["train_grad_l1"]
                                                              for r in plain]), *SQRT, "in [0.25, 0.75]", _EXPONENT_WHY)]
    for split, sign, text in (("test", 1, "on the test set the gradient norms increase over training"),
                              ("train", -1, "on the training set the gradient norms decrease over training")):
        slopes = [_last_half_slope(t, r, f"{split}_grad_l1", log=True) for r in plain]
        if not np.isfinite(slopes).any():
            out.append(untested(text, src, "needs at least 4 epochs per run in epochs.csv"))
            continue
        low, high = (0.0, math.inf) if sign > 0 else (-math.inf, 0.0)
        out.append(claim(text, src, f"slope per epoch of log {split} E||dL/dx||_1 over the second half of training, "
                         "mean over eps = 0 runs", stats.mean_ci(slopes), low, high, "> 0" if sign > 0 else "< 0",
                         "the direction is all the statement says"))
    return out


def _overfitting(t: Tables, plain: list) -> list:
    src = f"{SG}, Section 4.2, Appendix G"
    out = []
    specs = (("test_loss", 0.0, math.inf, "the test cross-entropy overfits: it increases late in training (no or low "
              "PGD regularisation)", "Figure 8"),
             ("test_accuracy", 0.0, math.inf, "meanwhile the test error keeps decreasing", "Figure 8"),
             ("train_loss", -math.inf, 0.0, "on the training set the cross-entropy steadily decreases", "Figure 11"))
    for key, low, high, text, figure in specs:
        slopes = [_last_half_slope(t, r, key) for r in plain]
        if not np.isfinite(slopes).any():
            out.append(untested(text, f"{src}, {figure}", f"needs {key} over at least 4 epochs per run in epochs.csv"))
            continue
        out.append(claim(text, f"{src}, {figure}", f"slope per epoch of {key} over the second half of training, mean "
                         "over eps = 0 runs", stats.mean_ci(slopes), low, high, "> 0" if low == 0 else "< 0",
                         "the direction is all the statement says"))
    text = "early stopping (at the minimal test loss) dampens vulnerability"
    diffs, stopped_early = [], 0
    for r in plain:
        ep, loss = t.series(r, "test_loss")
        _, vul = t.series(r, "vulnerability")
        if len(ep) >= 4 and np.isfinite(loss).any():
            best = int(np.nanargmin(loss))
            diffs.append(vul[-1] - vul[best])
            stopped_early += best < len(ep) - 1
    if diffs and not stopped_early:  # no run has a "past early stopping": the statement's premise is absent
        out.append(untested(text, f"{src}, Figure 10", f"the test loss is lowest at the last evaluated epoch in all "
                            f"{len(diffs)} eps = 0 runs (no overfitting yet), so early stopping changes nothing"))
    elif diffs:
        out.append(claim(text, f"{src}, Figure 10", "vulnerability at the last epoch minus at the epoch of minimal test "
                         "loss, mean over eps = 0 runs", stats.mean_ci(diffs), 0.0, math.inf, "> 0",
                         "'significantly increases' past early stopping: a positive difference"))
    else:
        out.append(untested(text, f"{src}, Figure 10", "needs test_loss and vulnerability over at least 4 epochs"))
    return out


# ------------------------------------------------------------------------------ Figure 3


def fig3(t: Tables, out_dir: str, context: dict) -> dict:
    """Figure 3 (Appendix B) of Simon-Gabriel et al. and its claims."""
    rows = t.runs
    src = f"{SG}, Appendix B, Figure 3"
    archs = _by(rows, lambda r: r.get("arch"))
    fig = Figure(1, 3, "Figure 3: average vs strided vs max pooling after training (points: seeds; bars: 95% intervals; "
                 "x: prediction at init)")
    for i, (key, label) in enumerate([("vulnerability", "adversarial vulnerability"), ("test_accuracy", "accuracy"),
                                      ("test_grad_l1", "E||dL/dx||_1")]):
        ax = fig.panel(i, label, "architecture", label, logy=i == 2)
        for j, (arch, rs) in enumerate(archs.items()):
            values = [t.get(r, key) for r in rs]
            fig.points(ax, [j] * len(values), values, arch)
            m = stats.mean_ci(values)
            half = (m["ci_high"] - m["value"]) if m["ci_high"] is not None else 0.0
            ax.errorbar([j + 0.15], [m["value"]], yerr=[half], fmt="o", color="k")
            if key == "test_grad_l1":
                ax.scatter([j - 0.15], [t.get(rs[0], "predicted_grad_l1")], marker="x", color="r", s=40,
                           label="pathstats.predict at init" if j == 0 else None)
        ax.set_xticks(range(len(archs)), [str(a) for a in archs], rotation=15, fontsize=7)
    figures = fig.save(os.path.join(out_dir, "fig3"))

    def values(arch, f):
        return [f(r) for r in archs.get(arch, [])]

    claims = []
    avg = "conv6-avgpool"
    for other in ("conv6-strided", "conv6-maxpool"):
        kind = other.split("-")[1]
        if avg in archs and other in archs:
            claims.append(claim(f"average pooling makes networks less vulnerable than {kind} ones", src,
                                f"mean vulnerability, avgpool minus {kind} (Welch interval over seeds)",
                                stats.mean_difference_ci(values(avg, lambda r: t.get(r, "vulnerability")),
                                                         values(other, lambda r: t.get(r, "vulnerability"))),
                                -math.inf, 0.0, "< 0", "'more robust' is all the statement says"))
            claims.append(claim(f"accuracies of avgpool and {kind} networks are very close", src,
                                f"mean accuracy, avgpool minus {kind} (Welch)",
                                stats.mean_difference_ci(values(avg, lambda r: t.get(r, "test_accuracy")),
                                                         values(other, lambda r: t.get(r, "test_accuracy"))),
                                -ACC_MARGIN, ACC_MARGIN, f"in [-{ACC_MARGIN:g}, {ACC_MARGIN:g}]", _ACC_WHY))
        else:
            claims.append(untested(f"average pooling makes networks less vulnerable than {kind} ones", src,
                                   f"needs runs of {avg} and {other}"))

    def ratio(r):
        return math.log10(t.get(r, "test_grad_l1") / t.get(r, "predicted_grad_l1")) \
            if t.get(r, "predicted_grad_l1") > 0 and t.get(r, "test_grad_l1") > 0 else math.nan

    why = ("'an order of magnitude' is 1 decade; half a decade, the geometric midpoint between 1x and 10x, is the "
           "smallest rise that is closer to 10x than to no rise")
    if avg in archs:
        claims.append(claim("average-pooling networks remain more vulnerable than Theorem 11 suggests: their gradients "
                            "after training are an order of magnitude above the initialisation-time prediction", src,
                            "mean log10(trained / predicted E||dL/dx||_1) over avgpool seeds (t interval)",
                            stats.mean_ci(values(avg, ratio)), 0.5, math.inf, ">= 0.5 decade", why))
        init = [math.log10(t.get(r, "test_grad_l1") / t.get(t.init(r), "test_grad_l1"))
                for r in archs[avg] if t.init(r) and t.get(t.init(r), "test_grad_l1") > 0]
        if init:
            claims.append(claim("... and an order of magnitude above their measured value at initialisation", src,
                                "mean log10(trained / epoch-0 E||dL/dx||_1) over avgpool seeds", stats.mean_ci(init),
                                0.5, math.inf, ">= 0.5 decade", why))
        else:
            claims.append(untested("... and an order of magnitude above their measured value at initialisation", src,
                                   "epochs.csv has no epoch-0 rows"))
    if avg in archs and "conv6-strided" in archs:
        claims.append(claim("contrary to strided networks, average-pooling gradients rise further above their "
                            "initialisation-time prediction", src,
                            "log10(trained / predicted E||dL/dx||_1), avgpool minus strided (Welch)",
                            stats.mean_difference_ci(values(avg, ratio), values("conv6-strided", ratio)), 0.0, math.inf,
                            "> 0", "'contrary to' is all the statement says"))
    claims.append(untested("assumptions (H) get more violated with average pooling than with strided layers", src,
                           "the paper offers it as a possible explanation with no measurable statement"))
    return {"figures": figures, "claims": claims}


# ------------------------------------------------------------------------------ Figures 4 and 6

ATTACKS = ("fgsm", "fgm-l2", "pgd-inf", "pgd-l2", "deepfool")


def fig4(t: Tables, out_dir: str, context: dict) -> dict:
    """Figures 4 and 6 (Appendix F) of Simon-Gabriel et al. and their claims."""
    rows = [r for r in t.runs if r.get("atk_inf_pgd-inf_vulnerability") is not None]
    src = f"{SG}, Appendix F, Figure 4"
    figures, claims = [], []
    for threshold, number in (("inf", 4), ("2", 6)):
        fig = Figure(1, 2, f"Figure {number}: vulnerability under five attacks, l_{threshold} threshold")
        ax_a = fig.panel(0, "(a) against the l1-gradient regularisation strength", "strength eps", "vulnerability",
                         logx=True)
        fig.zero_position(ax_a, [eps(r) for r in rows])
        ax_b = fig.panel(1, "(b) against E||dL/dx||_1", "E||dL/dx||_1", "vulnerability")
        for attack in ATTACKS:
            key = f"atk_{threshold}_{attack}_vulnerability"
            name = "fgm-l2 attack" if attack == "fgm-l2" else attack
            fig.curve(ax_a, _curves(rows, "grad-l1", lambda r: t.get(r, key)), attack, name, bounds=(0.0, 1.0))
            fig.points(ax_b, [t.get(r, "test_grad_l1") for r in rows], [t.get(r, key) for r in rows], attack, name)
        figures += fig.save(os.path.join(out_dir, f"fig{number}"))
    if not rows:
        return {"figures": figures, "claims": [untested("vulnerability under five attacks", src,
                                                        "no run has the attack suite's columns")]}
    k = len(ATTACKS)
    level = 1 - (1 - stats.LEVEL) / k
    grads = [t.get(r, "test_grad_l1") for r in rows]
    per_rho, per_exp, per_trend = [], [], []
    rank = _ranks([eps(r) for r in rows])
    for attack in ATTACKS:
        v = [t.get(r, f"atk_inf_{attack}_vulnerability") for r in rows]
        per_rho.append(stats.Estimate(**{**stats.spearman_ci(grads, v, level), "x": attack}))
        per_exp.append(stats.Estimate(**{**stats.loglog_slope(grads, v, level=level), "x": attack}))
        per_trend.append(stats.Estimate(**{**stats.slope_ci([rank[eps(r)] for r in rows], v, level=level), "x": attack}))
    claims.append(claim("under every attack, vulnerability is a functional-like (monotone) function of E||dL/dx||_1",
                        f"{src}b", "Spearman rank correlation over the networks, per attack (l_inf threshold; "
                        "simultaneous intervals; the deciding one shown)", _joint(per_rho, RHO, 1.0), RHO, 1.0,
                        f">= {RHO:g} for every attack", "a functional-like monotone relation ranks the networks almost "
                        "the same way as the gradient norms; 0.8 allows a few swaps among ten networks"))
    claims.append(claim("changing the attack changes only the scale: vulnerability grows almost linearly with "
                        "E||dL/dx||_1 under every attack", f"{src}b",
                        "log-log slope of vulnerability on E||dL/dx||_1 per attack (simultaneous; the deciding one shown)",
                        _joint(per_exp, 0.75, 1.25), 0.75, 1.25, "in [0.75, 1.25] for every attack",
                        "'almost linearly' is exponent 1; 0.25 either side keeps the shape the same up to a factor "
                        "1.8 over the 2.5 decades of gradient norms in Figure 4b"))
    claims.append(claim("under every attack, vulnerability decreases as the regularisation strength grows", f"{src}a",
                        "slope of vulnerability on the strength's rank, per attack (all strengths; simultaneous; worst "
                        "shown)", _joint(per_trend, -math.inf, 0.0), -math.inf, 0.0, "< 0 for every attack",
                        "the direction is all the statement says"))
    claims += _attack_families(t, rows)
    return {"figures": figures, "claims": claims}


def _attack_families(t: Tables, rows: list) -> list:
    """l_inf against l2 attacks at the paper's radii: eps for l_inf, eps sqrt(d) for l2 (eq. 3), i.e. the l2 attacks'
    rows of the l2 threshold (whose recorded radius must be eps sqrt(d))."""
    out = []
    pairs = (("pgd-inf", "pgd-l2"), ("fgsm", "fgm-l2"))
    ok = [r for r in rows if all(abs(t.get(r, f"atk_2_{l2}_radius") - t.get(r, "atk_eps") * math.sqrt(dim(r)))
                                 <= 1e-6 * max(1.0, t.get(r, f"atk_2_{l2}_radius")) for _, l2 in pairs)]
    why = ("the paper's radii (eq. 3: eps_2 = eps_inf sqrt(d)), not the inscribed l2 ball; the paper counts a success in "
           "the threshold's norm (authors' code: minimal-perturbation attacks with binary search), so at eq.-3 radii "
           "Figures 4 and 6 compare the same pairs and cannot both hold")
    for number, sign, text in ((4, 1, "under an l_inf threshold the l_inf attacks are more effective than the l2 ones"),
                               (6, -1, "under an l2 threshold the l2 attacks are more effective than the l_inf ones")):
        source = f"{SG}, Appendix F, Figure {number}"
        if not ok:
            out.append(untested(text, source, "no run records its l2 attacks at radius eps sqrt(d) (atk_2_*_radius)"))
            continue
        per = []
        for linf, l2 in pairs:
            diffs = [sign * (t.get(r, f"atk_inf_{linf}_vulnerability") - t.get(r, f"atk_2_{l2}_vulnerability")) for r in ok]
            per.append(stats.Estimate(**{**stats.mean_ci(diffs, 1 - (1 - stats.LEVEL) / len(pairs)),
                                         "x": f"{linf} vs {l2}"}))
        out.append(claim(text, source, ("vulnerability(l_inf attack at eps) - vulnerability(l2 attack at eps sqrt(d))"
                                        if sign > 0 else
                                        "vulnerability(l2 attack at eps sqrt(d)) - vulnerability(l_inf attack at eps)")
                         + ", mean over networks, for PGD and single-step pairs (simultaneous; the deciding one shown)",
                         _joint(per, 0.0, math.inf), 0.0, math.inf, "> 0 for both pairs", why))
    return out


# ------------------------------------------------------------------------------ Finlay & Oberman


def _label(r: dict) -> str:
    return "none" if r.get("method") == "none" else f"{r.get('method')} {eps(r):g}"


def finlay(t: Tables, out_dir: str, context: dict) -> dict:
    """Finlay & Oberman's bounds against DeepFool's distances (Proposition 2.1, Tables 2 and 3) and their claims."""
    rows = [r for r in t.runs if r.get("bounds_n") is not None]
    groups = _by(rows, _label)
    fig = Figure(1, 2, "Finlay & Oberman: mean log DeepFool distance and Lipschitz estimate per network")
    ax = fig.panel(0, "mean log l2 distance DeepFool needs", "network", "mean log distance")
    ax2 = fig.panel(1, "Lipschitz estimate L of the loss", "network", "L", logy=True)
    for j, (label, rs) in enumerate(groups.items()):
        name = rs[0].get("method")
        fig.points(ax, [j] * len(rs), [t.get(r, "bounds_log_distance") for r in rs], label, name)
        fig.points(ax2, [j] * len(rs), [t.get(r, "bounds_lipschitz_constant") for r in rs], label, name)
    for a in (ax, ax2):
        a.set_xticks(range(len(groups)), list(groups), rotation=20, fontsize=6)
    figures = fig.save(os.path.join(out_dir, "finlay"))

    src = f"{FO}, Section 4, Table 2"
    claims = []
    for kind in ("lipschitz", "curvature"):
        have = [r for r in rows if r.get(f"bounds_{kind}_total") not in (None, 0)]
        text = f"the {kind} lower bound (Proposition 2.1) lies below the measured adversarial distance"
        if not have:
            claims.append(untested(text, f"{FO}, Proposition 2.1, Table 2",
                                   "no smooth (twice-differentiable) networks in the grid: the curvature bound needs them"
                                   if kind == "curvature" else "no bounds evaluated"))
            continue
        held = int(sum(t.get(r, f"bounds_{kind}_held") for r in have))
        total = int(sum(t.get(r, f"bounds_{kind}_total") for r in have))
        claims.append(claim(text, f"{FO}, Proposition 2.1, Table 2", "fraction of attacked images (all networks) whose "
                            "bound <= DeepFool's l2 distance (exact Clopper-Pearson interval; images are the replicates)",
                            stats.proportion_ci(held, total), 0.95, 1.0, ">= 0.95",
                            "the paper: the bounds held on all attacked CIFAR-10 images; 5% admits a few misses of the "
                            "estimated constant"))
    plain = groups.get("none", [])
    for label, rs in groups.items():
        if label == "none":
            continue
        method = rs[0].get("method")
        if not plain:
            claims.append(untested(f"{label} increases the minimal adversarial distance", src, "no undefended runs"))
            continue
        claims.append(claim(f"{label} training increases the minimal adversarial distance", src,
                            f"mean log DeepFool distance, {label} minus none (Welch over seeds)",
                            stats.mean_difference_ci([t.get(r, "bounds_log_distance") for r in rs],
                                                     [t.get(r, "bounds_log_distance") for r in plain]),
                            0.0, math.inf, "> 0", "the direction is all the statement says"))
        lip = [math.log10(t.get(r, "bounds_lipschitz_constant")) for r in rs if t.get(r, "bounds_lipschitz_constant") > 0]
        lip0 = [math.log10(t.get(r, "bounds_lipschitz_constant")) for r in plain
                if t.get(r, "bounds_lipschitz_constant") > 0]
        if method.startswith("fd-"):
            claims.append(claim(f"gradient regularisation ({label}) reduces the loss's Lipschitz estimate L by one to two "
                                "orders of magnitude", f"{FO}, Section 4, Table 3",
                                f"log10 L (max gradient norm over the attacked images), none minus {label} (Welch)",
                                stats.mean_difference_ci(lip0, lip), 1.0, 2.0, "in [1, 2] decades",
                                "the paper's own words, 'one to two orders of magnitude'"))
        elif method == "pgd":
            claims.append(claim("adversarial training also reduces L (it acts as a regulariser)",
                                f"{FO}, Section 4, Table 3", "log10 L, none minus pgd (Welch)",
                                stats.mean_difference_ci(lip0, lip), 0.0, math.inf, "> 0",
                                "the direction is all the statement says"))
    strongest = [lab for lab in groups if lab.startswith("fd-l2 ")]
    pgd = [lab for lab in groups if lab.startswith("pgd ")]
    text = "the most robust model is the squared-l2 penalty with lambda = 1; it outperforms even adversarial training"
    if strongest and pgd:
        top = max(strongest, key=lambda lab: eps(groups[lab][0]))
        claims.append(claim(text, src, f"mean log DeepFool distance, {top} minus {pgd[0]} (Welch)",
                            stats.mean_difference_ci([t.get(r, "bounds_log_distance") for r in groups[top]],
                                                     [t.get(r, "bounds_log_distance") for r in groups[pgd[0]]]),
                            0.0, math.inf, "> 0", "'outperforms' is all the statement says"))
    else:
        claims.append(untested(text, src, "needs fd-l2 and pgd runs"))
    for method in sorted({r.get("method") for r in rows if str(r.get("method")).startswith("fd-")}):
        sub = [r for r in rows if r.get("method") in (method, "none")]
        rank = _ranks([eps(r) for r in sub])
        claims.append(claim(f"a clear trade-off: the test accuracy falls as the {method} strength grows",
                            f"{FO}, Section 4, Tables 1-2", "slope of test accuracy on the strength's rank (none at rank "
                            "0; all strengths)", stats.slope_ci([rank[eps(r)] for r in sub],
                                                                [t.get(r, "test_accuracy") for r in sub]),
                            -math.inf, 0.0, "< 0", "the direction is all the statement says"))
    claims += [
        untested("lambda = 0.1 offers the best adversarial improvement ratio", f"{FO}, Section 4, Tables 1-2",
                 "the ratio divides by the increase of the test error, near zero at lambda = 0.1, so its interval is "
                 "unbounded at a few seeds"),
        untested("l_inf robustness (error at 2/255 and 8/255, mean l_inf distance)", f"{FO}, Table 1",
                 "the bounds evaluation measures l2 distances only"),
        untested("gradient regularisation trains in a fraction of adversarial training's time", f"{FO}, Tables 1-2",
                 "wall times depend on the machine and the executor, not on the method alone"),
    ]
    return {"figures": figures, "claims": claims}


# ------------------------------------------------------------------------------ Roth et al.


def _robacc(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        if k.startswith("robacc_") and v is not None:
            try:
                out[float(k[len("robacc_"):])] = _num(v)
            except ValueError:
                continue
    return out


def roth(t: Tables, out_dir: str, context: dict) -> dict:
    """Roth et al.'s Figures 2 and 3 and Theorem 1's consequences, with their claims."""
    rows = [r for r in t.runs if r.get("align_K") is not None]
    groups = _by(rows, lambda r: r.get("method"))
    fig = Figure(1, 2, "Roth et al.: alignment of l2 PGD perturbations by rank; accuracy under l_inf PGD")
    ax_c = fig.panel(0, "mean |cos(delta, v_r)| (95% intervals over networks)", "rank r", "|cosine|")
    ax_r = fig.panel(1, "accuracy under l_inf PGD", "attack eps", "accuracy", logx=True)
    for method, rs in groups.items():
        kmax = int(max(t.get(r, "align_K") for r in rs))
        fig.curve(ax_c, {k: [t.get(r, f"align_cos_{k}") for r in rs] for k in range(1, kmax + 1)}, method)
        curve = defaultdict(list)
        for r in rs:
            for e, a in _robacc(r).items():
                curve[e].append(a)
        fig.curve(ax_r, dict(curve), method)
    if rows:
        k = int(t.get(rows[0], "align_K"))
        ax_c.axhline(stats.sphere_abs_cosine_mean(k) * math.sqrt(np.nanmean([t.get(r, "align_rowspace_share") for r in rows])),
                     color="0.4", ls=":", label="random direction in the row space")
    figures = fig.save(os.path.join(out_dir, "roth"))

    src = f"{ROTH}, Section 5.2, Figure 2"
    if not rows:
        return {"figures": figures, "claims": [untested("alignment with the dominant singular vector", src,
                                                        "no run has the alignment evaluation's columns")]}
    null = [t.get(r, "align_cos1_rowspace") - stats.sphere_abs_cosine_mean(int(t.get(r, "align_K"))) for r in rows]
    claims = [claim("adversarial perturbations are strongly aligned with the dominant singular vector of the Jacobian",
                    src, "per network: mean |cos(P delta, v_1)| of the perturbation's part P delta in the row space of "
                    "the logit Jacobian minus the same for a random direction in that row space, E|u_1| on S^(K-1); "
                    "mean over networks (t interval)", stats.mean_ci(null), 0.0, math.inf, "> 0",
                    "dL/dx lies in the K-dimensional row space by construction, so the null is a random direction IN "
                    "that space, not in R^d (whose cosine ~ sqrt(2 / (pi d)) makes any gradient step look aligned)")]
    slopes = []
    for r in rows:
        k = int(t.get(r, "align_K"))
        slopes.append(stats.slope_ci(np.arange(1, k + 1), [t.get(r, f"align_cos_{j}") for j in range(1, k + 1)])["value"])
    claims.append(claim("the alignment decreases with the rank of the singular vector", src,
                        "per network: slope of mean |cos(delta, v_r)| on the rank r over all K ranks; mean over networks",
                        stats.mean_ci([s if s is not None else math.nan for s in slopes]), -math.inf, 0.0, "< 0",
                        "the direction is all the statement says; every rank enters the fit"))
    plain = [t.get(r, "align_log_sigma1") for r in groups.get("none", [])]
    for method in ("pgd", "opnorm"):
        text = f"{method} training dampens the singular values (dominant one)"
        if method in groups and plain:
            claims.append(claim(text, src, f"mean log sigma_1 over test images, {method} minus none (Welch over seeds)",
                                stats.mean_difference_ci([t.get(r, "align_log_sigma1") for r in groups[method]], plain),
                                -math.inf, 0.0, "< 0", "the direction is all the statement says"))
        else:
            claims.append(untested(text, src, f"needs none and {method} runs"))
    claims += _as_robust(t, groups)
    claims += [
        untested("Theorem 1: l_p PGD adversarial training with an l_q logit loss equals the power-method limit of "
                 "data-dependent (p, q) operator-norm regularisation", f"{ROTH}, Section 4, Theorem 1",
                 "needs the adversarial loss on the logits (||f(x) - f(x*)||_q) and the power-method iterates side by "
                 "side; the grid trains and attacks with the cross-entropy"),
        untested("global spectral norm regularisation has almost no effect", src, "no global SNR runs in the grid"),
        untested("the linear approximation holds in a region much larger than the ReLU cell", f"{ROTH}, Section 5.4",
                 "deviation from linearity along random and adversarial directions is not measured"),
    ]
    return {"figures": figures, "claims": claims}


def _as_robust(t: Tables, groups: dict) -> list:
    src = f"{ROTH}, Section 5.3, Figure 3"
    text = "data-dependent operator-norm regularisation is as robust as PGD training"
    out = []
    if "pgd" not in groups or "opnorm" not in groups:
        return [untested(text, src, "needs pgd and opnorm runs")]
    pairs = [r for r in groups["opnorm"] if str(r.get("opnorm_p", "2")) in ("inf", "infinity")]
    if not pairs:
        out.append(untested(text, src, "Theorem 1 pairs l_inf PGD with the (inf, q) operator norm; the grid's opnorm "
                            "runs use p = 2 (the spectral norm pairs with l2 PGD training, which the grid lacks)"))
    else:
        # the regularisation constant whose clean accuracy is closest to PGD's, as Roth et al. chose theirs
        pgd_acc = np.nanmean([t.get(r, "test_accuracy") for r in groups["pgd"]])
        by_s = _by(pairs, eps)
        best = min(by_s, key=lambda s: abs(np.nanmean([t.get(r, "test_accuracy") for r in by_s[s]]) - pgd_acc))
        per = _robust_per_eps(by_s[best], groups["pgd"])
        margin = 0.05
        out.append(claim(text, src, f"accuracy under l_inf PGD, opnorm (p = inf, strength {best:g}, the clean accuracy "
                         "closest to PGD's) minus pgd, at each attack eps (Welch, simultaneous; the deciding one shown)",
                         _joint(per, -margin, margin), -margin, margin, f"|difference| <= {margin:g} at every attack eps",
                         "5 accuracy points: Roth et al.'s Figure 3 calls curves within their standard-error bands "
                         "(a few points at 2000 images) 'equally robust'"))
    if "none" in groups:
        for method in ("pgd", "opnorm"):
            per = [e for e in _robust_per_eps(groups[method], groups["none"]) if e["x"] > 0]
            if per:
                out.append(claim(f"{method} training is significantly more robust than standard training", src,
                                 f"accuracy under l_inf PGD, {method} minus none, at each attack eps > 0 (Welch, "
                                 "simultaneous; the deciding one shown)", _joint(per, 0.0, math.inf), 0.0, math.inf,
                                 "> 0 at every attack eps", "the direction is all the statement says"))
    return out


def _robust_per_eps(a_rows: list, b_rows: list) -> list:
    ca, cb = defaultdict(list), defaultdict(list)
    for rows, c in ((a_rows, ca), (b_rows, cb)):
        for r in rows:
            for e, acc in _robacc(r).items():
                c[e].append(acc)
    common = sorted(set(ca) & set(cb))
    level = 1 - (1 - stats.LEVEL) / max(1, len(common))
    return [stats.Estimate(**{**stats.mean_difference_ci(ca[e], cb[e], level), "x": e}) for e in common]


# ------------------------------------------------------------------------------ entry points

ANALYSES = {"fig1": fig1, "fig2": fig2, "fig3": fig3, "fig4": fig4, "finlay": finlay, "roth": roth}


def analyse_tables(name: str, results: list, epochs: list, out_dir: str, context: dict) -> dict:
    """Figures and claims of experiment ``name`` from the rows of ``results.csv`` and ``epochs.csv``
    (:func:`~.tables.read_tables`); figures go to ``out_dir``.

    ``context``: ``scale`` (``quick``, ``medium``, ``paper``), ``complete`` (every run of the
    grid finished; if not, every claim is marked ``provisional``), ``last_epochs`` (the
    epochs summarised, the paper's "last 20").  Returns ``{"figures": [paths], "claims":
    [...], "excluded": [{"id", "reason"}], "rule": DEGENERATE_RULE}``.
    """
    if name not in ANALYSES:
        from .catalogue import UnknownExperimentError

        raise UnknownExperimentError(f"no analysis for experiment {name!r}; experiments: {', '.join(ANALYSES)}")
    tables = Tables(results, epochs, context)
    os.makedirs(out_dir, exist_ok=True)
    out = ANALYSES[name](tables, out_dir, context)
    provisional = not context.get("complete", True)
    for c in out["claims"]:
        c["provisional"] = provisional
    out["excluded"] = [{"id": r.get("id"), "method": r.get("method"), "eps": r.get("eps"), "reason": r.get("degenerate")}
                       for r in tables.excluded]
    out["rule"] = DEGENERATE_RULE
    return out


def analyse_records(name: str, records: list, out_dir: str, context: dict) -> dict:
    """:func:`analyse_tables` on the tables of ``records`` (those of :func:`~.store.collect`), without writing them."""
    results, epochs = records_to_tables(records)
    return analyse_tables(name, results, epochs, out_dir, context)
