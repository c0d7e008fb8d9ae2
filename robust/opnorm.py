"""Data-dependent operator norms of the logit Jacobian (Roth et al., NeurIPS 2020).

The ``(p, q)``-operator norm of the logit Jacobian ``J = J_f(x)`` (``K x d``) at
an input ``x`` is ``||J||_{p,q} = max_{||v||_p = 1} ||J v||_q`` (their eq. 8):
the largest logit change, in l_q, that an l_p unit step of the linearised
network can cause.  :func:`operator_norm` computes it per image with its
maximiser ``v``:

* exactly where it is computable (their Table 1): ``p = 1`` (the largest l_q
  norm of a column), ``q = inf`` (the largest l_{p*} norm of a row) and
  ``p = q = 2`` (the largest singular value).  The logit Jacobian has only
  ``K`` rows, so it is formed exactly (``K`` backward passes); and ``q = 1``
  is exact too: ``||J||_{p,1} = max_{s in {-1,1}^K} ||J^T s||_{p*}`` (duality)
  enumerates ``2^(K-1)`` sign vectors in logit space (Table 1's NP-hardness is
  in the input dimension ``d``), done for ``K <= 16``;
* elsewhere (e.g. ``p = inf, q = 2``) by their power-method limit of the
  operator norm iteration (eq. 12), which returns ``||J v||_q`` for a unit
  ``v``: a **lower bound**, and labelled so (``result.exact`` is False).

:func:`operator_norm_penalty` is the differentiable training term of their
eq. 13: the power iteration without a graph, then ``||J v||_q`` with one.
:func:`logit_pgd` is their l_q logit-loss attack (ascent on
``||f(x + delta) - f(x)||_q``), whose perturbation aligns with ``v`` for small
radii (their Theorem 1).

Examples
--------
A linear model's Jacobian is its weight matrix:

>>> import torch
>>> model = torch.nn.Linear(3, 2, bias=False)
>>> with torch.no_grad():
...     model.weight.copy_(torch.tensor([[3.0, 0.0, 0.0], [0.0, 4.0, 0.0]]))
Parameter ...
>>> result = operator_norm(model, torch.zeros(1, 3), p=2, q=2)
>>> norms, v = result
>>> norms, result.method, result.exact
(tensor([4.]), 'spectral norm of the exact Jacobian (SVD)', True)
>>> operator_norm(model, torch.zeros(1, 3), p="inf", q="inf")[0]
tensor([4.])
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.autograd.forward_ad as fwAD
from torch import nn

from pathstats.errors import OperatorNormError

from .attacks import PGD_STEP_FRAC, _ascend, _check_bounds, _check_eps, _check_count, _generator, step_for
from .gradients import _to_model, check_batch, eval_mode

__all__ = [
    "OperatorNormError",
    "OperatorNormResult",
    "operator_norm",
    "operator_norm_penalty",
    "power_iteration",
    "logit_jacobian",
    "exact_operator_norm",
    "exact_method",
    "dual_map",
    "norm_exponent",
    "logit_pgd",
    "alignment",
]

MAX_SIGN_CLASSES = 16  # q = 1 is exact by enumerating 2^(K-1) sign vectors up to this K
JACOBIAN_ENTRIES = 2**26  # exact Jacobians are formed for chunks of the batch of at most this many numbers


class OperatorNormResult(tuple):
    """``(norms, v)``, which also says how the norms were computed.

    Attributes
    ----------
    norms : Tensor[B]
        ``||J_f(x_i)||_{p,q}`` (or a lower bound of it, when ``exact`` is False).
    v : Tensor
        The maximiser, shaped like ``x``, ``||v_i||_p = 1``.
    method : str
        How the norms were computed, in words.
    exact : bool
        True where the norm is exact (up to floating point), False for the
        power iteration's lower bound.
    """

    def __new__(cls, norms: torch.Tensor, v: torch.Tensor, method: str, exact: bool):
        self = super().__new__(cls, (norms, v))
        self.method, self.exact = method, exact
        return self

    @property
    def norms(self) -> torch.Tensor:
        return self[0]

    @property
    def v(self) -> torch.Tensor:
        return self[1]


# ----------------------------------------------------------------------------- exponents and dual maps


def norm_exponent(p) -> float:
    """An l_p exponent in ``[1, inf]`` from ``"inf"``, ``float("inf")``, ``2``, ``"2"`` ...

    >>> norm_exponent("inf"), norm_exponent(2), norm_exponent("1.5")
    (inf, 2.0, 1.5)
    """
    try:
        value = float(p)
    except (TypeError, ValueError):
        raise OperatorNormError(f"norm exponent must be a number >= 1 or 'inf', got {p!r}") from None
    if not value >= 1:  # also refuses NaN
        raise OperatorNormError(f"norm exponent must be a number >= 1 or 'inf', got {p!r}")
    return value


def _dual(p: float) -> float:
    return math.inf if p == 1 else 1.0 if p == math.inf else p / (p - 1)


def _norms(z: torch.Tensor, p: float) -> torch.Tensor:
    """l_p norm of each sample (all but the first axis)."""
    return torch.linalg.vector_norm(z.flatten(1), ord=p, dim=1)


def dual_map(z: torch.Tensor, p) -> torch.Tensor:
    """Per sample, the unit-l_p vector ``v`` maximising ``<v, z>`` (Roth et al.'s eq. 16).

    ``v = sign(z) |z|^(p*-1) / ||z||_{p*}^(p*-1)``; for ``p = inf`` it is
    ``sign(z)``, for ``p = 1`` the sign vector spread evenly over the entries
    where ``|z|`` is largest.  ``<v, z> = ||z||_{p*}``; a zero ``z`` maps to zero.

    >>> dual_map(torch.tensor([[3.0, -4.0]]), 2)
    tensor([[ 0.6000, -0.8000]])
    >>> dual_map(torch.tensor([[3.0, -4.0, 4.0]]), 1)
    tensor([[ 0.0000, -0.5000,  0.5000]])
    """
    p = norm_exponent(p)
    flat = z.flatten(1)
    if p == math.inf:
        v = torch.sign(flat)
    elif p == 1:
        top = flat.abs() == flat.abs().amax(dim=1, keepdim=True)
        top &= flat != 0
        v = torch.sign(flat) * top / top.sum(dim=1, keepdim=True).clamp(min=1)
    else:
        ps = _dual(p)
        scale = _norms(flat, ps).clamp(min=torch.finfo(flat.dtype).tiny) ** (ps - 1)
        v = torch.sign(flat) * flat.abs() ** (ps - 1) / scale[:, None]
    return v.reshape(z.shape)


# ----------------------------------------------------------------------------- Jacobian products


def _jvp(model: nn.Module, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``J_f(x) v`` per sample, by forward-mode differentiation (for values, not weight gradients)."""
    with fwAD.dual_level():
        return fwAD.unpack_dual(model(fwAD.make_dual(x, v))).tangent


def _vjp(model: nn.Module, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``J_f(x)^T u`` per sample."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        return torch.autograd.grad(model(x), x, u)[0]


def _penalty_terms(model: nn.Module, x: torch.Tensor, v: torch.Tensor, q: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(||J v||_q, f(x))`` per sample, with the weight gradient of ``<J^T s, v>``, ``s = dual_map(J v, q*)`` fixed.

    One forward pass in the model's mode, then backward passes only: ``J v`` by
    the double-backward trick (the gradient in ``u`` of ``<J^T u, v>``, values
    only), then ``J^T s`` with a graph.  ``<s, J v> = ||J v||_q`` and
    ``d||z||_q/dz = s``, so the weight gradient of the sum is that of
    ``sum_i ||J_i v_i||_q``, and it needs only second derivatives.  Neither
    ``J v`` as a forward-mode tangent nor by double backward can carry that
    gradient: PyTorch differentiates neither exactly through train-mode
    BatchNorm's batch statistics (``tests/robust/test_opnorm.py`` checks against finite
    differences).  The values returned are ``||(J V)_i||_q``; without batch
    coupling (no train-mode BatchNorm) each carries its own gradient, with it
    only the batch's sum (or mean) has the exact gradient.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = model(x)
        u = torch.zeros_like(logits, requires_grad=True)
        (jtu,) = torch.autograd.grad(logits, x, u, create_graph=True)
        (jv,) = torch.autograd.grad(jtu, u, v)
        s = dual_map(jv.detach(), _dual(q))
        (jts,) = torch.autograd.grad(logits, x, s, create_graph=True)
    terms = (jts * v).flatten(1).sum(dim=1)
    # values ||(J V)_i||_q exactly per sample; the graph (hence the gradient of the batch sum) is the terms'
    return _norms(jv, q) + (terms - terms.detach()), logits


def logit_jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The exact logit Jacobian of each sample, ``B x K x d`` (``K`` backward passes, eval mode).

    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> bool((logit_jacobian(model, torch.rand(2, 1, 2, 2))[1] == model[1].weight).all())
    True
    """
    with eval_mode(model), torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = model(x)
        rows = []
        for k in range(out.shape[1]):
            onehot = torch.zeros_like(out)
            onehot[:, k] = 1
            rows.append(torch.autograd.grad(out, x, onehot, retain_graph=k + 1 < out.shape[1])[0].flatten(1))
    return torch.stack(rows, dim=1).detach()


def _sign_vectors(k: int, dtype, device) -> torch.Tensor:
    """The ``2^(k-1)`` sign vectors of length ``k`` with a first entry +1 (one per pair +-s)."""
    signs = torch.tensor(list(itertools.product((1.0, -1.0), repeat=k - 1)), dtype=dtype, device=device).reshape(2 ** (k - 1), k - 1)
    return torch.cat([torch.ones(len(signs), 1, dtype=dtype, device=device), signs], dim=1)


def exact_method(p: float, q: float, classes: int) -> str | None:
    """How ``||J||_{p,q}`` of a ``classes``-row Jacobian is computed exactly, or None if it is not.

    >>> exact_method(1, 2, 10), exact_method(float("inf"), 2, 10)
    ('largest l_2 norm of a column of the exact Jacobian', None)
    """
    p, q = norm_exponent(p), norm_exponent(q)
    if p == 1:
        return f"largest l_{_name(q)} norm of a column of the exact Jacobian"
    if q == math.inf:
        return f"largest l_{_name(_dual(p))} norm of a row of the exact Jacobian"
    if p == 2 and q == 2:
        return "spectral norm of the exact Jacobian (SVD)"
    if q == 1 and classes <= MAX_SIGN_CLASSES:
        return f"largest l_{_name(_dual(p))} norm of J^T s over the 2^{classes - 1} logit sign vectors s of the exact Jacobian"
    return None


def _name(p: float) -> str:
    return "inf" if p == math.inf else f"{p:g}"


def exact_operator_norm(jacobian: torch.Tensor, p, q) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``||J_i||_{p,q}`` and a maximiser for a batch of ``B x K x d`` matrices.

    Only for the exponents where :func:`exact_method` names a method.

    >>> J = torch.tensor([[[1.0, -2.0], [3.0, 1.0]]])
    >>> exact_operator_norm(J, 1, 1)
    (tensor([4.]), tensor([[1., 0.]]))
    >>> exact_operator_norm(J, "inf", 1)[0]  # max over s in {+-1}^2 of ||J^T s||_1
    tensor([5.])
    """
    p, q = norm_exponent(p), norm_exponent(q)
    b, k, d = jacobian.shape
    if exact_method(p, q, k) is None:
        raise OperatorNormError(f"the ({_name(p)}, {_name(q)}) operator norm of a {k}-row matrix has no exact method here; use the power iteration")
    rows = torch.arange(b, device=jacobian.device)
    if p == 1:
        columns = torch.linalg.vector_norm(jacobian, ord=q, dim=1)  # B x d
        norms, j = columns.max(dim=1)
        v = torch.zeros(b, d, dtype=jacobian.dtype, device=jacobian.device)
        v[rows, j] = 1.0
        return norms, v
    if q == math.inf:
        row_norms = torch.linalg.vector_norm(jacobian, ord=_dual(p), dim=2)  # B x K
        norms, i = row_norms.max(dim=1)
        return norms, dual_map(jacobian[rows, i], p)
    if p == 2 and q == 2:
        _, s, vh = torch.linalg.svd(jacobian, full_matrices=False)
        return s[:, 0], vh[:, 0]
    # q = 1: ||J||_{p,1} = max_s ||J^T s||_{p*}, s in {-1, 1}^K
    signs = _sign_vectors(k, jacobian.dtype, jacobian.device)  # S x K
    norms, best = [], []
    chunk = max(1, 2**24 // max(1, len(signs) * d))
    for start in range(0, b, chunk):
        z = torch.einsum("sk,bkd->bsd", signs, jacobian[start : start + chunk])
        n, i = torch.linalg.vector_norm(z, ord=_dual(p), dim=2).max(dim=1)
        norms.append(n)
        best.append(z[torch.arange(len(i), device=z.device), i])
    return torch.cat(norms), dual_map(torch.cat(best), p)


# ----------------------------------------------------------------------------- the power iteration


def _unit_start(x: torch.Tensor, p: float, seed: int | None) -> torch.Tensor:
    generator = None if seed is None else torch.Generator(device=x.device).manual_seed(seed)
    v = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return v / _norms(v, p).clamp(min=torch.finfo(x.dtype).tiny).reshape((-1,) + (1,) * (x.dim() - 1))


def power_iteration(model: nn.Module, x: torch.Tensor, p, q, iters: int = 50, seed: int | None = None) -> torch.Tensor:
    """The maximiser ``v`` after ``iters`` steps of Roth et al.'s eq. 12, no graph, in eval mode.

    ``u <- dual_map(J v, q*)``, ``v <- dual_map(J^T u, p)`` from a seeded
    Gaussian start; every step does one forward-mode and one backward pass.
    ``||J v_k||_q`` never decreases with ``k`` (Hoelder), so it is a lower bound
    of ``||J||_{p,q}`` that improves with ``iters``.
    """
    p, q = norm_exponent(p), norm_exponent(q)
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
        raise OperatorNormError(f"iters must be a non-negative integer, got {iters!r}")
    x = _to_model(model, x)[0]
    v = _unit_start(x, p, seed)
    with eval_mode(model), torch.no_grad():
        for _ in range(iters):
            u = dual_map(_jvp(model, x, v), _dual(q))
            v = dual_map(_vjp(model, x, u), p)
    return v


def operator_norm(model: nn.Module, x: torch.Tensor, p, q, iters: int = 50, seed: int | None = None, *, method: str = "auto") -> OperatorNormResult:
    """The ``(p, q)``-operator norm of the logit Jacobian at each input, and its maximiser.

    Parameters
    ----------
    model : nn.Module
        Maps a batch ``B x ...`` to logits ``B x K``; run in eval mode (its mode
        is restored).
    x : Tensor
        The inputs, on the model's device.
    p, q : float or str
        Domain and co-domain exponents in ``[1, inf]`` (``"inf"`` allowed).
    iters : int
        Power iterations (only where the norm is not computed exactly).
    seed : int, optional
        Seed of the power iteration's random start.
    method : {"auto", "exact", "power"}
        ``auto``: exact where computable, else the power iteration; ``exact``
        refuses the other exponents; ``power`` always iterates.

    Returns
    -------
    OperatorNormResult
        Unpacks as ``(norms, v)``; ``.exact`` and ``.method`` say how the
        norms were computed (the power iteration gives a lower bound).

    Examples
    --------
    >>> torch.manual_seed(0) and None
    >>> model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    >>> x = torch.randn(4, 5)
    >>> exact = operator_norm(model, x, 2, 2)
    >>> power = operator_norm(model, x, 2, 2, iters=100, seed=0, method="power")
    >>> power.exact, bool(torch.allclose(power.norms, exact.norms, rtol=1e-4))
    (False, True)
    >>> operator_norm(model, x, "inf", 2, seed=0).method
    'power iteration (Roth et al. eq. 12), 50 steps: a lower bound'
    """
    check_batch(x)
    p, q = norm_exponent(p), norm_exponent(q)
    if method not in ("auto", "exact", "power"):
        raise OperatorNormError(f"method must be 'auto', 'exact' or 'power', got {method!r}")
    x = _to_model(model, x)[0]
    if method != "power":
        with eval_mode(model), torch.no_grad():
            classes = model(x[:1]).shape[1]
        how = exact_method(p, q, classes)
        if how is not None:
            # B x K x d Jacobians, formed for a chunk of at most JACOBIAN_ENTRIES numbers at a time
            chunk = max(1, JACOBIAN_ENTRIES // (classes * x[0].numel()))
            parts = [exact_operator_norm(logit_jacobian(model, x[i : i + chunk]), p, q) for i in range(0, len(x), chunk)]
            norms, v = torch.cat([n for n, _ in parts]), torch.cat([v for _, v in parts])
            return OperatorNormResult(norms, v.reshape(x.shape), how, True)
        if method == "exact":
            raise OperatorNormError(
                f"the ({_name(p)}, {_name(q)}) operator norm is not computable exactly (Roth et al., Table 1): "
                "exact are p = 1, q = inf, p = q = 2, and q = 1 for at most 16 classes; use method='power' for a lower bound"
            )
    v = power_iteration(model, x, p, q, iters, seed)
    with eval_mode(model), torch.no_grad():
        norms = _norms(_jvp(model, x, v), q)
    return OperatorNormResult(norms, v, f"power iteration (Roth et al. eq. 12), {iters} steps: a lower bound", False)


def operator_norm_penalty(
    model: nn.Module, x: torch.Tensor, p, q, iters: int = 10, seed: int | None = None, *, return_logits: bool = False
):
    """Roth et al.'s eq. 13 training term ``||J_f(x) v||_q`` per sample, differentiable in the weights.

    ``v`` comes from :func:`power_iteration` (eval mode, no graph, so BatchNorm
    statistics are untouched); then one forward pass in the model's own mode and
    three backward passes give ``J v`` and, with a graph, ``<J^T s, v>`` for the
    fixed ``s = dual_map(J v, q*)``: equal to ``||J v||_q``, with its weight
    gradient (a forward-mode tangent would be cheaper, but PyTorch's weight
    gradient through it is wrong for train-mode BatchNorm).  In train mode
    BatchNorm normalises by batch statistics, so that ``J`` is the Jacobian of
    the batch's map (it couples the samples, as in training): the values are
    then ``||(J V)_i||_q`` and only their sum (or mean, what training uses) has
    the exact weight gradient.
    With ``return_logits=True`` the same pass also returns the logits, so the
    classification loss needs no second forward (and BatchNorm's running
    statistics are updated once).

    Examples
    --------
    >>> model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    >>> penalty, logits = operator_norm_penalty(model, torch.randn(4, 5), 2, 2, iters=5, seed=0, return_logits=True)
    >>> penalty.shape, logits.shape, penalty.requires_grad
    (torch.Size([4]), torch.Size([4, 3]), True)
    """
    check_batch(x)
    q_value = norm_exponent(q)
    v = power_iteration(model, x, p, q_value, iters, seed)
    penalty, logits = _penalty_terms(model, x, v, q_value)
    return (penalty, logits) if return_logits else penalty


# ----------------------------------------------------------------------------- Theorem 1


def logit_pgd(model: nn.Module, x: torch.Tensor, eps: float, norm=2, q=2, steps: int = 10, step_size: float | None = None,
              bounds=(0.0, 1.0), seed: int | None = None) -> torch.Tensor:
    """l_p PGD on Roth et al.'s logit loss ``||f(x + delta) - f(x)||_q`` (their Theorem 1's attack).

    The attack loop of :func:`pathstats.robust.attacks.pgd` (same steps,
    projections and box clipping), ascending this logit-space loss instead of
    the cross-entropy; it always starts uniformly in the ball (the loss has no
    gradient at ``delta = 0``).  ``step_size=None`` means ``0.2 * eps``.

    Examples
    --------
    >>> model = torch.nn.Linear(4, 3)
    >>> x = torch.rand(5, 4)
    >>> x_adv = logit_pgd(model, x, eps=0.1, seed=0)
    >>> bool(((x_adv - x).norm(dim=1) <= 0.1 + 1e-6).all())
    True
    """
    check_batch(x)
    step, eps = step_for(norm), _check_eps(eps)
    q = norm_exponent(q)
    _check_count("steps", steps, 0)
    step_size = _check_eps(PGD_STEP_FRAC * eps if step_size is None else step_size)
    bounds = _check_bounds(x, bounds)
    x0 = _to_model(model, x)[0]
    start = step.random_start(x0, eps, _generator(x0.device, seed))
    with eval_mode(model):
        with torch.no_grad():
            clean = model(x0)

        def gradient(xk: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():
                xk = xk.detach().requires_grad_(True)
                return torch.autograd.grad(_norms(model(xk) - clean, q).sum(), xk)[0]

        x_adv = _ascend(model, x0, None, eps, step, steps, step_size, start, bounds, gradient=gradient)
    return x_adv.to(x.device).contiguous()


def alignment(model: nn.Module, x: torch.Tensor, p, q, eps: float, steps: int = 10, seed: int | None = None) -> torch.Tensor:
    """``|cos|`` between the logit-loss PGD perturbation and the operator norm's maximiser ``v``.

    Roth et al.'s Theorem 1: for radii small enough that the network is linear
    in the ball, and in the limit of infinite step size, l_p PGD on
    ``||f(x + delta) - f(x)||_q`` is the power-method iteration of the
    ``(p, q)``-operator norm, so ``delta`` lines up with ``v`` (up to sign).  The
    PGD runs with step ``1e6 * eps`` (the limit: each step lands on the
    maximiser of the linearised loss) and no box; ``v`` comes from
    :func:`operator_norm` (exact where computable).  Only ``p`` in 1, 2, inf
    (the attack norms).

    Examples
    --------
    >>> torch.manual_seed(0) and None
    >>> model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    >>> cosines = alignment(model, torch.randn(3, 6), 2, 2, eps=1e-3, steps=50, seed=0)
    >>> bool((cosines > 0.999).all())
    True
    """
    unbounded = (-math.inf, math.inf)
    delta = logit_pgd(model, x, eps, norm=p, q=q, steps=steps, step_size=1e6 * float(eps), bounds=unbounded, seed=seed) - x
    v = operator_norm(model, x, p, q, seed=seed).v.to(delta.device)
    cos = (delta.flatten(1) * v.flatten(1)).sum(1) / (delta.flatten(1).norm(dim=1) * v.flatten(1).norm(dim=1)).clamp(min=1e-30)
    return cos.abs()
