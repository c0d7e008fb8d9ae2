"""Finlay & Oberman's per-image lower bounds on the minimal adversarial distance.

Their Proposition 2.1 takes a loss ``l(x)`` whose sign says whether ``x`` is
misclassified (``l(x) < l0 = 0``: correct), here the margin
``l(x) = max_{i != y} f_i(x) - f_y(x)``, and bounds the size of any
perturbation ``v`` that makes the model wrong:

* **L-bound**: if ``l`` is ``L``-Lipschitz in the l_p norm,
  ``||v||_p >= max(l0 - l(x), 0) / L``.  ``L`` is the largest dual-norm
  gradient ``||grad l||_{p*}``, estimated as the maximum over the given inputs
  (the paper's choice): **an estimate, not a certificate** (a larger gradient
  elsewhere would make the true bound smaller).
* **C-bound**, for twice-differentiable models (with the smooth ReLU of their
  Remark 2.2, :class:`SmoothReLU`): with ``C`` the largest positive Hessian
  eigenvalue of the loss, ``l(x + v) <= l(x) + <v, grad l> + (C/2)||v||_2^2``,
  so ``||v||_2 >= (-||g||_2 + sqrt(||g||_2^2 + 2 C gap)) / C`` with
  ``g = grad l(x)`` and ``gap = max(l0 - l(x), 0)``.  Here the loss is the
  soft margin ``T logsumexp_{i != y} (f_i / T) - f_y`` (their remark's soft
  maximum; it is at least the margin, so ``l0 = 0`` still certifies
  correctness, and it is smooth).  ``C`` is the top eigenvalue of the Hessians at the given
  inputs, by Lanczos (ARPACK through :func:`scipy.sparse.linalg.eigsh`) on
  Hessian-vector products: again a data-set maximum, an estimate.

For an l_p norm other than 2, ``||v||_2^2 <= kappa ||v||_p^2`` with
``kappa = d^(1 - 2/p)`` for ``p >= 2`` (1 for ``p <= 2``) turns the same
Taylor bound into ``||v||_p >= (-||g||_{p*} + sqrt(||g||_{p*}^2 + 2 kappa C
gap)) / (kappa C)``; for ``p = 2`` this is the paper's C-bound.

A network with ReLUs or max pooling is piecewise linear: its margin's
Hessian is zero almost everywhere and the kinks between linear pieces are
invisible to Hessian-vector products, so no curvature bound is reported for
it (the result says why); :func:`smooth_relus` swaps its ReLUs for
:class:`SmoothReLU`.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from .attacks import AttackError, dual_exponent, norm_name, parse_norm
from .gradients import _to_model, check_batch, eval_mode

__all__ = [
    "SmoothReLU",
    "smooth_relus",
    "non_smooth_layers",
    "margins",
    "top_hessian_eigenvalue",
    "robustness_bounds",
]

#: Layers whose output is not twice continuously differentiable in their input.
NON_SMOOTH = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.Hardtanh, nn.Hardswish,
    nn.Hardsigmoid, nn.Hardshrink, nn.Softshrink, nn.Threshold, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)
DENSE_LIMIT = 32  # Hessians of at most this many coordinates are formed densely


class SmoothReLU(nn.Module):
    """Finlay & Oberman's twice continuously differentiable ReLU (their Remark 2.2).

    ``max(x, 0)`` for ``|x| >= 1/2``, ``-(x + 1/2)^4 / 2 + (x + 1/2)^3`` between:
    value, slope and curvature match at ``x = +-1/2``.

    Examples
    --------
    >>> SmoothReLU()(torch.tensor([-1.0, -0.5, 0.0, 0.5, 2.0]))
    tensor([0.0000, 0.0000, 0.0938, 0.5000, 2.0000])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x + 0.5
        return torch.where(x.abs() >= 0.5, torch.relu(x), s**3 - 0.5 * s**4)


