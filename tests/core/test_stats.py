"""pathstats.stats: the one statistics module, on known answers (fixed seeds, exact where possible)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from pathstats import stats

MARGIN = math.log(1.5)


def test_one_estimate_one_standard_error_everywhere():
    from pathstats.robust.experiments import stats as reexport
    from pathstats.verify import Estimate as verify_estimate
    from pathstats.verify.montecarlo import Estimate as montecarlo_estimate

    assert verify_estimate is stats.Estimate and montecarlo_estimate is stats.Estimate
    assert reexport.Estimate is stats.Estimate and reexport.loglog_slope is stats.loglog_slope
    values = np.array([1.0, 2.0, 4.0, 7.0])
    e = stats.Estimate.of(values)
    assert e.value == 3.5 and e.stderr == pytest.approx(values.std(ddof=1) / 2) and e.n == 4
    assert e.z(3.0) == pytest.approx(0.5 / e.stderr)
    assert (e.ci_low, e.ci_high) == pytest.approx(sps.t.interval(0.95, 3, loc=3.5, scale=e.stderr))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=30))
def test_mean_interval_is_students_t(values):
    e = stats.mean_ci(values)
    se = np.std(values, ddof=1) / math.sqrt(len(values))
    assert e.stderr == pytest.approx(se, abs=1e-9)
    half = sps.t.ppf(0.975, len(values) - 1) * se
    assert e.ci_high - e.value == pytest.approx(half, abs=1e-9)


def test_quantiles_match_scipy_stats():
    for dof in (1, 3, 10, 57.5):
        assert stats.t_quantile(dof) == pytest.approx(sps.t.ppf(0.975, dof), rel=1e-10)
    est = stats.proportion_ci(19, 20)
    assert est.ci_low == pytest.approx(sps.beta.ppf(0.025, 19, 2)) and est.ci_high == pytest.approx(sps.beta.ppf(0.975, 20, 1))
    s = stats.std_ci([1.0, 2.0, 3.0, 4.0, 6.0])
    v = np.var([1.0, 2.0, 3.0, 4.0, 6.0], ddof=1)
    assert s.ci_low == pytest.approx(math.sqrt(4 * v / sps.chi2.ppf(0.975, 4)))


def test_sqrt_d_law_holds_and_a_flat_law_fails():
    rng = np.random.default_rng(0)
    d = np.repeat([1024, 4096, 16384, 65536], 3)
    sqrt_law = stats.loglog_slope(d, 3 * np.sqrt(d) * np.exp(0.05 * rng.standard_normal(d.size)))
    flat = stats.loglog_slope(d, 3 * np.exp(0.05 * rng.standard_normal(d.size)))
    assert sqrt_law.ci_low < 0.5 < sqrt_law.ci_high and stats.verdict(sqrt_law, 0.25, 0.75) == "holds"
    assert stats.verdict(flat, 0.25, 0.75) == "fails"
    assert stats.verdict(stats.loglog_slope(d, d * 1.0), 0.25, 0.75) == "fails"  # linear growth is not sqrt(d)


def test_weighted_slope_uses_the_known_standard_errors():
    d = np.array([3072, 12288, 49152, 196608])
    y = 3 * d**0.5
    e = stats.loglog_slope(d, y, stderr=0.01 * y)  # 1% on every point: log-scale sd 0.01
    x = np.log(d)
    assert e.value == pytest.approx(0.5, abs=1e-12)
    assert e.stderr == pytest.approx(0.01 / math.sqrt(((x - x.mean()) ** 2).sum()))


def test_slope_interval_covers_the_truth_at_the_stated_rate():
    rng = np.random.default_rng(3)
    x = np.arange(6.0)
    hits = 0
    for _ in range(2000):
        e = stats.slope_ci(x, 0.3 * x + rng.standard_normal(6))
        hits += e.ci_low <= 0.3 <= e.ci_high
    # 95% coverage; 2000 draws: standard error 0.49%, so 4 standard errors is 2 points
    assert abs(hits / 2000 - 0.95) < 0.02


def test_five_monotone_points_do_not_give_a_collapsed_spearman_interval():
    e = stats.spearman_ci([1, 2, 3, 4, 5], [1.0, 1.1, 5.0, 7.0, 100.0])
    assert e.value == 1.0 and e.ci_high == 1.0
    assert e.ci_low < 0.5  # five points cannot tell rho = 1 from a moderate correlation
    assert stats.verdict(e, 0.8, 1.0) == "inconclusive"
    many = np.arange(40.0)
    assert stats.verdict(stats.spearman_ci(many, np.exp(many / 10)), 0.8, 1.0) == "holds"  # 40 monotone points do


def test_spearman_interval_covers_a_known_correlation():
    rng = np.random.default_rng(1)
    cov = [[1, 0.6], [0.6, 1]]
    true = 6 / math.pi * math.asin(0.3)  # Spearman's rho of a bivariate normal with r = 0.6
    hits = 0
    for _ in range(600):
        e = stats.spearman_ci(*rng.multivariate_normal([0, 0], cov, 15).T)
        hits += e.ci_low <= true <= e.ci_high
    assert hits / 600 > 0.93  # at least nominal (the adjustment only widens perfect rankings)


def _seeds(rng, centre, n=3, sd=0.02):
    return list(centre + sd * rng.standard_normal(n))


def test_curves_apart_in_opposite_directions_do_not_match():
    rng = np.random.default_rng(2)
    base = {e: math.log(10 * math.exp(-e)) for e in (0.1, 0.3, 1.0, 3.0)}
    a = {e: _seeds(rng, v) for e, v in base.items()}
    # 1.65x above at the two weak strengths, 1.65x below at the two strong ones: the mean log-ratio is 0
    b = {e: _seeds(rng, v + (1 if e < 0.5 else -1) * math.log(1.65)) for e, v in base.items()}
    e = stats.curve_match(a, b, -MARGIN, MARGIN)
    assert abs(np.mean([p["value"] for p in e["per_x"]])) < 0.05  # an average would cancel ...
    assert e["verdict"] == "fails"  # ... the per-strength test does not
    assert abs(e.value) == pytest.approx(math.log(1.65), abs=0.05)


def test_equal_curves_with_seed_noise_match():
    rng = np.random.default_rng(4)
    base = {e: math.log(10 * math.exp(-e)) for e in (0.1, 0.3, 1.0, 3.0)}
    a = {e: _seeds(rng, v, sd=0.05) for e, v in base.items()}
    b = {e: _seeds(rng, v, sd=0.05) for e, v in base.items()}
    assert stats.curve_match(a, b, -MARGIN, MARGIN)["verdict"] == "holds"


def test_one_seed_per_strength_cannot_decide_a_match():
    a = {e: [float(e)] for e in (0.1, 0.3)}
    e = stats.curve_match(a, a, -MARGIN, MARGIN)
    assert e["verdict"] == "inconclusive" and e.ci_low is None


def test_a_common_curve_holds_and_method_specific_curves_fail():
    rng = np.random.default_rng(5)
    x = np.tile(np.linspace(-1, 2, 8), 4)
    methods = np.repeat(["grad-l1", "fgsm", "pgd", "grad-l2"], 8)
    common = 0.9 * x - 0.1 * x**2
    one = stats.common_curve(x, common + 0.03 * rng.standard_normal(x.size), methods, -MARGIN, MARGIN)
    assert one["verdict"] == "holds" and one["groups"] == 4
    own = common + np.repeat([0.0, 0.0, 0.0, 0.8], 8) + 0.03 * rng.standard_normal(x.size)
    apart = stats.common_curve(x, own, methods, -MARGIN, MARGIN)
    assert apart["verdict"] == "fails" and apart["worst_group"] == "grad-l2"
    # a method whose curve has another slope (crossing the others in the middle) fails too: no cancelling
    tilted = common + (methods == "pgd") * 0.8 * (x - 0.5) + 0.03 * rng.standard_normal(x.size)
    assert stats.common_curve(x, tilted, methods, -MARGIN, MARGIN)["verdict"] == "fails"


def test_all_within_and_verdict_edges():
    assert stats.verdict({"ci_low": 0.25, "ci_high": 0.75}, 0.25, 0.75) == "holds"  # closed region
    assert stats.all_within([{"ci_low": None, "ci_high": None}], 0, 1) == "inconclusive"


def test_sphere_null_matches_a_simulation():
    rng = np.random.default_rng(6)
    u = rng.standard_normal((200000, 10))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    sim = np.abs(u[:, 0])
    assert stats.sphere_abs_cosine_mean(10) == pytest.approx(sim.mean(), abs=4 * sim.std() / math.sqrt(len(sim)))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=3, max_size=3), st.floats(-1, 1), st.integers(0, 2**31 - 1))
def test_curve_match_is_antisymmetric_and_shift_equivariant(centres, shift, seed):
    rng = np.random.default_rng(seed)
    a = {e: list(c + 0.05 * rng.standard_normal(3)) for e, c in zip((0.1, 0.3, 1.0), centres)}
    b = {e: list(c + 0.05 * rng.standard_normal(3)) for e, c in zip((0.1, 0.3, 1.0), centres)}
    ab, ba = stats.curve_match(a, b, -MARGIN, MARGIN), stats.curve_match(b, a, -MARGIN, MARGIN)
    assert ab["verdict"] == ba["verdict"] and ab.value == pytest.approx(-ba.value)
    moved = stats.curve_match({e: [v + shift for v in vs] for e, vs in a.items()}, b, -MARGIN + shift, MARGIN + shift)
    assert moved["verdict"] == ab["verdict"]


def _paired_curves(rng, shift, seeds=5, seed_sd=0.3, noise_sd=0.03):
    """Two curves over four strengths whose seeds share a large common effect (a seed fixes
    the initialisation and the data order of both runs) and differ by ``shift`` at every
    strength, plus small independent noise."""
    effect = {s: seed_sd * (s - (seeds - 1) / 2) for s in range(seeds)}  # spread seed_sd * 1.58 at 5 seeds
    xs = (0.1, 0.3, 1.0, 3.0)
    a = {x: {s: e + noise_sd * rng.standard_normal() for s, e in effect.items()} for x in xs}
    b = {x: {s: e + shift(x) + noise_sd * rng.standard_normal() for s, e in effect.items()} for x in xs}
    return a, b


def test_paired_match_removes_the_common_seed_effect():
    rng = np.random.default_rng(7)
    a, b = _paired_curves(rng, lambda x: 0.0)
    paired = stats.curve_match(a, b, -MARGIN, MARGIN)
    unpaired = stats.curve_match({x: list(v.values()) for x, v in a.items()},
                                 {x: list(v.values()) for x, v in b.items()}, -MARGIN, MARGIN)
    assert paired["paired"] and not unpaired["paired"]
    assert paired["verdict"] == "holds"
    assert unpaired["verdict"] == "inconclusive"  # the seed effect (sd 0.47) swamps the unpaired interval
    assert paired["pooled_sd"] == pytest.approx(0.03 * math.sqrt(2), rel=0.35)  # the spread of the differences


def test_paired_curves_apart_in_opposite_directions_fail():
    rng = np.random.default_rng(8)
    a, b = _paired_curves(rng, lambda x: (1 if x < 0.5 else -1) * math.log(1.65))
    e = stats.curve_match(a, b, -MARGIN, MARGIN)
    assert e["paired"] and e["verdict"] == "fails"
    assert abs(e.value) == pytest.approx(math.log(1.65), abs=0.05)


def test_paired_match_drops_seeds_without_a_partner():
    rng = np.random.default_rng(9)
    a, b = _paired_curves(rng, lambda x: 0.0)
    del b[0.3][4]  # one run missing (e.g. degenerate): its partner is left out, the rest stays paired
    e = stats.curve_match(a, b, -MARGIN, MARGIN)
    assert e["paired"] and e.n == 2 * (4 * 5 - 1)
    assert [p["n"] for p in e["per_x"]] == [10, 8, 10, 10]


def test_common_curve_judges_a_one_setting_group_by_its_mean_residual():
    rng = np.random.default_rng(11)
    x = np.concatenate([np.linspace(0, 2, 12), np.linspace(0, 2, 12), 1.0 + 0.05 * rng.standard_normal(6)])
    groups = ["a"] * 12 + ["b"] * 12 + ["none"] * 6
    levels = list(np.repeat(np.arange(6), 2)) * 2 + [0.0] * 6  # "none": six seeds of one setting
    y = 2 * x + 0.02 * rng.standard_normal(len(x))
    e = stats.common_curve(x, y, groups, -0.4, 0.4, levels=levels)
    none = [p for p in e["per_group"] if p["group"] == "none"]
    assert [p["at"] for p in none] == ["mean"] and e["verdict"] == "holds"
    # without the settings, the seeds' scatter would be read as a range with two ends
    e = stats.common_curve(x, y, groups, -0.4, 0.4)
    assert [p["at"] for p in e["per_group"] if p["group"] == "none"] == ["low end", "high end"]


def test_common_curve_takes_the_degree_the_others_data_ask_for():
    # the others' points follow a cubic; a curve of degree 2 or less misfits them, and that misfit
    # would read as a deviation of the group judged there, which follows the same cubic
    rng = np.random.default_rng(12)
    x = np.concatenate([np.linspace(-1, 1, 30), np.linspace(-1, 1, 30), np.linspace(0.5, 0.85, 10)])
    groups = ["a"] * 30 + ["b"] * 30 + ["c"] * 10
    y = 1.5 * x**3 - x + 0.02 * rng.standard_normal(len(x))
    stiff = stats.common_curve(x, y, groups, -0.1, 0.1, degree=2)
    chosen = stats.common_curve(x, y, groups, -0.1, 0.1)
    c_stiff = [p for p in stiff["per_group"] if p["group"] == "c"]
    c_chosen = [p for p in chosen["per_group"] if p["group"] == "c"]
    assert max(abs(p["value"]) for p in c_stiff) > 0.1  # the stiff curve's misfit, not c's
    assert {p["degree"] for p in c_chosen} == {3}
    assert all(p["ci_low"] < 0 < p["ci_high"] for p in c_chosen)  # within its interval of the common curve
    assert any(p["ci_low"] > 0 or p["ci_high"] < 0 for p in c_stiff)  # the stiff curve's misfit is "significant"


def test_common_curve_compares_only_inside_the_others_support():
    # one of the others' points reaches far out; the judged group's runs out there are not compared
    x = np.concatenate([np.linspace(0, 1, 20), [3.0], np.linspace(0, 3, 16)])
    groups = ["a"] * 21 + ["b"] * 16
    y = 2 * x + 0.01 * np.cos(np.arange(len(x)) * 1.3)
    e = stats.common_curve(x, y, groups, -0.4, 0.4)
    b = [p for p in e["per_group"] if p["group"] == "b"]
    third_largest = np.sort(x[:21])[-stats.SUPPORT]
    assert b and all(p["x"] <= third_largest for p in b)


def test_common_curve_rarely_fails_a_true_common_curve():
    # calibration under the null: one curve for every group, noise 0.05; simultaneous 95% intervals
    # and a margin of 0.1 should almost never exclude the margin (expected rate well under 5%)
    rng = np.random.default_rng(13)
    fails, trials = 0, 200
    base = np.tile(np.linspace(0, 2, 12), 4)
    groups = np.repeat(["a", "b", "c", "d"], 12)
    for _ in range(trials):
        y = np.sin(base) + 0.05 * rng.standard_normal(base.size)
        fails += stats.common_curve(base, y, groups, -0.1, 0.1)["verdict"] == "fails"
    rate = fails / trials
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / trials), rate


def test_common_curve_intervals_keep_their_level_for_small_groups():
    # one true line, groups of 6 points of which few lie inside the others' support: a member's
    # interval excludes the true deviation (0) in at most 5% of the data sets (family-wise)
    rng = np.random.default_rng(14)
    trials, misses = 400, 0
    groups = np.repeat(["a", "b", "c"], 6)
    for _ in range(trials):
        x = rng.uniform(0, 1, groups.size)
        y = x + 0.1 * rng.standard_normal(groups.size)
        misses += stats.common_curve(x, y, groups, 0.0, 0.0)["verdict"] == "fails"
    rate = misses / trials
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / trials), rate
