"""THE statistics of pathstats: one :class:`Estimate`, one standard error, one log-log slope
fit, and the interval methods behind every verdict.

Every statistic returns an :class:`Estimate`: a ``value`` with a 95% interval
(``ci_low``, ``ci_high``) and the number ``n`` of independent replicates it rests on.
A claim's verdict compares the interval with the region the paper's statement allows
(:func:`verdict`): ``holds`` when the whole interval lies in the region, ``fails`` when
none of it does, ``inconclusive`` otherwise.  This is an equivalence test, not a
significance test: a noisy experiment ends inconclusive rather than "holds".

Statistics over several strengths or groups (:func:`curve_match`, :func:`common_curve`)
are judged point by point with simultaneous (Bonferroni) intervals and
:func:`all_within`: they hold only if EVERY interval lies inside the region, and fail as
soon as one lies wholly outside, so opposite deviations never cancel.

Only ``scipy.special`` is imported (``scipy.stats`` alone costs about half a second at
start-up, which ``pathstats verify`` should not pay).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
from scipy import special

__all__ = ["LEVEL", "Estimate", "standard_error", "t_quantile", "verdict", "all_within", "mean_ci",
           "mean_difference_ci", "std_ci", "proportion_ci", "slope_ci", "loglog_slope", "slope_trend", "spearman_ci", "curve_match",
           "common_curve", "select_degree", "SUPPORT", "sphere_abs_cosine_mean"]

LEVEL = 0.95


def _clean(v):
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


class Estimate(dict):
    """A statistic's ``value``, ``ci_low``, ``ci_high`` (95%), ``n`` and ``stderr``, plus any extra fields.

    A ``dict`` (it goes to ``claims.json`` as it is) with attribute access to its main
    fields; non-finite numbers are stored as ``None`` (no interval).

    Examples
    --------
    >>> e = Estimate.of([1.0, 2.0, 3.0])
    >>> e.value, round(e.stderr, 6), e.n, round(e.z(1.0), 4)
    (2.0, 0.57735, 3, 1.7321)
    >>> Estimate(1.0, None, float("inf"), 1)["ci_high"] is None
    True
    """

    def __init__(self, value, ci_low, ci_high, n, stderr=None, **extra):
        super().__init__(value=_clean(value), ci_low=_clean(ci_low), ci_high=_clean(ci_high), n=int(n),
                         stderr=_clean(stderr), **extra)

    value = property(lambda self: self["value"])
    ci_low = property(lambda self: self["ci_low"])
    ci_high = property(lambda self: self["ci_high"])
    n = property(lambda self: self["n"])
    stderr = property(lambda self: self["stderr"])

    @classmethod
    def of(cls, values) -> "Estimate":
        """The mean of ``values`` with its standard error and t interval (:func:`mean_ci`)."""
        return mean_ci(values)

    def z(self, predicted: float) -> float:
        """``(value - predicted) / stderr`` (infinite for a zero standard error, NaN without one)."""
        if self.stderr is None or self.value is None:
            return math.nan
        return (self.value - predicted) / self.stderr if self.stderr > 0 else math.inf


def standard_error(values, axis=None):
    """The standard error of the mean: sample standard deviation (``ddof = 1``) over ``sqrt(n)``.

    With ``axis=None`` non-finite values are dropped and a float is returned (``inf``
    below two values: no spread is known); with an ``axis``, an array.

    Examples
    --------
    >>> bool(standard_error([1.0, 2.0, 4.0, 7.0]) == np.std([1.0, 2.0, 4.0, 7.0], ddof=1) / 2)
    True
    >>> standard_error([3.0])
    inf
    >>> standard_error(np.ones((4, 2)), axis=0).tolist()
    [0.0, 0.0]
    """
    if axis is not None:
        v = np.asarray(values, dtype=np.float64)
        return v.std(axis=axis, ddof=1) / math.sqrt(v.shape[axis])
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    return float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.inf


def t_quantile(dof: float, level: float = LEVEL) -> float:
    """The two-sided Student-t quantile: ``t`` with ``P(|T| <= t) = level`` on ``dof`` degrees of freedom.

    Examples
    --------
    >>> round(t_quantile(4), 4), round(t_quantile(math.inf), 4)
    (2.7764, 1.96)
    """
    p = 0.5 + level / 2
    return float(special.ndtri(p)) if not math.isfinite(dof) else float(special.stdtrit(dof, p))


def verdict(estimate: Mapping, low: float = -math.inf, high: float = math.inf) -> str:
    """``holds`` if the 95% interval lies inside ``[low, high]``, ``fails`` if outside, else ``inconclusive``.

    Examples
    --------
    >>> verdict({"ci_low": 0.4, "ci_high": 0.6}, 0.25, 0.75)
    'holds'
    >>> verdict({"ci_low": 0.9, "ci_high": 1.1}, 0.25, 0.75)
    'fails'
    >>> verdict({"ci_low": 0.1, "ci_high": 0.9}, 0.25, 0.75)
    'inconclusive'
    >>> verdict({"ci_low": None, "ci_high": None}, 0.25, 0.75)
    'inconclusive'

    A one-sided region (a direction: ``> 0`` is ``low=0, high=inf``) is strict: an interval
    must exclude the boundary to show the direction, and one wholly at or beyond it on the
    wrong side contradicts it (no effect at all is not a positive effect).

    >>> verdict({"ci_low": 0.0, "ci_high": 0.0}, 0.0, math.inf), verdict({"ci_low": 0.0, "ci_high": 0.2}, 0.0, math.inf)
    ('fails', 'inconclusive')
    >>> verdict({"ci_low": 0.01, "ci_high": 0.2}, 0.0, math.inf)
    'holds'
    """
    lo, hi = estimate.get("ci_low"), estimate.get("ci_high")
    if lo is None or hi is None:
        return "inconclusive"
    if math.isfinite(low) and not math.isfinite(high):  # a direction: > low
        return "holds" if lo > low else "fails" if hi <= low else "inconclusive"
    if math.isfinite(high) and not math.isfinite(low):  # a direction: < high
        return "holds" if hi < high else "fails" if lo >= high else "inconclusive"
    if low <= lo and hi <= high:
        return "holds"
    if hi < low or lo > high:
        return "fails"
    return "inconclusive"


def all_within(estimates: Iterable[Mapping], low: float = -math.inf, high: float = math.inf) -> str:
    """A joint verdict: ``fails`` if ANY interval lies wholly outside ``[low, high]``, ``holds`` if
    every one lies inside (and there is at least one), else ``inconclusive``.

    Examples
    --------
    >>> all_within([{"ci_low": -0.1, "ci_high": 0.1}, {"ci_low": 0.45, "ci_high": 0.55}], -0.4, 0.4)
    'fails'
    >>> all_within([{"ci_low": -0.1, "ci_high": 0.1}, {"ci_low": -0.2, "ci_high": 0.3}], -0.4, 0.4)
    'holds'
    >>> all_within([], -0.4, 0.4)
    'inconclusive'
    """
    verdicts = [verdict(e, low, high) for e in estimates]
    if "fails" in verdicts:
        return "fails"
    return "holds" if verdicts and all(v == "holds" for v in verdicts) else "inconclusive"


def _finite(*arrays):
    arrays = [np.asarray(a, dtype=np.float64).ravel() for a in arrays]
    keep = np.ones(len(arrays[0]), bool)
    for a in arrays:
        keep &= np.isfinite(a)
    return [a[keep] for a in arrays]


def mean_ci(values, level: float = LEVEL) -> Estimate:
    """Mean with its t-based interval and standard error (non-finite values dropped).

    Examples
    --------
    >>> e = mean_ci([1.0, 2.0, 3.0])
    >>> e["value"], round(e["stderr"], 6), round(e["ci_high"] - e["value"], 4)
    (2.0, 0.57735, 2.4841)
    """
    (v,) = _finite(values)
    n = len(v)
    if n == 0:
        return Estimate(None, None, None, 0)
    if n == 1:
        return Estimate(v[0], None, None, 1)
    se = standard_error(v)
    half = t_quantile(n - 1, level) * se
    return Estimate(v.mean(), v.mean() - half, v.mean() + half, n, stderr=se)


def mean_difference_ci(a, b, level: float = LEVEL) -> Estimate:
    """``mean(a) - mean(b)`` with Welch's interval.

    Examples
    --------
    >>> e = mean_difference_ci([1.0, 1.2, 0.8], [0.0, 0.1, -0.1])
    >>> round(e["value"], 12), e["ci_low"] > 0
    (1.0, True)
    """
    (a,), (b,) = _finite(a), _finite(b)
    n = len(a) + len(b)
    if len(a) == 0 or len(b) == 0:
        return Estimate(None, None, None, n)
    diff = a.mean() - b.mean()
    if len(a) < 2 or len(b) < 2:
        return Estimate(diff, None, None, n)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Estimate(diff, diff, diff, n, stderr=0.0)
    dof = (va + vb) ** 2 / ((va**2 / (len(a) - 1) if va else 0) + (vb**2 / (len(b) - 1) if vb else 0))
    half = t_quantile(dof, level) * se
    return Estimate(diff, diff - half, diff + half, n, stderr=se)


def std_ci(values, level: float = LEVEL) -> Estimate:
    """Sample standard deviation with its chi-square interval (normal data).

    Examples
    --------
    >>> e = std_ci([1.0, 2.0, 3.0, 4.0])
    >>> round(e["value"], 4), round(e["ci_low"], 4), round(e["ci_high"], 4)
    (1.291, 0.7313, 4.8135)
    """
    (v,) = _finite(values)
    n = len(v)
    if n < 2:
        return Estimate(None, None, None, n)
    s = float(v.std(ddof=1))
    lo = s * math.sqrt((n - 1) / special.chdtri(n - 1, 0.5 - level / 2))
    hi = s * math.sqrt((n - 1) / special.chdtri(n - 1, 0.5 + level / 2))
    return Estimate(s, lo, hi, n)


def proportion_ci(successes: int, n: int, level: float = LEVEL) -> Estimate:
    """A proportion with its exact (Clopper-Pearson) interval.

    Examples
    --------
    >>> e = proportion_ci(50, 50)
    >>> e["value"], round(e["ci_low"], 4), e["ci_high"]
    (1.0, 0.9289, 1.0)
    """
    if n == 0:
        return Estimate(None, None, None, 0)
    alpha = 1 - level
    lo = 0.0 if successes == 0 else float(special.betaincinv(successes, n - successes + 1, alpha / 2))
    hi = 1.0 if successes == n else float(special.betaincinv(successes + 1, n - successes, 1 - alpha / 2))
    return Estimate(successes / n, lo, hi, n)


def slope_ci(x, y, stderr=None, level: float = LEVEL) -> Estimate:
    """Least-squares slope of ``y`` on ``x`` with its interval.

    Without ``stderr``: ordinary least squares, t interval on ``n - 2`` degrees of
    freedom (needs 3 points).  With ``stderr`` (known standard errors of the ``y``, e.g.
    Monte Carlo means): weighted least squares with weights ``1 / stderr^2`` and a normal
    interval.  Extra fields: ``intercept``.

    Examples
    --------
    >>> e = slope_ci([0, 1, 2, 3], [1, 3, 5, 7])
    >>> round(e["value"], 12), round(e["ci_low"], 12), round(e["ci_high"], 12), e["n"]
    (2.0, 2.0, 2.0, 4)
    """
    if stderr is None:
        x, y = _finite(x, y)
        w = np.ones_like(x)
    else:
        x, y, s = _finite(x, y, stderr)
        w = 1 / s**2
    n = len(x)
    if n < 2 or np.ptp(x) == 0:
        return Estimate(None, None, None, n)
    xb, yb = (w * x).sum() / w.sum(), (w * y).sum() / w.sum()
    sxx = float((w * (x - xb) ** 2).sum())
    slope = float((w * (x - xb) * (y - yb)).sum() / sxx)
    intercept = float(yb - slope * xb)
    if stderr is not None:
        se = 1 / math.sqrt(sxx)
        half = t_quantile(math.inf, level) * se
    elif n < 3:
        return Estimate(slope, None, None, n, intercept=intercept)
    else:
        resid = y - intercept - slope * x
        se = math.sqrt(float((resid**2).sum()) / (n - 2) / sxx)
        half = t_quantile(n - 2, level) * se
    return Estimate(slope, slope - half, slope + half, n, stderr=se, intercept=intercept)


def loglog_slope(x, y, stderr=None, level: float = LEVEL) -> Estimate:
    """THE log-log slope fit: :func:`slope_ci` of ``log y`` on ``log x`` (non-positive values dropped).

    With ``stderr`` (of ``y``), each point's standard error on the log scale is
    ``stderr / y`` (delta method) and the fit is weighted.

    Examples
    --------
    >>> d = np.array([64, 256, 1024, 64, 256, 1024])
    >>> round(loglog_slope(d, 3 * np.sqrt(d))["value"], 12)
    0.5
    >>> e = loglog_slope([1, 4, 16], [2.0, 4.0, 8.0], stderr=[0.02, 0.04, 0.08])
    >>> round(e.value, 12), round(e.ci_high - e.value, 4)
    (0.5, 0.01)
    """
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    keep = (x > 0) & (y > 0)
    if stderr is None:
        return slope_ci(np.log(x[keep]), np.log(y[keep]), level=level)
    s = np.asarray(stderr, float).ravel()[keep]
    return slope_ci(np.log(x[keep]), np.log(y[keep]), stderr=s / y[keep], level=level)


def slope_trend(x, y, groups, order: Mapping, level: float = LEVEL) -> Estimate:
    """Does the slope of ``y`` on ``x`` change along an ordered factor?  One model over all points.

    ``y = a_g + (b0 + b1 r_g) x + noise``: each group ``g`` (e.g. a training strength) has
    its own intercept, the slope varies linearly with the group's position ``r_g =
    order[g]`` (e.g. the strength's rank), and the residual variance is pooled over every
    point, so the interval of ``b1`` (``value``; a t interval on ``n - G - 2`` degrees of
    freedom) rests on all replicates, not on one fitted slope per group.  ``b0`` is the
    slope at ``r = 0``.

    Examples
    --------
    >>> x = np.tile(np.log([1.0, 4.0, 16.0]), 4)
    >>> g = np.repeat([0, 1, 2, 3], 3)
    >>> noise = 0.01 * np.cos(np.arange(12.0))
    >>> e = slope_trend(x, (0.5 - 0.1 * g) * x + g + noise, g, {0: 0, 1: 1, 2: 2, 3: 3})
    >>> round(e.value, 2), e.ci_high < 0
    (-0.1, True)
    >>> e = slope_trend(x, 0.5 * x + noise, g, {0: 0, 1: 1, 2: 2, 3: 3})
    >>> e.ci_low < 0 < e.ci_high
    True
    """
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    groups = np.asarray(list(groups), dtype=object)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, groups = x[keep], y[keep], groups[keep]
    labels = [g for g in order if np.any(groups == g)]
    n, k = len(x), len(labels)
    if k < 3 or n - k - 2 < 1:
        return Estimate(None, None, None, n)
    r = np.array([float(order[g]) for g in groups])
    design = np.column_stack([(groups == g).astype(float) for g in labels] + [x, r * x])
    coef, _, rank, _ = np.linalg.lstsq(design, y, rcond=None)
    if rank < design.shape[1]:
        return Estimate(None, None, None, n)
    resid = y - design @ coef
    dof = n - design.shape[1]
    s2 = float(resid @ resid) / dof
    cov = s2 * np.linalg.inv(design.T @ design)
    b1, se = float(coef[-1]), math.sqrt(float(cov[-1, -1]))
    half = t_quantile(dof, level) * se
    return Estimate(b1, b1 - half, b1 + half, n, stderr=se, b0=float(coef[-2]), dof=dof)


def spearman_ci(x, y, level: float = LEVEL) -> Estimate:
    """Spearman's rank correlation with an interval that stays honest for a few points.

    Fisher's ``z = atanh(rho)`` with Bonett and Wright's (2000) variance
    ``(1 + rho^2 / 2) / (n - 3)``.  A perfect ranking (``|rho| = 1``) would give
    ``z = inf`` and an interval collapsed onto 1 however few the points; the interval is
    then computed as for the nearest imperfect ranking (one adjacent swap,
    ``rho = 1 - 12 / (n (n^2 - 1))``), so five monotone points give a wide interval,
    as five points should.  Needs 4 points.

    Examples
    --------
    >>> e = spearman_ci([1, 2, 3, 4, 5], [2, 4, 5, 8, 9])
    >>> e["value"], e["ci_high"], e["ci_low"] < 0.5
    (1.0, 1.0, True)
    """
    x, y = _finite(x, y)
    n = len(x)
    if n < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Estimate(None, None, None, n)

    def ranks(v):
        order = np.argsort(v, kind="mergesort")
        r = np.empty(n)
        r[order] = np.arange(n)
        for value in np.unique(v):  # average ranks of ties
            tied = v == value
            r[tied] = r[tied].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    rho = float(np.clip(np.corrcoef(rx, ry)[0, 1], -1.0, 1.0))
    if abs(abs(rho) - 1) < 1e-12:
        rho = math.copysign(1.0, rho)
    nearest = 1 - 12 / (n * (n * n - 1))
    r = max(-nearest, min(nearest, rho))
    z = math.atanh(r)
    half = t_quantile(math.inf, level) * math.sqrt((1 + r * r / 2) / (n - 3))
    lo, hi = math.tanh(z - half), math.tanh(z + half)
    if rho >= nearest:
        hi = 1.0
    if rho <= -nearest:
        lo = -1.0
    return Estimate(rho, lo, hi, n)


def _replicates(values) -> tuple:
    """``(ids, values)`` of one cell of a curve: a mapping replicate id -> value keeps its ids,
    a plain sequence has none (``ids`` is ``None``); non-finite values are dropped."""
    if isinstance(values, Mapping):
        items = [(k, float(v)) for k, v in values.items() if v is not None and math.isfinite(float(v))]
        return [k for k, _ in items], np.array([v for _, v in items], float)
    (v,) = _finite(values)
    return None, v


def curve_match(curves_a: Mapping, curves_b: Mapping, low: float, high: float, level: float = LEVEL) -> Estimate:
    """Do two curves match?  Judged at every x both have, never on an average.

    ``curves_a``, ``curves_b`` map an x value (a strength) to its replicates (seeds): a
    list of y values, or a mapping seed -> y value; pass log values for multiplicative
    quantities.  At each common x: the difference of the means and a t interval at the
    simultaneous level ``1 - (1 - level) / k`` (Bonferroni over the ``k`` x values).

    * **Paired** (both curves give mappings, and at every x at least two common seeds;
      a seed only one curve has is left out):
      a seed is a common random number of the two runs (in ``pathstats train`` it fixes
      the initialisation, the data order and the augmentation whatever the method), so
      the difference at x is the mean of the per-seed differences and its standard error
      comes from their spread, pooled over all x (degrees of freedom ``sum(n_x - 1)``).
    * **Unpaired** otherwise: the standard error comes from the seed spread of each curve,
      pooled over all x and both curves (seed noise of a log quantity is about the same at
      every strength; pooling gives the intervals their degrees of freedom).

    Field ``paired`` says which.  The verdict (field ``verdict``) is :func:`all_within`
    ``[low, high]``: the match holds only if every difference lies inside, and fails as
    soon as one lies wholly outside.  ``value`` is the difference at the worst x (largest
    ``|difference|``), ``ci_low`` / ``ci_high`` the envelope of all intervals; ``per_x``
    lists each x.

    Examples
    --------
    >>> a = {1: [0.0, 0.02, -0.02], 2: [1.0, 1.02, 0.98]}
    >>> b = {1: [0.5, 0.52, 0.48], 2: [0.5, 0.52, 0.48]}      # +0.5 at x = 1, -0.5 at x = 2
    >>> curve_match(a, b, -0.405, 0.405)["verdict"]             # they do not cancel
    'fails'
    >>> curve_match(a, a, -0.405, 0.405)["verdict"]
    'holds'

    Seeds that move both curves alike cancel in a paired match and not in an unpaired one:

    >>> seed_effect = {0: -0.3, 1: 0.0, 2: 0.3}
    >>> pa = {x: {s: e + 0.01 * s for s, e in seed_effect.items()} for x in (1, 2)}
    >>> pb = {x: {s: e - 0.01 * s for s, e in seed_effect.items()} for x in (1, 2)}
    >>> r = curve_match(pa, pb, -0.1, 0.1); r["paired"], r["verdict"]
    (True, 'holds')
    >>> curve_match({x: list(v.values()) for x, v in pa.items()}, {x: list(v.values()) for x, v in pb.items()},
    ...             -0.1, 0.1)["verdict"]
    'inconclusive'
    """
    xs = sorted(set(curves_a) & set(curves_b))
    cells = []
    for x in xs:
        (ia, a), (ib, b) = _replicates(curves_a[x]), _replicates(curves_b[x])
        if len(a) and len(b):
            cells.append((x, ia, a, ib, b))
    k = len(cells)
    n = int(sum(len(a) + len(b) for _, _, a, _, b in cells))
    if k == 0:
        return Estimate(None, None, None, 0, verdict="inconclusive", per_x=[], paired=False)
    paired = all(ia is not None and ib is not None and len(set(ia) & set(ib)) >= 2 for _, ia, _, ib, _ in cells)
    if paired:  # a seed run by only one of the two methods has no partner: it is left out
        diffs, kept = [], []
        for x, ia, a, ib, b in cells:
            av, bv = dict(zip(ia, a)), dict(zip(ib, b))
            common = [s for s in ia if s in bv]
            diffs.append((x, np.array([av[s] - bv[s] for s in common])))
            kept.append((x, None, np.array([av[s] for s in common]), None, np.array([bv[s] for s in common])))
        cells = kept
        n = 2 * sum(len(d) for _, d in diffs)
        ss = sum(((d - d.mean()) ** 2).sum() for _, d in diffs)
        dof = sum(len(d) - 1 for _, d in diffs)
    else:
        ss = sum(((v - v.mean()) ** 2).sum() for _, _, a, _, b in cells for v in (a, b))
        dof = sum(len(v) - 1 for _, _, a, _, b in cells for v in (a, b))
    sd = math.sqrt(ss / dof) if dof > 0 else None
    t = t_quantile(dof, 1 - (1 - level) / k) if dof > 0 else None
    per = []
    for i, (x, _, a, _, b) in enumerate(cells):
        diff = float(a.mean() - b.mean())
        if sd is None:
            per.append(Estimate(diff, None, None, len(a) + len(b), x=x))
            continue
        se = sd / math.sqrt(len(diffs[i][1])) if paired else sd * math.sqrt(1 / len(a) + 1 / len(b))
        per.append(Estimate(diff, diff - t * se, diff + t * se, len(a) + len(b), stderr=se, x=x))
    worst = max(per, key=lambda e: abs(e["value"]))
    lows = [e["ci_low"] for e in per if e["ci_low"] is not None]
    highs = [e["ci_high"] for e in per if e["ci_high"] is not None]
    return Estimate(worst["value"], min(lows) if len(lows) == k else None, max(highs) if len(highs) == k else None, n,
                    verdict=all_within(per, low, high), worst_x=worst["x"], per_x=[dict(e) for e in per],
                    pooled_sd=sd, dof=dof, paired=paired)


def _design(x, degree: int, centre: float, scale: float):
    u = (np.asarray(x, float) - centre) / scale
    return np.column_stack([u**p for p in range(degree + 1)])


#: The common curve is judged only where the other groups' points surround it: between their
#: ``SUPPORT``-th smallest and ``SUPPORT``-th largest x, so that at least that many of their points lie
#: at or beyond each compared point (a polynomial is an extrapolation past its last few points).
SUPPORT = 3


def _poly_fit(x, y, degree: int, centre: float, scale: float) -> tuple:
    design = _design(x, degree, centre, scale)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    rss = float(((y - design @ coef) ** 2).sum())
    return design, coef, rss


def select_degree(x, y, max_degree: int, alpha: float = 0.05) -> int:
    """The degree of a polynomial in ``x`` that the data ask for: from ``max_degree`` down, the
    highest power is dropped while its F test (one numerator degree of freedom) has ``p >= alpha``;
    at least 1 (a straight line).  Capped by the number of distinct ``x`` and by the points (one
    residual degree of freedom at least).

    Examples
    --------
    >>> x = np.linspace(-1, 1, 40)
    >>> noise = 0.01 * np.cos(np.arange(40.0) * 2.3)
    >>> select_degree(x, 1 + 2 * x + noise, 4), select_degree(x, x**3 - x + noise, 4)
    (1, 3)
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    top = max(1, min(max_degree, len(np.unique(x)) - 1, len(x) - 2))
    centre, scale = float(x.mean()), float(np.ptp(x)) or 1.0
    degree = top
    tiny = 1e-12 * max(float((y**2).sum()), 1e-300)
    while degree > 1:
        _, _, rss_high = _poly_fit(x, y, degree, centre, scale)
        _, _, rss_low = _poly_fit(x, y, degree - 1, centre, scale)
        dof = len(x) - (degree + 1)
        if dof < 1:
            break
        if rss_high <= tiny:  # an exact fit: the lower degree is exact too, or the top power is needed
            if rss_low <= tiny:
                degree -= 1
                continue
            break
        f = (rss_low - rss_high) / (rss_high / dof)
        # special.fdtrc: the F(1, dof) survival function (importing scipy.stats would cost 0.2 s at start-up)
        if float(special.fdtrc(1, dof, f)) < alpha:
            break
        degree -= 1
    return degree


def common_curve(x, y, groups, low: float, high: float, degree: int = 4, level: float = LEVEL,
                 levels=None) -> Estimate:
    """Is ``y`` one smooth function of ``x`` whatever the group, or does each group have its own curve?

    For each group ``g``, the common curve is a polynomial (least squares) fitted to the
    OTHER groups' points, so a group cannot pull the curve it is judged against; its degree
    (1 to ``degree``) is chosen on those points alone by :func:`select_degree` (a curve
    too stiff for the others' data would read its own misfit as ``g``'s deviation).  ``g``'s
    points inside the others' support (between their :data:`SUPPORT`-th smallest and largest x)
    are compared with it: a straight line through ``g``'s residuals gives the deviation of
    ``g``'s curve from the common one at both ends of its range (the mean residual if ``g``
    has two points), with a variance adding ``g``'s own scatter and the common fit's
    variance carried through the same line (or mean), and a t interval at the simultaneous
    level over all deviations (Bonferroni) on the smaller of the two fits' degrees of freedom
    (Welch-Satterthwaite's are too many when a group has few points: with one residual degree
    of freedom its intervals covered 94% where 99% was asked).
    ``levels`` (optional, one per point: the setting that produced it, e.g. the training
    strength) marks a group whose compared points all come from ONE setting: its x spread is
    replicate scatter, not a range, so it is judged by its mean residual rather than by a
    line through the scatter.  The verdict (field ``verdict``) is :func:`all_within` ``[low,
    high]``: one curve holds only if every group's deviation lies inside, and fails as soon
    as one lies wholly outside.  ``value`` is the largest deviation; ``per_group`` lists them,
    each with the common curve's ``degree``.

    Examples
    --------
    >>> x = np.tile(np.linspace(0, 2, 6), 3)
    >>> g = np.repeat(["a", "b", "c"], 6)
    >>> noise = 0.01 * np.cos(np.arange(18.0) * 1.7)
    >>> common_curve(x, 2 * x + noise, g, -0.4, 0.4)["verdict"]
    'holds'
    >>> common_curve(x, 2 * x + np.repeat([0.0, 0.0, 1.0], 6) + noise, g, -0.4, 0.4)["verdict"]  # c has its own curve
    'fails'
    """
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    groups = np.asarray([str(v) for v in groups])
    settings = np.asarray([str(v) for v in levels]) if levels is not None else np.asarray(["" for _ in x])
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, groups, settings = x[keep], y[keep], groups[keep], settings[keep]
    labels = sorted(set(groups.tolist()))
    raw = []
    for lab in labels:
        mine, others = groups == lab, groups != lab
        xo, yo = x[others], y[others]
        if len(xo) < max(2 * SUPPORT, 3) or len(np.unique(xo)) < 2:
            continue
        deg = select_degree(xo, yo, degree)
        centre, scale = float(xo.mean()), float(np.ptp(xo)) or 1.0
        design, coef, rss = _poly_fit(xo, yo, deg, centre, scale)
        dof_o = len(xo) - (deg + 1)
        cov_o = rss / dof_o * np.linalg.pinv(design.T @ design)
        ordered = np.sort(xo)
        inside = mine & (x >= ordered[SUPPORT - 1]) & (x <= ordered[-SUPPORT])
        xg, yg = x[inside], y[inside]
        if len(xg) < 2:
            continue
        design_g = _design(xg, deg, centre, scale)
        resid = yg - design_g @ coef
        one_setting = levels is not None and len(set(settings[inside].tolist())) < 2
        if len(xg) >= 3 and np.ptp(xg) > 0 and not one_setting:
            fit = slope_ci(xg, resid)
            xbar = float(xg.mean())
            s2_g = float(((resid - fit["intercept"] - fit["value"] * xg) ** 2).sum()) / (len(xg) - 2)
            sxx = float(((xg - xbar) ** 2).sum())
            points = [(float(xg.min()), "low end"), (float(xg.max()), "high end")]
            dof_g = len(xg) - 2
            for x0, where in points:
                dev = fit["intercept"] + fit["value"] * x0
                var_g = s2_g * (1 / len(xg) + (x0 - xbar) ** 2 / sxx)
                # the line's value at x0 is sum_i w_i resid_i: the curve enters through the same weights
                w = 1 / len(xg) + (x0 - xbar) * (xg - xbar) / sxx
                dw = w @ design_g
                var_o = float(dw @ cov_o @ dw)
                raw.append((lab, where, x0, dev, var_g + var_o, min(dof_g, dof_o), len(xg), deg))
        else:
            x0 = float(xg.mean())
            s2_g = float(resid.var(ddof=1))
            dw = design_g.mean(axis=0)  # the mean residual subtracts the curve's mean over g's points
            var_g, var_o = s2_g / len(xg), float(dw @ cov_o @ dw)
            raw.append((lab, "mean", x0, float(resid.mean()), var_g + var_o,
                        min(len(xg) - 1, dof_o), len(xg), deg))
    if not raw:
        return Estimate(None, None, None, len(x), verdict="inconclusive", per_group=[])
    m = len(raw)
    per = []
    for lab, where, x0, dev, var, dof, count, deg in raw:
        if dof < 1 or not math.isfinite(var):
            per.append(Estimate(dev, None, None, count, group=lab, at=where, x=x0, degree=deg))
            continue
        se = math.sqrt(max(var, 0.0))
        half = t_quantile(dof, 1 - (1 - level) / m) * se
        per.append(Estimate(dev, dev - half, dev + half, count, stderr=se, group=lab, at=where, x=x0, degree=deg))
    worst = max(per, key=lambda e: abs(e["value"]))
    complete = all(e["ci_low"] is not None for e in per)
    return Estimate(worst["value"], min(e["ci_low"] for e in per) if complete else None,
                    max(e["ci_high"] for e in per) if complete else None, len(x),
                    verdict=all_within(per, low, high), worst_group=worst["group"], groups=len(labels),
                    per_group=[dict(e) for e in per])


def sphere_abs_cosine_mean(k: int) -> float:
    """``E|u_1|`` for ``u`` uniform on the unit sphere of ``R^k``: the mean ``|cosine|`` of a random
    direction with a fixed one, ``Gamma(k/2) / (sqrt(pi) Gamma((k+1)/2))``.

    Examples
    --------
    >>> sphere_abs_cosine_mean(1), round(sphere_abs_cosine_mean(2), 6) == round(2 / math.pi, 6)
    (1.0, True)
    """
    return float(math.exp(special.gammaln(k / 2) - special.gammaln((k + 1) / 2)) / math.sqrt(math.pi))