def smooth_relus(model: nn.Module, inplace: bool = False) -> nn.Module:
    """``model`` with every ``nn.ReLU`` module replaced by :class:`SmoothReLU` (a copy unless ``inplace``).

    Functional ``relu`` calls inside ``forward`` and other non-smooth layers
    (max pooling) stay: :func:`non_smooth_layers` lists what remains.

    Examples
    --------
    >>> net = smooth_relus(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()))
    >>> net[1], non_smooth_layers(net)
    (SmoothReLU(), [])
    """
    model = model if inplace else copy.deepcopy(model)
    for module in list(model.modules()):
        for name, child in module.named_children():
            if type(child) is nn.ReLU:
                setattr(module, name, SmoothReLU())
    return model


def non_smooth_layers(model: nn.Module) -> list:
    """Names and types of the sub-modules that are not twice differentiable (ReLU, max pooling ...).

    Only modules are seen: a ``torch.relu`` call inside a ``forward`` is not.

    >>> non_smooth_layers(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()))
    ['1 (ReLU)']
    """
    return [f"{name} ({type(m).__name__})" for name, m in model.named_modules() if isinstance(m, NON_SMOOTH)]


def margins(logits: torch.Tensor, y: torch.Tensor, soft: bool = False, temperature: float = 1.0) -> torch.Tensor:
    """``max_{i != y} f_i - f_y`` per row, or its smooth upper bound ``T logsumexp_{i != y} (f_i / T) - f_y`` if ``soft``.

    The margin is negative exactly when the class ``y`` wins; the soft margin
    exceeds it by at most ``T log(K - 1)``, so a negative soft margin also
    means ``y`` wins.

    >>> margins(torch.tensor([[2.0, 0.5, 1.0]]), torch.tensor([0]))
    tensor([-1.])
    """
    own = logits.gather(1, y[:, None])[:, 0]
    others = logits.masked_fill(torch.arange(logits.shape[1], device=logits.device) == y[:, None], -math.inf)
    return (temperature * (others / temperature).logsumexp(1) if soft else others.amax(1)) - own


