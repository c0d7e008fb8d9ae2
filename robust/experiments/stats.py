"""The statistics behind the claims: each returns a value with a 95% interval.

A claim's verdict compares the interval with the region the paper's statement allows
(:func:`verdict`): ``holds`` when the whole interval lies in the region, ``fails`` when
none of it does, ``inconclusive`` otherwise (too few runs, or too much spread between
them to tell).  This is an equivalence test, not a significance test: a noisy experiment
ends inconclusive rather than "holds".
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as _st

__all__ = ["Estimate", "verdict", "loglog_slope_ci", "slope_ci", "spearman_ci", "mean_ci", "mean_difference_ci",
           "proportion_ci", "std_ci", "curve_distance", "common_curve_test"]

LEVEL = 0.95


class Estimate(dict):
    """A statistic's ``value``, ``ci_low``, ``ci_high`` (95%) and ``n``, plus any extra fields."""

    def __init__(self, value, ci_low, ci_high, n, **extra):
        def clean(v):
            return None if v is None or not math.isfinite(float(v)) else float(v)

        super().__init__(value=clean(value), ci_low=clean(ci_low), ci_high=clean(ci_high), n=int(n), **extra)


def verdict(estimate: dict, low: float = -math.inf, high: float = math.inf) -> str:
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
    """
    lo, hi = estimate.get("ci_low"), estimate.get("ci_high")
    if lo is None or hi is None:
        return "inconclusive"
    if low <= lo and hi <= high:
        return "holds"
    if hi < low or lo > high:
        return "fails"
    return "inconclusive"


def slope_ci(x, y) -> Estimate:
    """Least-squares slope of ``y`` on ``x`` with its t-based 95% interval (needs 3 points).

    Examples
    --------
    >>> e = slope_ci([0, 1, 2, 3], [1, 3, 5, 7])
    >>> round(e["value"], 12), round(e["ci_low"], 12), round(e["ci_high"], 12), e["n"]
    (2.0, 2.0, 2.0, 4)
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = len(x)
    if n < 2 or np.ptp(x) == 0:
        return Estimate(None, None, None, n)
    fit = _st.linregress(x, y)
    if n < 3:
        return Estimate(fit.slope, None, None, n, stderr=None)
    half = _st.t.ppf(0.5 + LEVEL / 2, n - 2) * fit.stderr
    return Estimate(fit.slope, fit.slope - half, fit.slope + half, n, stderr=float(fit.stderr), intercept=float(fit.intercept))


def loglog_slope_ci(x, y) -> Estimate:
    """:func:`slope_ci` of ``log y`` on ``log x`` (non-positive values dropped).

    Examples
    --------
    >>> d = np.array([64, 256, 1024, 64, 256, 1024])
    >>> round(loglog_slope_ci(d, 3 * np.sqrt(d))["value"], 12)
    0.5
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = (x > 0) & (y > 0)
    return slope_ci(np.log(x[keep]), np.log(y[keep]))


def spearman_ci(x, y) -> Estimate:
    """Spearman's rank correlation with a 95% interval by the Fisher transform
    (variance ``1.06 / (n - 3)``, Fieller et al. 1957); needs 4 points.

    Examples
    --------
    >>> e = spearman_ci([1, 2, 3, 4, 5, 6], [2, 4, 5, 8, 9, 30])
    >>> e["value"], e["ci_low"] < 1
    (1.0, True)
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = len(x)
    if n < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Estimate(None, None, None, n)
    rho = float(_st.spearmanr(x, y)[0])
    z = math.atanh(min(max(rho, -0.999999), 0.999999))
    half = _st.norm.ppf(0.5 + LEVEL / 2) * math.sqrt(1.06 / (n - 3))
    return Estimate(rho, math.tanh(z - half), math.tanh(z + half), n)


