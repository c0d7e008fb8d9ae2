"""Exact variance reduction over the classifier (verify.reduction): where it applies,
the facts it rests on, exact identities, and unbiasedness against raw samples."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import fx, nn

from pathstats import nets
from pathstats.nets.base import InitialisedNet
from pathstats.verify.batched import BatchedInitialisations
from pathstats.verify.montecarlo import run_monte_carlo, sample_gradients
from pathstats.verify.reduction import ClassifierReduction, plan_reduction, reduction_factors

from tests.verify.test_verify import CASES, SmallNet, Z_MAX


def _plan(model):
    return plan_reduction(fx.symbolic_trace(model), model.init_variances())


class ScaledLogits(InitialisedNet):
    """Logits multiplied after the classifier: the output is not the classifier itself."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(6, 8), nn.ReLU())
        self.classifier = nn.Linear(8, 3)
        self.reset_parameters()

    def forward(self, x):
        return 2 * self.classifier(self.features(x))


@pytest.mark.parametrize(
    "build, flip_layer, reason",
    [
        (lambda: nets.build("fc", (24,), widths=(16, 16)), "features.3", "one filter per feature"),
        (lambda: nets.build("conv6", (3, 32, 32)), "features.16", "one filter per feature"),
        (lambda: nets.build("conv6", (3, 64, 64)), None, "shares each filter among 4 features"),
        (lambda: SmallNet((2, 6, 6), "zeros"), None, "shares each filter"),
        (lambda: SmallNet((2, 6, 6), "zeros", residual="linear"), None, "not the ReLU of one layer"),
        (lambda: SmallNet((2, 6, 6), "zeros", relu=False), None, "not the ReLU of one layer"),
    ],
)
def test_plan_finds_the_classifier_and_where_the_flip_symmetry_holds(build, flip_layer, reason):
    plan = _plan(build().eval())
    assert plan.classifier == "classifier" and plan.flip_layer == flip_layer and reason in plan.reason
    assert plan.variance == pytest.approx(1 / plan.features)  # the declared unit-gain logits


def test_no_reduction_when_the_output_is_not_the_classifier_or_a_batchnorm_shifts():
    assert _plan(ScaledLogits().eval()) is None
    model = nets.build("conv6", (3, 32, 32))
    model.features[17].running_mean.fill_(0.1)  # the last BatchNorm now shifts: signs are no longer symmetric
    plan = _plan(model)
    assert plan.flip_layer is None and "BatchNorm" in plan.reason


def test_factors_use_the_chi_moments_of_the_row_norm_on_the_support():
    """Step 1: E[r^2] = s^2 m and E[r] from scipy's chi distribution, on the nonzero features only."""
    gen = torch.Generator().manual_seed(0)
    features = torch.relu(torch.randn(5, 7, generator=gen))
    row = torch.randn(5, 7, generator=gen) * 0.3
    plan = ClassifierReduction("classifier", 0.09, 7, None, "")
    quadratic, norm = reduction_factors(plan, features, row)
    for b in range(5):
        support = features[b] != 0
        m, radius = int(support.sum()), float(row[b][support].double().norm())
        if m == 0:
            assert quadratic[b] == 0 and norm[b] == 0
            continue
        assert float(quadratic[b]) == pytest.approx(0.09 * m / radius**2, rel=1e-12)
        assert float(norm[b]) == pytest.approx(0.3 * stats.chi(m).mean() / radius, rel=1e-12)
    flipped, _ = reduction_factors(ClassifierReduction("classifier", 0.09, 7, "layer", ""), features, row)
    active = (features != 0).sum(dim=1).double()
    expected = torch.where(active > 0, quadratic * 3.5 / active / (1 - 2**-7), torch.zeros_like(quadratic))
    torch.testing.assert_close(flipped, expected, rtol=1e-12, atol=0)


