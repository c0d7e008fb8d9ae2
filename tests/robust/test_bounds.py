"""Finlay & Oberman's Proposition 2.1: exact on linear models, below measured minimal
distances on a smooth net; the smooth ReLU is C^2; Lanczos' top Hessian eigenvalue
against dense Hessians; ReLU models get no curvature bound, and are told why."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pathstats.robust.attacks import AttackError
from pathstats.robust.bounds import (
    SmoothReLU,
    margins,
    non_smooth_layers,
    robustness_bounds,
    smooth_relus,
    top_hessian_eigenvalue,
)

INF = math.inf


def dual(p: float) -> float:
    return INF if p == 1 else 1.0 if p == INF else p / (p - 1)


def smooth_net(d: int, k: int, seed: int, width: int = 16) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(d, width), SmoothReLU(), torch.nn.Linear(width, width), SmoothReLU(), torch.nn.Linear(width, k)
    ).double()


# ----------------------------------------------------------------------------- the smooth ReLU


def test_smooth_relu_is_relu_outside_and_twice_differentiable_at_the_joins():
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    outside = x.abs() >= 0.5
    assert torch.equal(SmoothReLU()(x)[outside], torch.relu(x)[outside])

    def derivatives(at: float) -> tuple:
        t = torch.tensor(at, dtype=torch.float64, requires_grad=True)
        (first,) = torch.autograd.grad(SmoothReLU()(t), t, create_graph=True)
        (second,) = torch.autograd.grad(first, t)
        return float(SmoothReLU()(t)), float(first), float(second)

    for join in (-0.5, 0.5):
        below, above = derivatives(join - 1e-9), derivatives(join + 1e-9)
        for a, b in zip(below, above):  # value, slope and curvature continuous
            assert abs(a - b) < 1e-8
    assert derivatives(0.0) == (0.09375, 0.5, 1.5)  # s^3 - s^4/2, 3s^2 - 2s^3, 6s - 6s^2 at s = 1/2: exact in binary


def test_smooth_relus_swaps_modules_and_reports_what_remains():
    from pathstats import nets

    relu_net = nets.build("conv6-avgpool", (1, 8, 8), channels=4)
    assert any("ReLU" in layer for layer in non_smooth_layers(relu_net))
    swapped = smooth_relus(relu_net)
    assert non_smooth_layers(swapped) == [] and non_smooth_layers(relu_net) != []  # a copy
    still = non_smooth_layers(smooth_relus(nets.build("conv6-maxpool", (1, 8, 8), channels=4)))
    assert still and all("MaxPool" in layer for layer in still)


# ----------------------------------------------------------------------------- closed forms


@settings(max_examples=30)
@given(p=st.sampled_from([1.0, 2.0, INF]), d=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_two_class_linear_model_bounds_are_the_exact_distance(p, d, seed):
    gen = torch.Generator().manual_seed(seed)
    model = torch.nn.Linear(d, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(2, d, generator=gen, dtype=torch.float64))
        model.bias.copy_(torch.randn(2, generator=gen, dtype=torch.float64))
    x = torch.randn(8, d, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 2, (8,), generator=gen)
    result = robustness_bounds(model, x, y, norm=p)
    f = model(x).detach()
    w = (model.weight[0] - model.weight[1]).detach()
    correct = f.argmax(1) == y
    distance = torch.where(correct, (f[:, 0] - f[:, 1]).abs() / torch.linalg.vector_norm(w, ord=dual(p)), torch.zeros(8, dtype=torch.float64))
    assert torch.equal(result["correct"], correct | ((f[:, 0] == f[:, 1]) & False))
    assert torch.allclose(result["lipschitz_bound"], distance, rtol=1e-12, atol=0)
    assert result["twice_differentiable"] and result["curvature_constant"] == 0.0
    assert torch.allclose(result["curvature_bound"], distance, rtol=1e-12, atol=0)


def test_multiclass_linear_model_bound_is_below_the_exact_distance():
    gen = torch.Generator().manual_seed(0)
    d, k = 5, 4
    model = torch.nn.Linear(d, k).double()
    x = torch.randn(50, d, generator=gen, dtype=torch.float64)
    f = model(x).detach()
    y = f.argmax(1)
    W = model.weight.detach()
    for p in (2.0, INF):
        pair_norms = torch.stack([torch.linalg.vector_norm(W[i] - W[j], ord=dual(p)) for i in range(k) for j in range(k) if i != j])
        # misclassified means some f_j >= f_y: the union of half-spaces, so the distance is the smallest one
        gaps = f.gather(1, y[:, None]) - f
        norms = torch.linalg.vector_norm(W[y][:, None, :] - W[None], ord=dual(p), dim=2)
        exact = torch.where(torch.arange(k) == y[:, None], INF, gaps / norms).amin(1)
        certified = robustness_bounds(model, x, y, norm=p, lipschitz=float(pair_norms.max()))
        assert (certified["lipschitz_bound"] <= exact * (1 + 1e-12)).all()
        estimated = robustness_bounds(model, x, y, norm=p)
        assert estimated["lipschitz_constant"] <= float(pair_norms.max()) * (1 + 1e-12)
        assert "estimate" in estimated["lipschitz_estimate"] and "not a certificate" in estimated["lipschitz_estimate"]


# ----------------------------------------------------------------------------- Hessians


@pytest.mark.parametrize("batch", [2, 5])  # 16 coordinates: dense; 40: Lanczos
def test_top_hessian_eigenvalue_against_dense_hessians(batch):
    model = smooth_net(8, 3, seed=1)
    x = 0.3 * torch.randn(batch, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y = torch.arange(batch) % 3
    dense = max(
        float(torch.linalg.eigvalsh(torch.autograd.functional.hessian(lambda z: margins(model(z[None]), yi[None], soft=True)[0], xi))[-1])
        for xi, yi in zip(x, y)
    )
    top = top_hessian_eigenvalue(model, x, y)
    assert ("Lanczos" in top["method"]) == (batch * 8 > 32)
    assert top["value"] == pytest.approx(dense, rel=1e-8, abs=1e-12)


def test_bounds_lie_below_measured_minimal_distances_on_a_smooth_2d_net():
    """Constants from dense grids over each ball (Lipschitz: max gradient; curvature: max
    Hessian eigenvalue); distance measured by scanning 360 rays in steps of 1e-3 (an upper
    estimate of the true distance, within a few 1e-3)."""
    model = smooth_net(2, 3, seed=6)
    points = torch.tensor([[-1.2, -0.6], [-0.6, -1.0], [-1.0, -0.3], [-1.3, -1.3]], dtype=torch.float64)
    labels = model(points).argmax(1).detach()
    angles = torch.linspace(0, 2 * math.pi, 361, dtype=torch.float64)[:-1]
    radii = torch.arange(1, 1001, dtype=torch.float64) * 1e-3
    directions = torch.stack([angles.cos(), angles.sin()], 1)
    temperature = 0.005  # the logit differences are ~0.01-0.07 here
    hessian = torch.func.vmap(torch.func.hessian(lambda z, yi: margins(model(z[None]), yi[None], True, temperature)[0]))
    gradient = torch.func.vmap(torch.func.grad(lambda z, yi: margins(model(z[None]), yi[None])[0]))
    for x, y in zip(points, labels):
        with torch.no_grad():
            probes = x + radii[:, None, None] * directions[None]  # R x A x 2
            wrong = model(probes.reshape(-1, 2)).argmax(1).reshape(len(radii), len(angles)) != y
        crossing = wrong.any(0)
        assert crossing.any(), "some ray must leave the class within the scanned radius"
        measured = float(radii[wrong.int().argmax(0)][crossing].min())
        side = torch.linspace(-measured, measured, 101, dtype=torch.float64)
        grid = x + torch.cartesian_prod(side, side)
        grid = grid[(grid - x).norm(dim=1) <= measured]
        ys = torch.full((len(grid),), int(y))
        lipschitz = float(gradient(grid, ys).norm(dim=1).max())
        curvature = max(float(torch.linalg.eigvalsh(hessian(grid, ys))[:, -1].max()), 0.0)
        result = robustness_bounds(model, x[None], y[None], norm=2, lipschitz=lipschitz, curvature=curvature, temperature=temperature)
        assert 0 < float(result["lipschitz_bound"][0]) <= measured
        assert 0 < float(result["curvature_bound"][0]) <= measured


# ----------------------------------------------------------------------------- ReLU models, refusals


def test_relu_model_gets_no_curvature_bound_and_is_told_why():
    from pathstats import nets

    model = nets.build("fc", (1, 4, 4), widths=(16, 16))
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2])
    result = robustness_bounds(model, x, y)
    assert not result["twice_differentiable"] and result["curvature_bound"] is None
    assert "zero almost everywhere" in result["curvature_estimate"] and "smooth_relus" in result["curvature_estimate"]
    assert result["lipschitz_bound"].shape == (3,)
    smooth = robustness_bounds(smooth_relus(model), x, y)
    assert smooth["twice_differentiable"] and smooth["curvature_bound"].shape == (3,)
    assert "Lanczos" in smooth["curvature_estimate"] and "not a certificate" in smooth["curvature_estimate"]


def test_refusals():
    model, x, y = torch.nn.Linear(3, 2), torch.rand(2, 3), torch.tensor([0, 1])
    with pytest.raises(AttackError, match="norm"):
        robustness_bounds(model, x, y, norm=3)
    with pytest.raises(AttackError, match="lipschitz must be"):
        robustness_bounds(model, x, y, lipschitz=-1.0)
    with pytest.raises(AttackError, match="labels must lie in 0..1"):
        robustness_bounds(model, x, torch.tensor([0, 5]))
