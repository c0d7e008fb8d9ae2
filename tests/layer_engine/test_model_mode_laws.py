"""The laws of model mode's forward pass against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pathstats import moments


def _relu(v):
    return np.maximum(v, 0.0)


def _window_stats(law, members):
    """P(max <= 0) and each member's P(win), mixed over the common factor."""
    valid = members >= 0
    closed, wins = 0.0, 0.0
    for weight, conditional in moments.window_conditionals(law, members):
        out, routing = moments.max_law(conditional, valid)
        closed += weight * out[0, 0, law.values <= 0].sum()
        wins = wins + weight * (conditional * routing).sum(axis=-1)[0, 0]
    return closed, wins


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.5, 0.8])
def test_two_correlated_units_close_together_with_the_orthant_probability(rho):
    """``P(z1 <= 0, z2 <= 0) = 1/4 + arcsin(rho) / (2 pi)``; each unit wins half the time."""
    law = moments.gaussian_law(np.ones((1, 2)), rho=rho)
    closed, wins = _window_stats(law, np.array([[0, 1]]))
    assert closed == pytest.approx(0.25 + math.asin(rho) / (2 * math.pi), abs=1e-4)
    np.testing.assert_allclose(wins, [0.5, 0.5], atol=1e-6)


@pytest.mark.parametrize("rho", [0.0, 0.4])
def test_three_correlated_units_close_together_with_the_orthant_probability(rho):
    """Equicorrelated trivariate orthant: ``1/8 + 3 arcsin(rho) / (4 pi)``."""
    law = moments.gaussian_law(np.ones((1, 3)), rho=rho)
    closed, wins = _window_stats(law, np.array([[0, 1, 2]]))
    assert closed == pytest.approx(0.125 + 3 * math.asin(rho) / (4 * math.pi), abs=1e-4)
    np.testing.assert_allclose(wins, [1 / 3] * 3, atol=2e-4)


def test_relu_outputs_of_independent_units_win_when_open():
    """Four independent ReLU outputs: the open arg-max has probability (1 - 2^-4) / 4 per member."""
    law, _ = moments.map_law(moments.gaussian_law(np.ones((1, 4)), rho=0.0), _relu)
    members = np.array([[0, 1, 2, 3]])
    probs = law.broadcast((1, 4)).probs  # alike units share one law (moments.collapse)
    _, routing = moments.max_law(probs[:, members], members >= 0)
    open_win = (probs[:, members] * routing)[..., law.values > 0].sum(axis=-1)
    np.testing.assert_allclose(open_win, (1 - 2**-4) / 4, atol=2e-4)


@given(st.floats(0.2, 5.0), st.floats(0.2, 5.0))
def test_a_relu_stream_plus_a_gaussian_opens_with_the_orthant_probability(s1, s2):
    """``relu(g1) + g2``: ``P(> 0) = 1/2 + arcsin(s1 / sqrt(s1^2 + s2^2)) / (2 pi)``."""
    stream, _ = moments.map_law(moments.gaussian_law(np.array([s1])), _relu)
    total, _ = moments.sum_law(stream, moments.gaussian_law(np.array([s2])))
    expected = 0.5 + math.asin(s1 / math.hypot(s1, s2)) / (2 * math.pi)
    assert float(total.positive()[0]) == pytest.approx(expected, abs=2e-3)


@given(st.floats(0.1, 10.0), st.floats(-3.0, 3.0))
def test_gaussian_laws_keep_their_moments(std, mean):
    law = moments.gaussian_law(np.array([std]), np.array([mean]))
    assert float(law.probs.sum()) == pytest.approx(1.0, abs=1e-12)
    assert float(law.mean()[0]) == pytest.approx(mean, abs=1e-3 * (std + abs(mean)))
    assert float(law.positive()[0]) == pytest.approx(0.5 * math.erfc(-mean / (std * math.sqrt(2))), abs=5e-3)