def _one_init_gradients(model, weights, x, logit):
    """Input gradient of one logit and the classifier's features, for one set of weights."""
    runner = BatchedInitialisations(model, capture=("classifier",))
    batched = {name: value.unsqueeze(0) for name, value in weights.items()}
    classes = model.classifier.out_features
    grads, _ = sample_gradients(runner, batched, x.unsqueeze(0), lambda out: torch.eye(classes, dtype=out.dtype)[logit].reshape(1, 1, classes))
    return grads[0, 0].double(), runner.captured["classifier"][0]


def test_the_facts_behind_step_1_hold_on_conv6():
    """Rows of inactive features do not matter, and the gradient is linear in the probed row."""
    model = nets.build("conv6", (3, 32, 32), channels=8)
    gen = torch.Generator().manual_seed(3)
    weights = {name: torch.randn(m.weight.shape, generator=gen) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    x = torch.randn((3, 32, 32), generator=gen)
    grad, features = _one_init_gradients(model, weights, x, logit=2)
    inactive = features == 0
    assert 0 < int(inactive.sum()) < features.numel()
    weights["classifier"][2, inactive] = 123.0  # weights on inactive features: no effect
    torch.testing.assert_close(_one_init_gradients(model, weights, x, logit=2)[0], grad)
    weights["classifier"][2] *= 3.0
    scaled = _one_init_gradients(model, weights, x, logit=2)[0]
    torch.testing.assert_close(scaled, 3 * grad, rtol=1e-5, atol=1e-5 * float(grad.abs().max()))  # float32 rounding


def test_step_2_keeps_the_mean_exactly_over_every_sign_flip():
    """Sign flips of the last hidden filters and of the probed row preserve the Gaussian law; over
    the whole orbit (2^n x 2^n configurations) the reweighted statistic has exactly the raw mean."""
    model = nets.build("fc", (6,), widths=(5,))
    plan = _plan(model)
    assert plan.flip_layer == "features.1"
    gen = torch.Generator().manual_seed(8)
    base = {"features.1": torch.randn(5, 6, generator=gen), "classifier": torch.randn(10, 5, generator=gen)}
    x = torch.randn(6, generator=gen)
    raw, reweighted, counts = [], [], set()
    for hidden_signs, row_signs in itertools.product(itertools.product((1.0, -1.0), repeat=5), repeat=2):
        weights = {"features.1": base["features.1"] * torch.tensor(hidden_signs)[:, None], "classifier": base["classifier"].clone()}
        weights["classifier"][0] *= torch.tensor(row_signs)
        grad, features = _one_init_gradients(model, weights, x, logit=0)
        y = float((grad**2).sum())
        with_flip, _ = reduction_factors(plan, features[None], weights["classifier"][0][None])
        step_1_only, _ = reduction_factors(ClassifierReduction(plan.classifier, plan.variance, 5, None, ""), features[None], weights["classifier"][0][None])
        raw.append(y)
        reweighted.append(y * float(with_flip[0] / step_1_only[0]) if step_1_only[0] > 0 else 0.0)
        counts.add(int((features != 0).sum()))
    assert counts == set(range(6))  # the orbit visits every active count, m = 0 included
    assert np.mean(reweighted) == pytest.approx(np.mean(raw), rel=1e-9)


@pytest.mark.parametrize("case", ["fc", "conv6-small", "conv-zeros", "residual"])
def test_reduced_samples_are_unbiased_against_the_raw_ones(case):
    """Same seed, so the samples are paired: their mean difference is zero within 4 standard errors."""
    model, shape = CASES[case]()
    reduced = run_monte_carlo(model, shape, 600, seed=21, batch=200, loss=False)
    raw = run_monte_carlo(model, shape, 600, seed=21, batch=200, loss=False, reduce=False)
    assert reduced.reduction is not None and raw.reduction is None
    for a, b in [(reduced.grad_sq_samples.reshape(600, -1).sum(axis=1), raw.grad_sq_samples.reshape(600, -1).sum(axis=1)),
                 (reduced.logit_l1, raw.logit_l1), (reduced.logit_l2, raw.logit_l2)]:
        difference = a - b
        stderr = difference.std(ddof=1) / math.sqrt(len(difference))
        assert stderr > 0 and abs(difference.mean()) < Z_MAX * stderr