def _margin_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, soft: bool, create_graph: bool = False,
                      temperature: float = 1.0):
    """Per-sample margins and their input gradients (model in eval mode: samples independent)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = model(x)
        if logits.dim() != 2 or logits.shape[1] < 2:
            raise AttackError(f"the model must return logits of shape B x K with K >= 2, got {tuple(logits.shape)}")
        if int(y.min()) < 0 or int(y.max()) >= logits.shape[1]:
            raise AttackError(f"labels must lie in 0..{logits.shape[1] - 1}, got {int(y.min())}..{int(y.max())}")
        values = margins(logits, y, soft, temperature)
        (grad,) = torch.autograd.grad(values.sum(), x, create_graph=create_graph)
    return values, grad, x


def top_hessian_eigenvalue(model: nn.Module, x: torch.Tensor, y: torch.Tensor, tol: float = 1e-8, seed: int = 0,
                           temperature: float = 1.0) -> dict:
    """The largest eigenvalue of the soft margin's input Hessian, maximised over the inputs.

    The Hessian of ``sum_i l(x_i)`` in the stacked inputs is block diagonal
    (eval mode: samples do not interact), so its top eigenvalue is
    ``max_i lambda_max(grad^2 l(x_i))``: one Lanczos run (ARPACK,
    ``scipy.sparse.linalg.eigsh``, ``which="LA"``) on Hessian-vector products
    (double backpropagation through one retained graph) finds it.  Up to
    :data:`DENSE_LIMIT` coordinates, the Hessian is formed and diagonalised.

    Returns
    -------
    dict
        ``value`` (float), ``matvecs`` (Hessian-vector products used), ``method``.

    Examples
    --------
    A two-class linear model's soft margin ``f_other - f_y`` is affine: no curvature.

    >>> top = top_hessian_eigenvalue(torch.nn.Linear(3, 2), torch.rand(4, 3), torch.tensor([0, 1, 0, 1]))
    >>> top["value"], top["method"]
    (0.0, 'dense Hessian (12 Hessian-vector products), symmetric eigensolver')
    """
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    check_batch(x, y)
    x0, y0 = _to_model(model, x, y)
    n = x0.numel()
    with eval_mode(model):
        _, grad, leaf = _margin_gradients(model, x0, y0, soft=True, create_graph=True, temperature=temperature)
        count = [0]

        def matvec(vector: np.ndarray) -> np.ndarray:
            count[0] += 1
            tangent = torch.as_tensor(np.ascontiguousarray(vector).reshape(x0.shape), dtype=x0.dtype, device=x0.device)
            (hv,) = torch.autograd.grad(grad, leaf, tangent, retain_graph=True)
            return hv.detach().double().cpu().numpy().ravel()

        if not grad.requires_grad or torch.autograd.grad(grad.sum(), leaf, retain_graph=True, allow_unused=True)[0] is None:
            return {"value": 0.0, "matvecs": 0, "method": "zero: the gradient does not depend on the input (affine model)"}
        if n <= DENSE_LIMIT:
            dense = np.stack([matvec(e) for e in np.eye(n)], axis=1)
            value = float(np.linalg.eigvalsh((dense + dense.T) / 2)[-1])
            method = f"dense Hessian ({n} Hessian-vector products), symmetric eigensolver"
        else:
            operator = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
            v0 = np.random.default_rng(seed).standard_normal(n)
            if not np.any(matvec(v0)):  # e.g. an affine model's soft margin with two classes
                return {"value": 0.0, "matvecs": count[0], "method": "zero: the Hessian maps a random vector to zero"}
            try:
                value = float(eigsh(operator, k=1, which="LA", tol=tol, v0=v0, return_eigenvectors=False)[0])
                method = f"Lanczos (ARPACK eigsh, which='LA', tol={tol:g}) on Hessian-vector products"
            except ArpackNoConvergence as exc:
                if not len(exc.eigenvalues):
                    raise
                value = float(exc.eigenvalues[-1])
                method = "Lanczos (ARPACK eigsh) on Hessian-vector products, NOT converged: the last Ritz value"
    return {"value": value + 0.0, "matvecs": count[0], "method": method}


def _quadratic_bound(gap: torch.Tensor, grad_norm: torch.Tensor, curvature: float) -> torch.Tensor:
    """The positive root ``r`` of ``(c/2) r^2 + g r = gap``, computed without cancellation.

    ``(-g + sqrt(g^2 + 2 c gap)) / c = 2 gap / (g + sqrt(g^2 + 2 c gap))``; at ``c = 0``
    it is ``gap / g`` (infinite for a zero gradient and a positive gap).
    """
    root = grad_norm + torch.sqrt(grad_norm**2 + 2 * curvature * gap)
    return torch.where(gap > 0, 2 * gap / root, torch.zeros_like(gap))


def robustness_bounds(model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm=2, *, lipschitz: float | None = None,
                      curvature: float | None = None, smooth: bool | None = None, temperature: float = 1.0, seed: int = 0) -> dict:
    """Finlay & Oberman's Proposition 2.1: per-image lower bounds on the minimal adversarial l_p distance.

    Parameters
    ----------
    model : nn.Module
        Returns logits; run in eval mode (its mode is restored).
    x, y : Tensor
        Inputs ``B x ...`` and labels ``B``; the constants are estimated on them.
    norm : {2, "inf", 1}
        The norm distances are measured in.
    lipschitz, curvature : float, optional
        Constants estimated elsewhere (e.g. on the training set); by default the
        maximum over ``x`` (an estimate, not a certificate).
    smooth : bool, optional
        Whether the model is twice differentiable; by default, True when it has
        no ReLU, max pooling or other non-smooth module.
    temperature : float
        ``T`` of the soft margin of the curvature bound: it exceeds the margin
        by up to ``T log(K - 1)`` (a smaller gap) but has curvature ~ ``1/T``;
        choose it on the scale of the logit differences.
    seed : int
        Seeds Lanczos' start vector.

    Returns
    -------
    dict
        ``gap`` (``max(-margin, 0)``), ``correct``, ``lipschitz_bound``,
        ``lipschitz_constant``, ``lipschitz_estimate`` (how), ``curvature_bound``,
        ``curvature_constant``, ``curvature_estimate`` (how, or why there is no
        curvature bound), ``twice_differentiable``, ``non_smooth_layers``,
        ``norm``, ``n``.  Per-image values are tensors ``B``.

    Examples
    --------
    A two-class linear model: the L-bound is the exact distance to its boundary.

    >>> model = torch.nn.Linear(2, 2)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    ...     _ = model.bias.zero_()
    >>> result = robustness_bounds(model, torch.tensor([[0.3, 0.2]]), torch.tensor([0]))
    >>> result["lipschitz_bound"], result["curvature_bound"]
    (tensor([0.3000]), tensor([0.3000]))
    """
    check_batch(x, y)
    p = parse_norm(norm)
    q = dual_exponent(p)
    x0, y0 = _to_model(model, x, y)
    n, d = x0.shape[0], x0[0].numel()
    non_smooth = non_smooth_layers(model)
    twice = (not non_smooth) if smooth is None else bool(smooth)
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise AttackError(f"temperature must be a finite number > 0, got {temperature!r}")
    for name, value in (("lipschitz", lipschitz), ("curvature", curvature)):
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise AttackError(f"{name} must be a finite number >= 0, got {value!r}")

    with eval_mode(model):
        margin, grad, _ = _margin_gradients(model, x0, y0, soft=False)
    gap = (-margin.detach()).clamp(min=0)
    grad_norms = torch.linalg.vector_norm(grad.flatten(1), ord=q, dim=1)
    q_name = "inf" if q == math.inf else f"{q:g}"
    if lipschitz is None:
        lipschitz = float(grad_norms.max())
        l_how = (f"max over the {n} given inputs of ||grad_x margin||_{q_name}: a data-set maximum, an estimate of the "
                 "Lipschitz constant, not a certificate")
    else:
        l_how = "given by the caller"
    result = {
        "norm": norm_name(p),
        "n": n,
        "loss": "margin max_{i != y} f_i - f_y (l0 = 0)",
        "gap": gap,
        "correct": margin.detach() < 0,
        "lipschitz_bound": gap / lipschitz if lipschitz > 0 else torch.where(gap > 0, math.inf, 0.0).to(gap),
        "lipschitz_constant": lipschitz,
        "lipschitz_estimate": l_how,
        "twice_differentiable": twice,
        "non_smooth_layers": non_smooth,
        "curvature_bound": None,
        "curvature_constant": None,
    }
    if not twice:
        result["curvature_estimate"] = (
            f"no curvature bound: the model has {', '.join(non_smooth[:3])}{' ...' if len(non_smooth) > 3 else ''}, so it is "
            "piecewise linear: its Hessian is zero almost everywhere and the kinks are invisible to Hessian-vector "
            "products; swap the ReLUs with smooth_relus(model) (Finlay & Oberman's smooth ReLU)"
        )
        return result

    with eval_mode(model):
        soft, soft_grad, _ = _margin_gradients(model, x0, y0, soft=True, temperature=temperature)
    soft_gap = (-soft.detach()).clamp(min=0)
    soft_norms = torch.linalg.vector_norm(soft_grad.flatten(1), ord=q, dim=1)
    kappa = float(d) ** (1 - 2 / p) if p > 2 else 1.0
    if curvature is None:
        top = top_hessian_eigenvalue(model, x0, y0, seed=seed, temperature=temperature)
        curvature = max(top["value"], 0.0)
        c_how = (f"max over the {n} given inputs of the top eigenvalue of the soft margin's Hessian, clipped at 0, by "
                 f"{top['method']}: a data-set maximum, an estimate, not a certificate")
    else:
        c_how = "given by the caller"
    if kappa != 1:
        c_how += f"; l_{norm_name(p)} distances use ||v||_2^2 <= d^(1-2/p) ||v||_p^2 (factor {kappa:g})"
    result.update(
        soft_gap=soft_gap,
        curvature_bound=_quadratic_bound(soft_gap, soft_norms, kappa * curvature),
        curvature_constant=curvature,
        curvature_estimate=c_how,
        curvature_loss=f"soft margin T logsumexp_{{i != y}} (f_i / T) - f_y, T = {temperature:g} (l0 = 0)",
    )
    return result