def mean_ci(values) -> Estimate:
    """Mean with its t-based 95% interval and standard error.

    Examples
    --------
    >>> e = mean_ci([1.0, 2.0, 3.0])
    >>> e["value"], round(e["stderr"], 6), round(e["ci_high"] - e["value"], 4)
    (2.0, 0.57735, 2.4841)
    """
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return Estimate(None, None, None, 0)
    if n == 1:
        return Estimate(v[0], None, None, 1, stderr=None)
    se = float(v.std(ddof=1) / math.sqrt(n))
    half = _st.t.ppf(0.5 + LEVEL / 2, n - 1) * se
    return Estimate(v.mean(), v.mean() - half, v.mean() + half, n, stderr=se)


def mean_difference_ci(a, b) -> Estimate:
    """``mean(a) - mean(b)`` with Welch's 95% interval.

    Examples
    --------
    >>> e = mean_difference_ci([1.0, 1.2, 0.8], [0.0, 0.1, -0.1])
    >>> round(e["value"], 12), e["ci_low"] > 0
    (1.0, True)
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return Estimate(None, None, None, len(a) + len(b))
    diff = a.mean() - b.mean()
    if len(a) < 2 or len(b) < 2:
        return Estimate(diff, None, None, len(a) + len(b), stderr=None)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Estimate(diff, diff, diff, len(a) + len(b), stderr=0.0)
    dof = (va + vb) ** 2 / ((va**2 / (len(a) - 1) if va else 0) + (vb**2 / (len(b) - 1) if vb else 0))
    half = _st.t.ppf(0.5 + LEVEL / 2, dof) * se
    return Estimate(diff, diff - half, diff + half, len(a) + len(b), stderr=se)


def std_ci(values) -> Estimate:
    """Sample standard deviation with its chi-square 95% interval (normal data).

    Examples
    --------
    >>> e = std_ci([1.0, 2.0, 3.0, 4.0])
    >>> round(e["value"], 4), round(e["ci_low"], 4), round(e["ci_high"], 4)
    (1.291, 0.7313, 4.8135)
    """
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    n = len(v)
    if n < 2:
        return Estimate(None, None, None, n)
    s = float(v.std(ddof=1))
    lo = s * math.sqrt((n - 1) / _st.chi2.ppf(0.5 + LEVEL / 2, n - 1))
    hi = s * math.sqrt((n - 1) / _st.chi2.ppf(0.5 - LEVEL / 2, n - 1))
    return Estimate(s, lo, hi, n)


def proportion_ci(successes: int, n: int) -> Estimate:
    """A proportion with its exact (Clopper-Pearson) 95% interval.

    Examples
    --------
    >>> e = proportion_ci(50, 50)
    >>> e["value"], round(e["ci_low"], 4), e["ci_high"]
    (1.0, 0.9289, 1.0)
    """
    if n == 0:
        return Estimate(None, None, None, 0)
    ci = _st.binomtest(int(successes), int(n)).proportion_ci(LEVEL, method="exact")
    return Estimate(successes / n, ci.low, ci.high, n)


def curve_distance(curves_a: dict, curves_b: dict) -> Estimate:
    """How far apart two curves are, against the spread between seeds.

    ``curves_a``, ``curves_b`` map an x value (a strength) to the list of y values of
    its seeds (use log values for multiplicative quantities).  At each x both have,
    the difference of the seed means and its standard error (pooled seed spread) are
    taken.  Returns the mean difference over x with its 95% interval (t on the
    standard errors), ``rms`` the root-mean-square difference, ``spread`` the
    root-mean-square standard error, and ``p_value`` of the chi-square test that the
    curves are one curve (``sum (diff / se)^2`` on ``k`` strengths).

    Examples
    --------
    >>> a = {1: [1.0, 1.1, 0.9], 2: [2.0, 2.1, 1.9]}
    >>> e = curve_distance(a, a)
    >>> e["value"], e["rms"], e["p_value"]
    (0.0, 0.0, 1.0)
    """
    xs = sorted(set(curves_a) & set(curves_b))
    diffs, ses, dofs = [], [], []
    for x in xs:
        a, b = np.asarray(curves_a[x], float), np.asarray(curves_b[x], float)
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if len(a) == 0 or len(b) == 0:
            continue
        diffs.append(a.mean() - b.mean())
        if len(a) > 1 and len(b) > 1:
            pooled = ((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2)
            ses.append(math.sqrt(pooled * (1 / len(a) + 1 / len(b))))
            dofs.append(len(a) + len(b) - 2)
    k = len(diffs)
    if k == 0:
        return Estimate(None, None, None, 0)
    diffs = np.asarray(diffs)
    rms = float(np.sqrt(np.mean(diffs**2)))
    if len(ses) < k or min(ses) == 0:
        return Estimate(diffs.mean(), None, None, k, rms=rms, spread=None, p_value=None)
    ses = np.asarray(ses)
    se_mean = float(np.sqrt(np.sum(ses**2)) / k)
    half = _st.t.ppf(0.5 + LEVEL / 2, int(np.sum(dofs))) * se_mean
    chi2 = float(np.sum((diffs / ses) ** 2))
    return Estimate(diffs.mean(), diffs.mean() - half, diffs.mean() + half, k, rms=rms,
                    spread=float(np.sqrt(np.mean(ses**2))), chi2=chi2, p_value=float(_st.chi2.sf(chi2, k)))


def common_curve_test(x, y, groups) -> Estimate:
    """Do groups share one straight line ``y ~ x``?  F-test of group-specific intercepts
    and slopes against a common line; ``value`` is the fraction of the common line's
    residual variance that the groups explain, adjusted for what their extra parameters
    explain by chance (about 0 for one curve, 1 for separate exact curves), with its 95%
    interval by a bootstrap over points (seed 0, 400 resamples).

    Examples
    --------
    >>> x = np.arange(8.0)
    >>> e = common_curve_test(np.r_[x, x], np.r_[2 * x, 2 * x + 0.001 * (-1) ** x], ["a"] * 8 + ["b"] * 8)
    >>> e["value"] <= 0, e["p_value"] > 0.05     # one line: the groups explain no more than chance
    (True, True)
    >>> e = common_curve_test(np.r_[x, x], np.r_[2 * x, 3 * x + 0.001 * (-1) ** x], ["a"] * 8 + ["b"] * 8)
    >>> e["value"] > 0.99, e["p_value"] < 1e-6   # two lines
    (True, True)
    """
    x, y, groups = np.asarray(x, float), np.asarray(y, float), np.asarray(groups)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, groups = x[keep], y[keep], groups[keep]
    labels = sorted(set(groups.tolist()))
    n, g = len(x), len(labels)
    if g < 2 or n < 2 * g + 2:
        return Estimate(None, None, None, n)

    def fit(xs, ys, gs):
        common = np.column_stack([np.ones_like(xs), xs])
        full = np.column_stack([common] + [np.column_stack([(gs == lab), (gs == lab) * xs]) for lab in labels[1:]])
        rss = [float(np.sum((ys - m @ np.linalg.lstsq(m, ys, rcond=None)[0]) ** 2)) for m in (common, full)]
        return rss, full.shape[1]

    (rss0, rss1), p_full = fit(x, y, groups)
    df1, df2 = p_full - 2, n - p_full

    def adjusted(r0, r1):
        # the groups' share of the common line's residual variance, less what df1 extra parameters
        # explain by chance (about df1 / df2 of the remaining variance): 0 on average for one curve
        return 0.0 if r0 == 0 else (r0 - r1 - df1 * r1 / df2) / r0

    frac = adjusted(rss0, rss1)
    f = ((rss0 - rss1) / df1) / (rss1 / df2) if rss1 > 0 else math.inf
    p = float(_st.f.sf(f, df1, df2)) if math.isfinite(f) else 0.0
    rng = np.random.default_rng(0)
    boot = []
    for _ in range(400):
        i = rng.integers(0, n, n)
        if len(set(groups[i].tolist())) < g:
            continue
        (b0, b1), _ = fit(x[i], y[i], groups[i])
        boot.append(adjusted(b0, b1))
    lo, hi = (np.quantile(boot, [0.025, 0.975]) if len(boot) > 20 else (None, None))
    return Estimate(frac, lo, hi, n, F=float(f), p_value=p, groups=g)
