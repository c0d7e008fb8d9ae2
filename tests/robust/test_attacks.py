"""Attacks, input gradients and vulnerability: closed forms, laws and foolbox 3 cross-checks."""

import math

import foolbox
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from pathstats import nets
from pathstats.robust.attacks import (
    DEEPFOOL_NUDGE,
    AttackError,
    deepfool,
    dual_exponent,
    fgm,
    lp_radius,
    pgd,
    step_for,
)
from pathstats.robust.checks import AttackWarning, check_model
from pathstats.robust.gradients import grad_norms, input_gradients
from pathstats.robust.vulnerability import vulnerability

NORMS = ["inf", 2, 1]


# ----------------------------------------------------------------------------- helpers


def _binary_linear(w: torch.Tensor, bias: float = 0.0) -> torch.nn.Module:
    """Two logits ``(0, w.x + bias)``: the logit difference ``z = o_1 - o_0`` is linear in ``x``."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(w.numel(), 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[1] = w.flatten()
        model[1].bias.copy_(torch.tensor([0.0, bias]))
    return model.eval()


def _linear(d: int, k: int, seed: int, scale: float = 1.0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    model = torch.nn.Linear(d, k)
    with torch.no_grad():
        model.weight.copy_(scale * torch.randn(k, d, generator=gen))
        model.bias.copy_(torch.randn(k, generator=gen))
    return model.eval()


@pytest.fixture(scope="module")
def conv_setup():
    """conv6 (BatchNorm in eval mode), 16 channels wide to keep CI fast, on 3 x 24 x 24 inputs;
    labels = clean predictions.  foolbox gets the same images in the channels-last layout
    pathstats computes in, so that both sum in the same order (with the default layout,
    l_inf PGD's sign(g) can flip where a gradient coordinate is at rounding level)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nets.build("conv6", (3, 24, 24), channels=16)
        x = torch.rand(8, 3, 24, 24)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def _foolbox(model, x):
    return foolbox.PyTorchModel(model, bounds=(0, 1), device="cpu"), x.contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------- units


def test_lp_radius_and_dual_exponent():
    assert lp_radius(0.01, 3072, "inf") == 0.01
    assert lp_radius(0.01, 3072, 2) == pytest.approx(0.01 * math.sqrt(3072), rel=1e-15)
    assert lp_radius(0.01, 3072, 1) == pytest.approx(30.72, rel=1e-15)
    assert [dual_exponent(p) for p in ("inf", 2, 1, float("inf"))] == [1.0, 2.0, math.inf, 1.0]
    for bad in (3, "l2", None):
        with pytest.raises(AttackError):
            dual_exponent(bad)


# ----------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("norm", ["inf", 2])
@pytest.mark.parametrize("attack", ["fgm", "pgd"])
def test_linear_logit_difference_rises_by_eps_dual_norm(attack, norm):
    """On a linear logit difference ``z = w.x``, FGM and PGD (no random start) raise z by exactly eps ||w||_q."""
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(20, generator=gen)
    model = _binary_linear(w)
    x = 0.3 + 0.4 * torch.rand(16, 20, generator=gen)  # far from the box's faces
    y = torch.zeros(16, dtype=torch.long)  # the loss rises with z
    eps = 0.05 if norm == "inf" else 0.2
    if attack == "fgm":
        x_adv = fgm(model, x, y, eps, norm=norm)
    else:
        x_adv = pgd(model, x, y, eps, norm=norm, random_start=False)
    rise = (x_adv - x) @ w
    q = dual_exponent(norm)
    expected = eps * torch.linalg.vector_norm(w, ord=q)
    torch.testing.assert_close(rise, expected.expand(16), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("norm", ["inf", 2])
def test_linear_loss_rise_is_first_order_with_bounded_remainder(norm):
    """Lemma 2 on a linear logit difference: dL = eps ||dL/dx||_q + r with |r| <= (eps ||w||_q)^2 / 8."""
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(30, generator=gen)
    model = _binary_linear(w, bias=0.1)
    x = 0.3 + 0.4 * torch.rand(32, 30, generator=gen)
    y = torch.zeros(32, dtype=torch.long)
    q = dual_exponent(norm)
    for eps in (0.001, 0.01, 0.03):
        x_adv = fgm(model, x, y, eps, norm=norm)
        loss = torch.nn.functional.cross_entropy
        rise = loss(model(x_adv), y, reduction="none") - loss(model(x), y, reduction="none")
        first = eps * torch.linalg.vector_norm(input_gradients(model, x, y), ord=q, dim=1)
        # softplus'' <= 1/4, so the Taylor remainder is at most (1/8) (eps ||w||_q)^2
        bound = (eps * torch.linalg.vector_norm(w, ord=q)) ** 2 / 8
        assert float((rise - first).detach().abs().max()) <= float(bound) + 1e-6


@pytest.mark.parametrize("overshoot", [0.0, 0.02])
@pytest.mark.parametrize("norm", [2, "inf"])
def test_deepfool_distance_to_a_linear_boundary_is_exact(norm, overshoot):
    """On a linear model DeepFool's first step reaches the nearest of the K-1 boundaries, at distance
    min_k |o_k - o_c| / ||w_k - w_c||_q, plus the nudge, times (1 + overshoot)."""
    d, k = 12, 5
    model = _linear(d, k, seed=3, scale=20.0)  # steep: boundaries close, no clipping
    x = 0.4 + 0.2 * torch.rand(10, d, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        logits = model(x)
    c = logits.argmax(1)
    w = model.weight.detach()
    q = dual_exponent(norm)
    gaps = (logits.gather(1, c[:, None]) - logits).abs()  # B x K
    normals = torch.linalg.vector_norm(w[None, :, :] - w[c][:, None, :], ord=q, dim=2)
    distances = (gaps / normals).scatter(1, c[:, None], math.inf).min(1).values
    x_adv = deepfool(model, x, norm=norm, overshoot=overshoot)
    with torch.no_grad():
        assert bool((model(x_adv).argmax(1) != c).all())
    found = torch.linalg.vector_norm(x_adv - x, ord=float(norm), dim=1)
    torch.testing.assert_close(found, (distances + DEEPFOOL_NUDGE) * (1 + overshoot), rtol=1e-4, atol=1e-6)


def test_deepfool_two_classes_moves_along_the_normal():
    w = torch.tensor([3.0, -4.0, 0.0])
    model = _binary_linear(w, bias=-0.2)
    x = torch.full((1, 3), 0.5)
    delta = deepfool(model, x, overshoot=0.0) - x
    margin = abs(float(x @ w) - 0.2) / 5.0
    torch.testing.assert_close(delta[0], -(margin + DEEPFOOL_NUDGE) * w / 5.0 * math.copysign(1, float(x @ w) - 0.2))


# ----------------------------------------------------------------------------- laws

_dims = st.integers(1, 12)
_batches = st.integers(1, 4)


def _tensor(seed: int, b: int, d: int, scale: float) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(b, d, generator=gen, dtype=torch.float64)


@settings(max_examples=60, deadline=None)
@given(norm=st.sampled_from(NORMS), b=_batches, d=_dims, seed=st.integers(0, 2**31), scale=st.floats(0.01, 10.0),
       eps=st.floats(0.01, 3.0))
def test_projection_is_idempotent_and_lands_in_the_ball(norm, b, d, seed, scale, eps):
    step = step_for(norm)
    delta = _tensor(seed, b, d, scale)
    once = step.project(delta, eps)
    assert bool((step.norms(once) <= eps * (1 + 1e-12)).all())
    torch.testing.assert_close(step.project(once, eps), once, rtol=1e-12, atol=1e-12)
    inside = delta * (0.999 * eps / step.norms(delta).clamp_min(1e-300))[:, None]
    torch.testing.assert_close(step.project(inside, eps), inside, rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(norm=st.sampled_from([2, 1]), d=_dims, seed=st.integers(0, 2**31), eps=st.floats(0.05, 2.0))
def test_l2_and_l1_projections_are_nearest_points(norm, d, seed, eps):
    """No point of the ball is closer (Euclidean) to delta than its projection."""
    step = step_for(norm)
    delta = _tensor(seed, 1, d, 2.0)
    projected = step.project(delta, eps)
    others = step.project(_tensor(seed + 1, 200, d, 1.0), eps)
    assert float((delta - projected).norm()) <= float((delta - others).norm(dim=1).min()) + 1e-12


@settings(max_examples=60, deadline=None)
@given(norm=st.sampled_from(NORMS), d=_dims, seed=st.integers(0, 2**31))
def test_step_direction_maximises_the_inner_product_on_the_unit_ball(norm, d, seed):
    step = step_for(norm)
    g = _tensor(seed, 1, d, 1.0)
    direction = step.direction(g)
    assert float(step.norms(direction)) <= 1 + 1e-12
    value = float((g * direction).sum())
    assert value == pytest.approx(float(torch.linalg.vector_norm(g, ord=dual_exponent(norm))), rel=1e-12)
    others = step.project(_tensor(seed + 1, 500, d, 1.0), 1.0)
    assert float((others @ g[0]).max()) <= value + 1e-12


@pytest.mark.parametrize("norm", NORMS)
def test_random_start_is_uniform_in_the_ball(norm):
    """(||r||_p / eps)^d is uniform on [0, 1] for r uniform in the ball; each coordinate is symmetric."""
    d, n, eps = 3, 4000, 0.7
    step = step_for(norm)
    r = step.random_start(torch.zeros(n, d, dtype=torch.float64), eps, torch.Generator().manual_seed(5))
    radii = step.norms(r) / eps
    assert bool((radii <= 1 + 1e-12).all())
    assert stats.kstest((radii ** d).numpy(), "uniform").pvalue > 1e-3
    # coordinate means are 0 within 4 standard errors
    se = r.std(0) / math.sqrt(n)
    assert bool((r.mean(0).abs() < 4 * se).all())


# ----------------------------------------------------------------------------- behaviour


def test_attacks_restore_modes_and_never_touch_batchnorm_statistics():
    model = nets.build("conv6", (1, 17, 17), channels=8).train()
    model.features[1].eval()  # mixed modes come back as they were
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.rand(3, 1, 17, 17), torch.tensor([0, 1, 2])
    for attack in (lambda: pgd(model, x, y, 0.01, steps=2, seed=0), lambda: fgm(model, x, y, 0.01, norm=2),
                   lambda: deepfool(model, x, steps=2), lambda: grad_norms(model, x, y)):
        attack()
        assert model.training and not model.features[1].training and model.features[4].training
        for key, value in model.state_dict().items():
            assert torch.equal(value, before[key]), key
        assert all(p.grad is None for p in model.parameters())


def test_pgd_is_deterministic_for_a_seed_and_leaves_the_global_generator_alone():
    model = _linear(6, 3, seed=0)
    x, y = torch.rand(5, 6), torch.tensor([0, 1, 2, 0, 1])
    state = torch.random.get_rng_state()
    a, b = pgd(model, x, y, 0.1, norm=2, seed=7), pgd(model, x, y, 0.1, norm=2, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, pgd(model, x, y, 0.1, norm=2, seed=8))
    assert float((a - x).norm(dim=1).max()) <= 0.1 + 1e-6 and float(a.min()) >= 0 and float(a.max()) <= 1


def test_grad_norms_are_per_sample_gradients():
    """Each row equals the gradient of that sample's own loss, computed alone."""
    model = nets.build("conv6", (1, 17, 17), channels=8).train()
    x, y = torch.rand(4, 1, 17, 17), torch.tensor([3, 1, 4, 1])
    norms = grad_norms(model, x, y)
    model.eval()
    for i in range(4):
        g = input_gradients(model, x[i:i + 1], y[i:i + 1])
        assert float(norms["l1"][i]) == pytest.approx(float(g.abs().sum()), rel=1e-5)
        assert float(norms["l2"][i]) == pytest.approx(float(g.norm()), rel=1e-5)


def test_refusals_name_the_problem():
    model = _linear(4, 3, seed=0)
    x, y = torch.rand(2, 4), torch.tensor([0, 1])
    cases = [
        (lambda: pgd(model, x, y, -0.1), "eps must be"),
        (lambda: pgd(model, x, y, 0.1, norm=3), "norm must be"),
        (lambda: pgd(model, x + 2, y, 0.1), "inputs must lie in bounds"),
        (lambda: pgd(model, x, y[:1], 0.1), "y must be"),
        (lambda: pgd(model, x, torch.tensor([0, 5]), 0.1), "labels must lie in 0..2"),
        (lambda: pgd(model, x, y, 0.1, steps=-1), "steps must be"),
        (lambda: deepfool(model, x, norm=1), "deepfool supports"),
        (lambda: vulnerability(model, x, y, attack="cw"), "attack must be one of"),
        (lambda: vulnerability(model, x, y, attack="fgm", steps=3), "unknown: steps"),
    ]
    for call, words in cases:
        with pytest.raises(AttackError, match=words):
            call()


# ----------------------------------------------------------------------------- checks


def test_checks_flag_probabilities_randomness_and_zero_gradients():
    x = torch.rand(6, 4)
    softmax = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Softmax(dim=1))
    with pytest.warns(AttackWarning, match="probabilities"):
        check_model(softmax, x)

    class Noisy(torch.nn.Module):
        def forward(self, inputs):
            return inputs @ torch.ones(4, 3) + torch.randn(inputs.shape[0], 3)

    with pytest.warns(AttackWarning, match="random"):
        check_model(Noisy(), x)
    dead = torch.nn.Linear(4, 3)
    torch.nn.init.zeros_(dead.weight)
    with pytest.warns(AttackWarning, match="6 of 6 inputs have a zero loss gradient"):
        result = vulnerability(dead, x, torch.zeros(6, dtype=torch.long), attack="fgm", eps=0.1)
    assert len(result["checks"]) == 1
    assert check_model(_linear(4, 3, seed=0), x) == []


# ----------------------------------------------------------------------------- vulnerability


def test_vulnerability_on_a_linear_logit_difference_matches_the_closed_form():
    """FGSM on z = w.x + b changes the class exactly when 0 > z > -eps ||w||_1; every number in closed form."""
    gen = torch.Generator().manual_seed(6)
    w = torch.randn(10, generator=gen)
    model = _binary_linear(w, bias=-float(w.sum()) / 2)
    x = 0.2 + 0.6 * torch.rand(200, 10, generator=gen, dtype=torch.float32)
    y = torch.randint(0, 2, (200,), generator=gen)
    eps = 0.02
    r = vulnerability(model, x, y, attack="fgm", norm="inf", eps=eps)
    with torch.no_grad():
        z = model(x)[:, 1]
    sign = torch.where(y == 0, 1.0, -1.0)  # the attack pushes z towards the wrong class
    z_adv = z + sign * eps * w.abs().sum()
    changed = ((z > 0) != (z_adv > 0)).double()
    assert r["vulnerability"] == pytest.approx(float(changed.mean()), abs=1e-12)
    assert r["vulnerability_se"] == pytest.approx(float(changed.std() / math.sqrt(200)), rel=1e-9)
    loss = torch.nn.functional.softplus(sign * z).double()
    loss_adv = torch.nn.functional.softplus(sign * z_adv).double()
    assert r["loss_damage"] == pytest.approx(float((loss_adv - loss).mean()), rel=1e-4)
    first = eps * torch.sigmoid(sign * z).double() * w.abs().sum()
    assert r["first_order_damage"] == pytest.approx(float(first.mean()), rel=1e-5)
    assert r["grad_l1"] == pytest.approx(float((torch.sigmoid(sign * z) * w.abs().sum()).mean()), rel=1e-5)
    assert r["accuracy_clean"] - r["accuracy_adv"] == pytest.approx(r["zero_one_damage"], abs=1e-12)
    assert (r["n"], r["d"], r["norm"], r["dual_exponent"]) == (200, 10, "inf", "1")


def test_vulnerability_deepfool_is_restricted_to_the_ball():
    model = _linear(8, 4, seed=9, scale=5.0)
    x = 0.3 + 0.4 * torch.rand(40, 8, generator=torch.Generator().manual_seed(10))
    y = model(x).argmax(1).detach()
    tiny = vulnerability(model, x, y, attack="deepfool", norm=2, eps=1e-6)
    huge = vulnerability(model, x, y, attack="deepfool", norm=2, eps=10.0)
    assert tiny["vulnerability"] == 0.0 and tiny["deepfool_success"] == 1.0
    assert huge["vulnerability"] == 1.0 and huge["deepfool_median_distance"] > 0


# ----------------------------------------------------------------------------- foolbox 3


@pytest.mark.parametrize("norm,attack", [("inf", foolbox.attacks.LinfPGD), (2, foolbox.attacks.L2PGD)])
def test_pgd_without_random_start_equals_foolbox(conv_setup, norm, attack):
    model, x, y = conv_setup
    eps = 0.01 if norm == "inf" else 0.3
    ours = pgd(model, x, y, eps, norm=norm, steps=7, random_start=False)
    fmodel, x_cl = _foolbox(model, x)
    theirs = attack(steps=7, abs_stepsize=0.2 * eps, random_start=False)(fmodel, x_cl, y, epsilons=eps)[0]
    assert float((ours - theirs).abs().max()) <= 1e-5


@pytest.mark.parametrize("norm,attack", [("inf", foolbox.attacks.FGSM), (2, foolbox.attacks.FGM)])
def test_fgm_equals_foolbox(conv_setup, norm, attack):
    model, x, y = conv_setup
    eps = 0.01 if norm == "inf" else 0.3
    fmodel, x_cl = _foolbox(model, x)
    theirs = attack()(fmodel, x_cl, y, epsilons=eps)[0]
    assert float((fgm(model, x, y, eps, norm=norm) - theirs).abs().max()) <= 1e-5


@pytest.mark.parametrize("norm,attack", [(2, foolbox.attacks.L2DeepFoolAttack), ("inf", foolbox.attacks.LinfDeepFoolAttack)])
def test_deepfool_agrees_with_foolbox(conv_setup, norm, attack):
    """Success rate and median distance within 5% of foolbox's (labels: the clean predictions)."""
    model, x, y = conv_setup
    fmodel, x_cl = _foolbox(model, x)
    theirs = attack(steps=50, candidates=None, overshoot=0.02)(fmodel, x_cl, y, epsilons=None)[0]
    ours = deepfool(model, x, norm=norm, steps=50, overshoot=0.02)
    with torch.no_grad():
        ok_ours, ok_theirs = model(ours).argmax(1) != y, model(theirs).argmax(1) != y
    assert abs(float(ok_ours.double().mean()) - float(ok_theirs.double().mean())) <= 0.05
    p = float(norm)
    dist_ours = torch.linalg.vector_norm((ours - x).flatten(1), ord=p, dim=1)[ok_ours].median()
    dist_theirs = torch.linalg.vector_norm((theirs - x).flatten(1), ord=p, dim=1)[ok_theirs].median()
    assert float(dist_ours) == pytest.approx(float(dist_theirs), rel=0.05)
    assert np.isfinite(float(dist_ours)) and float(dist_ours) > 0
