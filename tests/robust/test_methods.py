"""The training methods' losses against closed forms on linear softmax models.

For logits ``o = W x + b`` and the cross-entropy, ``dL/dx = W^T (softmax(o) -
onehot(y))`` exactly, so every method's loss can be written down by hand.  The
inputs stay well inside the box, so clipping never acts.
"""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from pathstats.robust.methods import (
    METHODS,
    MethodError,
    finite_difference_penalty,
    frozen_batchnorm_stats,
    get_method,
)

D, K, B = 6, 4, 5


def linear_model(k=K, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(D, k).double()


def batch(k=K, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = 0.3 + 0.4 * torch.rand(B, D, generator=g, dtype=torch.float64)
    return x, torch.randint(0, k, (B,), generator=g)


def analytic_gradient(model, x, y):
    p = torch.softmax(model(x), 1) - F.one_hot(y, model.out_features).double()
    return p @ model.weight


def ce(model, x, y):
    return F.cross_entropy(model(x), y)


def test_the_table_is_the_documented_one():
    assert list(METHODS) == ["none", "grad-l1", "grad-l2", "fgsm", "fgm-l2", "fgsm-through", "pgd", "crosslip",
                             "fd-l2", "fd-l1", "opnorm"]
    for method in METHODS.values():
        assert method.description and (method.source or method.name == "none")
        assert method.norm in (None, "inf", "2")


def test_strength_is_eq3_radius_for_norm_methods_only():
    d = 3 * 32 * 32
    assert METHODS["grad-l2"].strength(0.01, d) == pytest.approx(0.01 * math.sqrt(d))
    assert METHODS["fgm-l2"].strength(0.01, d) == pytest.approx(0.01 * math.sqrt(d))
    for name in ("grad-l1", "fgsm", "fgsm-through", "pgd", "crosslip", "fd-l1", "fd-l2", "opnorm"):
        assert METHODS[name].strength(0.01, d) == 0.01


def test_unknown_method_is_refused_with_the_list():
    with pytest.raises(MethodError, match="unknown method 'adv'; the methods are: none, grad-l1"):
        get_method("adv")


def test_none_is_the_cross_entropy():
    model, (x, y) = linear_model(), batch()
    assert torch.equal(METHODS["none"].loss(model, x, y, 0.0), ce(model, x, y))


@pytest.mark.parametrize("name, q", [("grad-l1", 1), ("grad-l2", 2)])
def test_gradient_penalty_is_eq4_with_per_sample_dual_norms(name, q):
    model, (x, y) = linear_model(), batch()
    eps_p = 0.3
    g = analytic_gradient(model, x, y)
    expected = ce(model, x, y) + eps_p / 2 * torch.linalg.vector_norm(g, ord=q, dim=1).mean()
    got = METHODS[name].loss(model, x, y, eps_p)
    assert torch.allclose(got, expected, rtol=1e-12)
    # per sample, never a batch-mean gradient rescaled: the batch-mean's norm is smaller here
    assert torch.linalg.vector_norm(g.mean(0), ord=q) < torch.linalg.vector_norm(g, ord=q, dim=1).mean()


def test_gradient_penalty_backpropagates_through_the_gradient():
    model, (x, y) = linear_model(), batch()
    METHODS["grad-l2"].loss(model, x, y, 0.3).backward()
    via_autograd = model.weight.grad.clone()
    model.zero_grad()
    w = model.weight.detach().clone().requires_grad_(True)
    logits = x @ w.T + model.bias.detach()
    g = (torch.softmax(logits, 1) - F.one_hot(y, K).double()) @ w
    (F.cross_entropy(logits, y) + 0.15 * g.norm(dim=1).mean()).backward()
    assert torch.allclose(via_autograd, w.grad, rtol=1e-10)


@pytest.mark.parametrize("name", ["fgsm", "fgsm-through"])
def test_fgsm_is_half_clean_half_eps_sign_gradient(name):
    model, (x, y) = linear_model(), batch()
    eps = 0.05
    delta = eps * torch.sign(analytic_gradient(model, x, y))
    expected = (ce(model, x, y) + ce(model, x + delta, y)) / 2
    assert torch.allclose(METHODS[name].loss(model, x, y, eps), expected, rtol=1e-12)


def test_fgm_l2_steps_along_the_normalised_gradient():
    model, (x, y) = linear_model(), batch()
    eps = 0.1
    g = analytic_gradient(model, x, y)
    expected = (ce(model, x, y) + ce(model, x + eps * g / g.norm(dim=1, keepdim=True), y)) / 2
    assert torch.allclose(METHODS["fgm-l2"].loss(model, x, y, eps), expected, rtol=1e-12)


def test_fgsm_delta_is_detached_and_through_only_adds_a_zero_sign_derivative():
    """fgsm trains on delta as a constant; fgsm-through also differentiates delta =
    eps sign(g), whose derivative is 0 almost everywhere: the parameter gradients agree."""
    grads = {}
    for name in ("fgsm", "fgsm-through"):
        model, (x, y) = linear_model(), batch()
        METHODS[name].loss(model, x, y, 0.05).backward()
        grads[name] = model.weight.grad.clone()
    model, (x, y) = linear_model(), batch()
    x_adv = (x + 0.05 * torch.sign(analytic_gradient(model, x, y))).detach()
    by_hand = torch.autograd.grad((ce(model, x, y) + ce(model, x_adv, y)) / 2, model.weight)[0]
    assert torch.allclose(grads["fgsm"], by_hand, rtol=1e-12)
    assert torch.allclose(grads["fgsm-through"], by_hand, rtol=1e-12)


def test_pgd_trains_on_the_worst_corner_of_a_binary_linear_model():
    """Two classes: L is monotone in (w1 - w0).x, so the l_inf maximiser is the corner x
    + eps sign(g) with g's sign constant on the ball; 10 steps of 0.2 eps reach it from
    any random start, and PGD training uses L(x_adv) alone."""
    model, (x, y) = linear_model(k=2), batch(k=2)
    eps = 0.05
    corner = x + eps * torch.sign(analytic_gradient(model, x, y))
    got = METHODS["pgd"].loss(model, x, y, eps, SimpleNamespace(pgd_steps=10), seed=3)
    assert torch.allclose(got, ce(model, corner, y), rtol=1e-12)
    # 7 steps (the default) never exceed the maximum and never fall below the clean loss
    seven = METHODS["pgd"].loss(model, x, y, eps, seed=3)
    assert ce(model, x, y) <= seven <= ce(model, corner, y) + 1e-12


def test_crosslip_is_eq18_with_the_weight_rows():
    model, (x, y) = linear_model(), batch()
    W = model.weight.detach()
    r = sum(((W[h] - W[k]) ** 2).sum() for h in range(K) for k in range(K)) / K**2
    got = METHODS["crosslip"].loss(model, x, y, 0.7)
    assert torch.allclose(got, ce(model, x, y) + 0.7 * r, rtol=1e-12)


@pytest.mark.parametrize("q", [1, 2])
def test_finite_difference_penalty_tends_to_the_squared_norm_at_rate_h(q):
    """fd-l2 -> ||g||_2^2, fd-l1 -> ||g||_1^2 / N; the error falls like h (slope 1 in log-log)."""
    model, (x, y) = linear_model(), batch()
    g = analytic_gradient(model, x, y)
    limit = (g.norm(dim=1) ** 2 if q == 2 else g.abs().sum(1) ** 2 / D).detach()
    hs = [1e-1, 1e-2, 1e-3, 1e-4]
    errors = [float((finite_difference_penalty(model, x, y, q, h)[1].detach() - limit).abs().max()) for h in hs]
    slopes = [math.log10(errors[i] / errors[i + 1]) for i in range(len(hs) - 1)]
    assert all(0.9 < s < 1.1 for s in slopes), (errors, slopes)
    assert errors[-1] < 1e-3 * float(limit.max())


def test_finite_difference_parameter_gradient_tends_to_double_backprop():
    """Detaching d loses nothing at first order: d/dw (L(x+hd)-L(x))^2/h^2 -> d/dw ||g||_2^2."""
    model, (x, y) = linear_model(), batch()
    losses = F.cross_entropy(model(x.requires_grad_(True)), y, reduction="none")
    (g,) = torch.autograd.grad(losses.sum(), x, create_graph=True)
    exact = torch.autograd.grad((g.norm(dim=1) ** 2).mean(), model.weight)[0]
    x = x.detach()
    errors = []
    for h in (1e-2, 1e-3, 1e-4):
        model.zero_grad()
        finite_difference_penalty(model, x, y, 2, h)[1].mean().backward()
        errors.append(float((model.weight.grad - exact).abs().max()))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-3 * float(exact.abs().max()), errors


@pytest.mark.parametrize("name, q", [("fd-l2", 2), ("fd-l1", 1)])
def test_finite_difference_loss_adds_eps_times_the_penalty(name, q):
    model, (x, y) = linear_model(), batch()
    config = SimpleNamespace(fd_h=1e-3)
    losses, penalty = finite_difference_penalty(model, x, y, q, 1e-3)
    assert torch.allclose(METHODS[name].loss(model, x, y, 0.4, config), losses.mean() + 0.4 * penalty.mean(), rtol=1e-12)


def bn_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3)).train()


