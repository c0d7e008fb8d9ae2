"""Operator norms of the logit Jacobian: exact values against dense Jacobians (SVD,
columns, rows) and brute force over sign vertices; the power iteration as a lower
bound that converges where the norm is exact; the training penalty's gradient;
Roth et al.'s Theorem 1 (logit-loss PGD aligns with the maximiser)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pathstats.robust.opnorm import (
    OperatorNormError,
    alignment,
    dual_map,
    exact_method,
    logit_jacobian,
    logit_pgd,
    operator_norm,
    operator_norm_penalty,
)

INF = math.inf
EXPONENTS = [1.0, 1.5, 2.0, 3.0, INF]


def tiny_net(d: int = 6, k: int = 3, seed: int = 0, width: int = 10) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(d, width), torch.nn.Tanh(), torch.nn.Linear(width, k)).double()


def dense_jacobians(model, x) -> np.ndarray:
    """Per-sample Jacobians by torch.autograd.functional.jacobian, one sample at a time."""
    return np.stack([torch.autograd.functional.jacobian(lambda z: model(z[None])[0], xi).reshape(-1, xi.numel()).numpy() for xi in x])


def dual(p: float) -> float:
    return INF if p == 1 else 1.0 if p == INF else p / (p - 1)


def vertex_brute_force(J: np.ndarray, q: float) -> float:
    """max over v in {-1, 1}^d of ||J v||_q: the (inf, q) norm (a convex function peaks at a vertex)."""
    d = J.shape[1]
    vertices = np.array(list(itertools.product((1.0, -1.0), repeat=d)))
    return float(np.linalg.norm(vertices @ J.T, ord=q, axis=1).max())


@pytest.fixture(scope="module")
def case():
    model = tiny_net()
    x = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return model, x, dense_jacobians(model, x)


def test_logit_jacobian_is_exact(case):
    model, x, J = case
    assert np.allclose(logit_jacobian(model, x).numpy(), J, rtol=0, atol=1e-12)


def test_exact_norms_against_dense_jacobians(case):
    model, x, J = case
    for p, q in itertools.product(EXPONENTS, EXPONENTS):
        result = operator_norm(model, x, p, q)
        if p == 1:
            expect = np.linalg.norm(J, ord=q, axis=1).max(axis=1)  # largest column
        elif q == INF:
            expect = np.linalg.norm(J, ord=dual(p), axis=2).max(axis=1)  # largest row, dual norm
        elif p == q == 2:
            expect = np.linalg.norm(J, ord=2, axis=(1, 2))  # largest singular value
        elif q == 1:
            expect = [max(np.linalg.norm(Ji.T @ s, ord=dual(p)) for s in itertools.product((1, -1), repeat=3)) for Ji in J]
        else:
            assert not result.exact and "lower bound" in result.method
            continue
        assert result.exact and exact_method(p, q, 3) == result.method
        assert np.allclose(result.norms.numpy(), expect, rtol=1e-12, atol=0), (p, q)


@pytest.mark.parametrize("q", [1.0, 2.0])
def test_inf_norm_domain_against_vertex_brute_force(q):
    """(inf, 1) exact by sign vectors in logit space equals brute force over the 2^d input vertices;
    (inf, 2) is NP-hard in d: the power iteration stays below the brute force."""
    model = tiny_net(d=9, k=4, seed=3)
    x = torch.randn(3, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    truth = np.array([vertex_brute_force(Ji, q) for Ji in dense_jacobians(model, x)])
    result = operator_norm(model, x, INF, q, iters=100, seed=0)
    if q == 1:
        assert result.exact and np.allclose(result.norms.numpy(), truth, rtol=1e-12)
    else:
        assert not result.exact
        assert (result.norms.numpy() <= truth * (1 + 1e-12)).all()
        # a vertex is optimal, and the power iteration's v for p = inf is one
        assert torch.equal(result.v.abs(), torch.ones_like(result.v))


def test_maximiser_is_unit_and_attains_the_norm(case):
    model, x, J = case
    for p, q in itertools.product(EXPONENTS, EXPONENTS):
        norms, v = operator_norm(model, x, p, q, iters=30, seed=0)
        assert v.shape == x.shape
        assert np.allclose(np.linalg.norm(v.numpy(), ord=p, axis=1), 1, atol=1e-12), (p, q)
        attained = np.linalg.norm(np.einsum("bkd,bd->bk", J, v.numpy()), ord=q, axis=1)
        assert np.allclose(attained, norms.numpy(), rtol=1e-10), (p, q)


def test_power_iteration_is_a_lower_bound_converging_where_exact(case):
    model, x, _ = case
    for p, q in itertools.product(EXPONENTS, EXPONENTS):
        exact = operator_norm(model, x, p, q)
        if not exact.exact:
            continue
        power = operator_norm(model, x, p, q, iters=30, seed=0, method="power")
        assert not power.exact and (power.norms <= exact.norms * (1 + 1e-12)).all(), (p, q)
    # the spectral norm: the power method converges (geometrically in the gap ratio)
    exact = operator_norm(model, x, 2, 2).norms
    errors = [float(((exact - operator_norm(model, x, 2, 2, iters=n, seed=0, method="power").norms) / exact).max()) for n in (1, 5, 200)]
    assert errors[0] >= errors[1] >= errors[2] >= 0 and errors[2] < 1e-10


def test_power_iteration_never_decreases():
    model = tiny_net(d=8, k=5, seed=5)
    x = torch.randn(4, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    for p, q in [(INF, 2), (3.0, 1.5), (2.0, 3.0)]:
        values = [operator_norm(model, x, p, q, iters=n, seed=2, method="power").norms for n in range(8)]
        for before, after in zip(values, values[1:]):
            assert (after >= before * (1 - 1e-12)).all(), (p, q)


@settings(max_examples=40)
@given(
    p=st.sampled_from(EXPONENTS),
    q=st.sampled_from(EXPONENTS),
    k=st.integers(1, 4),
    d=st.integers(1, 7),
    seed=st.integers(0, 2**16),
)
def test_linear_maps_duality_and_hoelder(p, q, k, d, seed):
    """||W||_{p,q} = ||W^T||_{q*,p*} where both are exact; no unit vector beats the norm."""
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(k, d, dtype=torch.float64, generator=gen)
    f, g = torch.nn.Linear(d, k, bias=False).double(), torch.nn.Linear(k, d, bias=False).double()
    with torch.no_grad():
        f.weight.copy_(W)
        g.weight.copy_(W.T)
    x = torch.zeros(1, d, dtype=torch.float64)
    forward = operator_norm(f, x, p, q, iters=50, seed=0)
    backward = operator_norm(g, torch.zeros(1, k, dtype=torch.float64), dual(q), dual(p), iters=50, seed=0)
    if forward.exact and backward.exact:
        assert torch.allclose(forward.norms, backward.norms, rtol=1e-10)
    trial = torch.randn(64, d, dtype=torch.float64, generator=gen)
    trial = trial / torch.linalg.vector_norm(trial, ord=p, dim=1, keepdim=True)
    best_trial = torch.linalg.vector_norm(trial @ W.T, ord=q, dim=1).max()
    if forward.exact:
        assert best_trial <= forward.norms[0] * (1 + 1e-12)


@given(p=st.sampled_from(EXPONENTS), seed=st.integers(0, 2**16))
def test_dual_map_is_unit_and_attains_the_dual_norm(p, seed):
    z = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    v = dual_map(z, p)
    assert torch.allclose(torch.linalg.vector_norm(v, ord=p, dim=1), torch.ones(3, dtype=torch.float64))
    assert torch.allclose((v * z).sum(1), torch.linalg.vector_norm(z, ord=dual(p), dim=1))


def test_registered_net_on_digit_sized_images():
    from pathstats import nets

    torch.manual_seed(0)
    model = nets.build("conv6-avgpool", (1, 8, 8), classes=10, channels=8).train()
    x = torch.rand(2, 1, 8, 8)
    running = model.features[1].running_mean.clone()
    exact = operator_norm(model, x, 2, 2)
    power = operator_norm(model, x, 2, 2, iters=5, seed=0, method="power")
    assert model.training and torch.equal(model.features[1].running_mean, running)  # eval inside, mode restored
    assert exact.v.shape == x.shape and (power.norms <= exact.norms * (1 + 1e-5)).all()


def test_penalty_value_and_weight_gradient_match_the_dense_jacobian():
    model = tiny_net(d=4, k=3, seed=7)
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    for p, q in [(2, 2), (INF, 1), (INF, 2)]:
        penalty, logits = operator_norm_penalty(model, x, p, q, iters=5, seed=1, return_logits=True)
        assert torch.allclose(logits, model(x))
        v = operator_norm(model, x, p, q, iters=5, seed=1, method="power").v
        # the same v: the penalty is ||J v||_q, and its weight gradient that of the dense Jacobian's
        params = list(model.parameters())
        model.zero_grad()
        penalty.sum().backward()
        ours = [torch.zeros_like(w) if w.grad is None else w.grad.clone() for w in params]  # the last bias leaves J alone
        jacobians = [torch.autograd.functional.jacobian(lambda z: model(z[None])[0], xi, create_graph=True) for xi in x]
        reference = sum(torch.linalg.vector_norm(Ji @ vi, ord=q) for Ji, vi in zip(jacobians, v))
        theirs = [torch.zeros_like(w) if g is None else g for w, g in zip(params, torch.autograd.grad(reference, params, allow_unused=True))]
        assert torch.allclose(penalty.sum(), reference.detach(), rtol=1e-12)
        for a, b in zip(ours, theirs):
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("p, q", [(2, 2), (INF, 2), (2, 1)])
def test_penalty_weight_gradient_through_train_mode_batchnorm_matches_finite_differences(p, q):
    """Regression: J v as a forward-mode tangent had the right value but wrong weight gradients through
    train-mode BatchNorm (PyTorch's forward-mode formula is not differentiable through the batch statistics).
    The reference differentiates ||(f(X + hV) - f(X - hV)) / 2h||_q, first-order only, with the same v."""
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.BatchNorm2d(3), torch.nn.Tanh(),
                                torch.nn.Flatten(), torch.nn.Linear(48, 4)).double().train()
    x = torch.rand(5, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    params = list(model.parameters())
    v = operator_norm(model, x, p, q, iters=3, seed=1, method="power").v  # before: training forwards move running stats
    penalty = operator_norm_penalty(model, x, p, q, iters=3, seed=1)
    ours = torch.autograd.grad(penalty.sum(), params, allow_unused=True)
    h = 1e-5
    reference = torch.linalg.vector_norm((model(x + h * v) - model(x - h * v)) / (2 * h), ord=q, dim=1)
    theirs = torch.autograd.grad(reference.sum(), params, allow_unused=True)
    zero = [torch.zeros_like(w) for w in params]  # the conv and last biases leave J alone
    ours = [z if g is None else g for z, g in zip(zero, ours)]
    theirs = [z if g is None else g for z, g in zip(zero, theirs)]
    scale = max(float(g.abs().max()) for g in theirs)
    # central differences in float64: O(h^2) + rounding / h, about 1e-10 of the scale (measured <= 3e-9)
    assert torch.allclose(penalty, reference, rtol=1e-7, atol=0)  # values are ||(J V)_i||_q per sample
    for a, b in zip(ours, theirs):
        assert float((a - b).abs().max()) <= 1e-7 * scale


def test_theorem_1_logit_pgd_aligns_with_the_maximiser():
    """Small eps, infinite step: l2 PGD on ||f(x+delta) - f(x)||_2 finds the top singular vector."""
    model = tiny_net(d=12, k=4, seed=9, width=24)
    x = torch.randn(16, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(10))
    cos = alignment(model, x, 2, 2, eps=1e-4, steps=60, seed=0)
    assert float(cos.min()) > 1 - 1e-6
    # at a large radius the network is no longer linear in the ball: alignment degrades
    far = alignment(model, x, 2, 2, eps=30.0, steps=60, seed=0)
    assert float(far.mean()) < float(cos.mean())


def test_logit_pgd_stays_in_the_ball_and_box():
    model = tiny_net(d=6, k=3, seed=11)
    x = torch.rand(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
    for norm in (INF, 2, 1):
        x_adv = logit_pgd(model, x, 0.2, norm=norm, q=2, steps=5, seed=0)
        assert (torch.linalg.vector_norm(x_adv - x, ord=norm, dim=1) <= 0.2 + 1e-12).all()
        assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
        assert torch.equal(x_adv, logit_pgd(model, x, 0.2, norm=norm, q=2, steps=5, seed=0))


def test_refusals():
    model, x = tiny_net(), torch.zeros(1, 6, dtype=torch.float64)
    for bad in (0.5, "two", float("nan")):
        with pytest.raises(OperatorNormError, match="norm exponent"):
            operator_norm(model, x, bad, 2)
    with pytest.raises(OperatorNormError, match="not computable exactly .*method='power'"):
        operator_norm(model, x, INF, 2, method="exact")
    with pytest.raises(OperatorNormError, match="method must be"):
        operator_norm(model, x, 2, 2, method="svd")
    with pytest.raises(OperatorNormError, match="iters"):
        operator_norm(model, x, INF, 2, iters=-1)