@pytest.mark.parametrize("name", [n for n in METHODS if n != "pgd"])
def test_one_training_forward_moves_the_batchnorm_statistics(name):
    """Attack passes (eval mode) and extra forwards leave BatchNorm's running statistics
    as one clean training forward leaves them."""
    x, y = 0.2 + 0.6 * torch.rand(8, 1, 6, 6, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 3
    reference = bn_net()
    reference(x)
    model = bn_net()
    METHODS[name].loss(model, x, y, 0.05, SimpleNamespace(fd_h=0.01, opnorm_p="2", opnorm_q="2", opnorm_iters=2),
                       seed=0).backward()
    assert model.training
    assert torch.allclose(model[1].running_mean, reference[1].running_mean)
    assert torch.allclose(model[1].running_var, reference[1].running_var)
    assert int(model[1].num_batches_tracked) == 1


def test_pgd_updates_batchnorm_once_with_the_adversarial_batch():
    x, y = 0.2 + 0.6 * torch.rand(8, 1, 6, 6, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 3
    model = bn_net()
    METHODS["pgd"].loss(model, x, y, 0.05, seed=0).backward()
    assert int(model[1].num_batches_tracked) == 1


def test_frozen_statistics_keep_saved_tensors_valid_for_backward():
    bn = torch.nn.BatchNorm1d(3).train()
    x = torch.randn(6, 3, requires_grad=True)
    out = bn(x).pow(2).sum()
    with frozen_batchnorm_stats(bn):
        out = out + bn(x + 1).pow(2).sum()
    out.backward()  # would raise if the running statistics were overwritten in place
    assert int(bn.num_batches_tracked) == 1


class ModeLinear(torch.nn.Module):
    """Logits ``A x`` in train mode, ``B x`` in eval mode: an attack's gradient tells its mode."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.a, self.b = torch.nn.Linear(D, K).double(), torch.nn.Linear(D, K).double()

    def forward(self, x):
        return self.a(x) if self.training else self.b(x)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("clip", [True, False])
def test_fgsm_attack_runs_in_adv_mode_and_clips_if_adv_clip(mode, clip):
    model = ModeLinear().train()
    x, y = batch()
    x[:, 0] = 0.99  # the step leaves the box on this coordinate when it ascends
    eps = 0.05
    attacked = model.a if mode == "train" else model.b
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(attacked(xg), y, reduction="sum"), xg)
    x_adv = x + eps * g.sign()
    x_adv = x_adv.clamp(0, 1) if clip else x_adv
    expected = (F.cross_entropy(model.a(x), y) + F.cross_entropy(model.a(x_adv), y)) / 2
    config = SimpleNamespace(adv_mode=mode, adv_clip=clip)
    got = METHODS["fgsm"].loss(model, x, y, eps, config)
    assert torch.allclose(got, expected, rtol=1e-12) and model.training
    other = SimpleNamespace(adv_mode="eval" if mode == "train" else "train", adv_clip=clip)
    assert not torch.allclose(METHODS["fgsm"].loss(model, x, y, eps, other), expected, rtol=1e-6)


def test_unclipped_pgd_leaves_the_box_and_clipped_stays_in_it(monkeypatch):
    import pathstats.robust.methods as methods_module

    model = ModeLinear().train()
    x, y = batch()
    x[:, 0] = 0.99
    real, captured = methods_module.pgd, []
    monkeypatch.setattr(methods_module, "pgd", lambda *a, **k: captured.append(real(*a, **k)) or captured[-1])
    for clip in (True, False):
        METHODS["pgd"].loss(model, x, y, 0.05, SimpleNamespace(adv_mode="train", adv_clip=clip, pgd_steps=3), seed=0)
    clipped, free = captured
    assert float(clipped.max()) <= 1.0 < float(free.max())
    assert float((free - x).abs().max()) <= 0.05 + 1e-12


def test_opnorm_squared_form_is_the_squared_spectral_norm_on_a_linear_model():
    """``f = W x``: J = W everywhere, the eq. 13 penalty is sigma_1(W), the squared form
    sigma_1^2 with the weight gradient 2 sigma_1 u_1 v_1^T (the closed form)."""
    model = torch.nn.Linear(D, K, bias=False).double()
    torch.manual_seed(0)
    model.weight.data = torch.randn(K, D, dtype=torch.float64)
    x, y = batch()
    U, S, Vh = torch.linalg.svd(model.weight.detach())
    lam = 0.3
    for form, value, grad in (("eq13", S[0], torch.outer(U[:, 0], Vh[0])),
                              ("squared", S[0] ** 2, 2 * S[0] * torch.outer(U[:, 0], Vh[0]))):
        config = SimpleNamespace(opnorm_p="2", opnorm_q="2", opnorm_iters=60, opnorm_form=form)
        model.zero_grad()
        loss = METHODS["opnorm"].loss(model, x, y, lam, config, seed=0)
        loss.backward()
        penalty_grad = model.weight.grad.clone()
        model.zero_grad()
        ce(model, x, y).backward()
        assert torch.allclose(loss - ce(model, x, y), lam * value, rtol=1e-9)
        assert torch.allclose(penalty_grad - model.weight.grad, lam * grad, atol=1e-9)
