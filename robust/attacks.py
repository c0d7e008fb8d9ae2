"""Batched gradient attacks: PGD, the fast gradient method and DeepFool.

One ascent loop serves every norm: a *step* object per norm knows its steepest
ascent direction (the unit-norm ``delta`` maximising ``<g, delta>``), its projection
onto the ball of radius ``eps`` and its uniform random start.  The conventions are
foolbox 3's, so numbers compare across tools:

* the loss is the cross-entropy summed over the batch (per-sample gradients);
* each step is ``x + step_size * direction(g)``, then the projection of ``x - x0``
  onto the ball, then clipping to the box ``bounds`` (project, then clip);
* l_inf steps along ``sign(g)``; l2 along ``g / max(||g||_2, 1e-12)`` per sample;
  l1 moves the coordinate(s) of largest ``|g|`` (steepest ascent on the l1 ball);
* the random start is uniform in the ball (l_inf: in the cube; l2: a normalised
  Gaussian direction times ``eps U^(1/d)``; l1: uniform in the cross-polytope);
* ``step_size=None`` means ``0.2 * eps`` (the paper's Section 4.1).

Every attack runs the model in eval mode (BatchNorm statistics are never updated)
and restores each sub-module's mode, computes on the model's device, returns a
tensor on ``x``'s device, and draws its randomness from a ``torch.Generator`` seeded
by ``seed`` (never the global generator).  Radii are in the attack's own norm; on the
command line ``--eps`` is the dimension-free ``eps_inf`` and :func:`lp_radius` turns
it into ``eps_p = eps_inf d^(1/p)`` (the paper's eq. 3).
"""

from __future__ import annotations

import contextlib

import math
from typing import Sequence

import torch
from torch import nn

from .gradients import AttackError, loss_and_input_gradients, _to_model, check_batch, eval_mode, model_device

__all__ = [
    "AttackError",
    "Step",
    "LinfStep",
    "L2Step",
    "L1Step",
    "step_for",
    "parse_norm",
    "norm_name",
    "dual_exponent",
    "lp_radius",
    "pgd",
    "fgm",
    "deepfool",
    "DEEPFOOL_NUDGE",
    "PGD_STEPS",
    "PGD_STEP_FRAC",
]

#: PGD's steps and step size (a fraction of the radius) wherever none is given: the paper's
#: Section 4.1 (7 steps of 0.2 eps, after Madry et al.).  The one home of these numbers:
#: training PGD, the per-epoch evaluation and ``pathstats attack`` read them here.
PGD_STEPS = 7
PGD_STEP_FRAC = 0.2

#: Added to each DeepFool step's distance to the linearised boundary (foolbox's value),
#: so that the step crosses the boundary instead of landing on it.
DEEPFOOL_NUDGE = 1e-4


def parse_norm(norm, flag: str = "norm") -> float:
    """Read ``"inf"``, ``float("inf")``, ``2``, ``"2"``, ``1`` or ``"1"`` as ``p``.

    ``flag`` names the option in the error (``"--opnorm-p"``), so that a command's
    refusal says which of its options is wrong.

    Examples
    --------
    >>> parse_norm("inf"), parse_norm(2), parse_norm("1")
    (inf, 2.0, 1.0)
    >>> parse_norm(3)
    Traceback (most recent call last):
    ...
    pathstats.errors.AttackError: norm must be 'inf', 2 or 1, got 3
    >>> parse_norm("3", flag="--opnorm-p")
    Traceback (most recent call last):
    ...
    pathstats.errors.AttackError: --opnorm-p must be 'inf', 2 or 1, got '3'
    """
    try:
        p = float(norm)
    except (TypeError, ValueError):
        p = float("nan")
    if p not in (math.inf, 2.0, 1.0):
        raise AttackError(f"{flag} must be 'inf', 2 or 1, got {norm!r}")
    return p


def norm_name(norm, flag: str = "norm") -> str:
    """``"inf"``, ``"2"`` or ``"1"``: the norm as printed and written to JSON (``flag`` as in :func:`parse_norm`).

    >>> norm_name(float("inf")), norm_name(2)
    ('inf', '2')
    """
    p = parse_norm(norm, flag)
    return "inf" if p == math.inf else str(int(p))


def dual_exponent(norm) -> float:
    """The dual exponent ``q`` of ``p`` (``1/p + 1/q = 1``): inf -> 1, 2 -> 2, 1 -> inf.

    Examples
    --------
    >>> dual_exponent("inf"), dual_exponent(2), dual_exponent(1)
    (1.0, 2.0, inf)
    """
    p = parse_norm(norm)
    return 1.0 if p == math.inf else math.inf if p == 1.0 else p / (p - 1.0)


def lp_radius(eps_inf: float, d: int, norm) -> float:
    """The l_p radius ``eps_p = eps_inf d^(1/p)`` matching a pixel-wise size ``eps_inf`` (eq. 3).

    A perturbation of ``eps_inf`` on each of ``d`` coordinates has l_p norm
    ``eps_inf d^(1/p)``; scaling the radius so keeps attacks comparable across input
    dimensions.

    Examples
    --------
    >>> lp_radius(0.005, 3 * 32 * 32, "inf")
    0.005
    >>> round(lp_radius(0.005, 3 * 32 * 32, 2), 6)
    0.277128
    """
    p = parse_norm(norm)
    if not (isinstance(d, int) and d >= 1):
        raise AttackError(f"d must be a positive number of input coordinates, got {d!r}")
    eps_inf = float(eps_inf)
    if not (math.isfinite(eps_inf) and eps_inf >= 0):
        raise AttackError(f"eps_inf must be a finite number >= 0, got {eps_inf!r}")
    return eps_inf if p == math.inf else eps_inf * d ** (1.0 / p)


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a ``B`` vector to broadcast against ``like`` (``B x ...``)."""
    return values.reshape((-1,) + (1,) * (like.dim() - 1))


class Step:
    """What an attack needs to know about its norm ``p``.

    Subclasses define :meth:`direction` (the steepest ascent direction on the unit
    ball: ``argmax_{||delta||_p <= 1} <g, delta>``, per sample), :meth:`project` (the
    Euclidean projection, or foolbox's radial rescaling, of perturbations onto the
    ball of radius ``eps``) and :meth:`random_start` (uniform in that ball).
    """

    p: float = math.nan
    name: str = ""

    def direction(self, g: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def project(self, delta: torch.Tensor, eps: float) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def random_start(self, like: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def norms(self, delta: torch.Tensor) -> torch.Tensor:
        """Per-sample l_p norms of ``delta`` (``B x ...`` -> ``B``)."""
        return torch.linalg.vector_norm(delta.flatten(1), ord=self.p, dim=1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LinfStep(Step):
    """l_inf: ascend along ``sign(g)``, project by clamping to ``[-eps, eps]``.

    Examples
    --------
    >>> step = LinfStep()
    >>> step.direction(torch.tensor([[0.5, -2.0, 0.0]]))
    tensor([[ 1., -1.,  0.]])
    >>> step.project(torch.tensor([[0.3, -0.05, -0.2]]), 0.1)
    tensor([[ 0.1000, -0.0500, -0.1000]])
    """

    p, name = math.inf, "inf"

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        return g.sign()

    def project(self, delta: torch.Tensor, eps: float) -> torch.Tensor:
        return delta.clamp(-eps, eps)

    def random_start(self, like: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
        u = torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype)
        return (2 * u - 1) * eps


class L2Step(Step):
    """l2: ascend along ``g / max(||g||_2, 1e-12)``, project by rescaling onto the ball.

    Examples
    --------
    >>> step = L2Step()
    >>> step.direction(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))
    tensor([[0.6000, 0.8000],
            [0.0000, 0.0000]])
    >>> step.project(torch.tensor([[3.0, 4.0], [0.3, 0.4]]), 1.0)
    tensor([[0.6000, 0.8000],
            [0.3000, 0.4000]])
    """

    p, name = 2.0, "2"

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        return g / _per_sample(self.norms(g).clamp_min(1e-12), g)

    def project(self, delta: torch.Tensor, eps: float) -> torch.Tensor:
        factor = (eps / self.norms(delta).clamp_min(1e-12)).clamp_max(1.0)
        return delta * _per_sample(factor, delta)

    def random_start(self, like: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
        gauss = torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)
        d = gauss[0].numel()
        radius = eps * torch.rand(like.shape[0], generator=generator, device=like.device, dtype=like.dtype) ** (1.0 / d)
        return self.direction(gauss) * _per_sample(radius, like)


class L1Step(Step):
    """l1: move the coordinate of largest ``|g|`` (steepest ascent), project by sorting.

    The steepest ascent direction on the l1 unit ball is ``sign(g_i) e_i`` at
    ``i = argmax |g_i|`` (ties broken by the lowest index): one coordinate per step,
    so l1 PGD needs many steps; it is offered because it is cheap, for experiments.
    The projection is the Euclidean projection onto the l1 ball (Duchi et al., 2008).

    Examples
    --------
    >>> step = L1Step()
    >>> step.direction(torch.tensor([[0.5, -2.0, 1.0]]))
    tensor([[ 0., -1.,  0.]])
    >>> step.project(torch.tensor([[2.0, -1.0, 0.5]]), 2.0)
    tensor([[ 1.5000, -0.5000,  0.0000]])
    """

    p, name = 1.0, "1"

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        flat = g.flatten(1)
        top = flat.abs().argmax(dim=1, keepdim=True)
        out = torch.zeros_like(flat).scatter_(1, top, flat.gather(1, top).sign())
        return out.reshape(g.shape)

    def project(self, delta: torch.Tensor, eps: float) -> torch.Tensor:
        flat = delta.flatten(1)
        inside = flat.abs().sum(1) <= eps
        mags = flat.abs().sort(dim=1, descending=True).values
        cums = mags.cumsum(1) - eps
        ranks = torch.arange(1, flat.shape[1] + 1, device=flat.device, dtype=flat.dtype)
        count = (mags * ranks > cums).sum(1, keepdim=True).clamp_min(1)
        theta = (cums.gather(1, count - 1) / count.to(flat.dtype)).clamp_min(0)
        projected = flat.sign() * (flat.abs() - theta).clamp_min(0)
        return torch.where(inside.unsqueeze(1), flat, projected).reshape(delta.shape)

    def random_start(self, like: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
        shape = (like.shape[0], like[0].numel() + 1)
        # normalised exponentials are uniform on the simplex; drop one coordinate and
        # draw signs: uniform in the cross-polytope
        e = -torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype).clamp_min(1e-38).log()
        simplex = (e / e.sum(1, keepdim=True))[:, :-1]
        signs = torch.rand(simplex.shape, generator=generator, device=like.device, dtype=like.dtype) < 0.5
        return (torch.where(signs, -simplex, simplex) * eps).reshape(like.shape)


_STEPS = {math.inf: LinfStep(), 2.0: L2Step(), 1.0: L1Step()}


def step_for(norm) -> Step:
    """The :class:`Step` of a norm (``"inf"``, 2 or 1).

    >>> step_for("inf"), step_for(2)
    (LinfStep(), L2Step())
    """
    return _STEPS[parse_norm(norm)]


def _check_bounds(x: torch.Tensor, bounds) -> tuple | None:
    """``(low, high)`` as floats, or as tensors on ``x``'s device broadcasting against an
    input (a per-channel box ``C x 1 x 1``, e.g. normalised pixels); None: no box."""
    if bounds is None:
        return None
    try:
        low, high = bounds
        if torch.is_tensor(low) or torch.is_tensor(high):
            low, high = (torch.as_tensor(b, dtype=x.dtype, device=x.device) for b in (low, high))
            ordered = bool((low < high).all())
        else:
            low, high = float(low), float(high)
            ordered = low < high
    except (TypeError, ValueError, RuntimeError):
        raise AttackError(f"bounds must be a pair (low, high), got {bounds!r}") from None
    if not ordered:
        raise AttackError(f"bounds must satisfy low < high, got {bounds!r}")
    if x.numel() and (bool((x < low).any()) or bool((x > high).any())):
        raise AttackError(f"inputs must lie in bounds, found values in [{float(x.min()):.4g}, {float(x.max()):.4g}]; "
                          "rescale the data or pass its bounds")
    return low, high


def _check_eps(eps) -> float:
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise AttackError(f"eps must be a number, got {eps!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise AttackError(f"eps must be a finite radius >= 0, got {eps!r}")
    return value


def _check_count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise AttackError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _generator(device: torch.device, seed: int | None) -> torch.Generator:
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    return generator


def _ascend(model: nn.Module, x0: torch.Tensor, y: torch.Tensor, eps: float, step: Step, steps: int, step_size: float,
            start: torch.Tensor | None, bounds: tuple, gradient=None) -> torch.Tensor:
    """The one attack loop: ``steps`` ascent steps, each projected, then clipped to the box.

    It ascends the cross-entropy, or the objective whose input gradient ``gradient(x)``
    returns (e.g. the logit-space loss of :func:`pathstats.robust.opnorm.logit_pgd`).
    """
    def clip(z: torch.Tensor) -> torch.Tensor:
        return z if bounds is None else z.clamp(*bounds)

    x = x0 if start is None else clip(x0 + start)
    for _ in range(steps):
        grad = loss_and_input_gradients(model, x, y)[1] if gradient is None else gradient(x)
        x = x + step_size * step.direction(grad)
        x = x0 + step.project(x - x0, eps)
        x = clip(x)
    return x.detach()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm="inf", steps: int = PGD_STEPS,
        step_size: float | None = None, random_start: bool = True, bounds=(0.0, 1.0), seed: int | None = None,
        mode: str = "eval") -> torch.Tensor:
    """Projected gradient ascent on the cross-entropy within the l_p ball of radius ``eps``.

    Parameters
    ----------
    model : torch.nn.Module
        Returns logits ``B x K``; run in eval mode, its modes restored afterwards.
    x : Tensor
        Clean inputs ``B x ...`` inside ``bounds``.
    y : Tensor
        Integer labels ``B`` (the loss ascended is ``sum_i L(x_i, y_i)``).
    eps : float
        Radius in the attack's own norm (see :func:`lp_radius` for ``eps_p``).
    norm : {"inf", 2, 1}
        The attack norm ``p``.
    steps : int, default 7
    step_size : float, optional
        Absolute step length; ``None`` means ``0.2 * eps``.
    random_start : bool, default True
        Start uniformly in the ball (then clipped to the box).
    bounds : (float, float), default (0, 1)
        The box inputs live in (floats, or per-channel tensors ``C x 1 x 1``);
        None: no box, no clipping.
    seed : int, optional
        Seeds the random start (a generator on the model's device).
    mode : {"eval", "train"}, default "eval"
        ``"eval"`` runs the model in eval mode (modes restored after); ``"train"``
        leaves the model in the mode it is in (adversarial training as in the
        authors' code: BatchNorm normalises with each step's batch statistics, and
        updates its running statistics unless the caller freezes them).

    Returns
    -------
    Tensor
        ``x_adv`` with ``||x_adv - x||_p <= eps`` and inside ``bounds``, on ``x``'s device.

    Examples
    --------
    >>> model = torch.nn.Linear(4, 3)
    >>> x, y = torch.rand(5, 4), torch.tensor([0, 1, 2, 0, 1])
    >>> x_adv = pgd(model, x, y, eps=0.1, seed=0)
    >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-7), bool(x_adv.min() >= 0)
    (True, True)
    >>> torch.equal(x_adv, pgd(model, x, y, eps=0.1, seed=0))
    True
    """
    check_batch(x, y)
    step, eps = step_for(norm), _check_eps(eps)
    _check_count("steps", steps, 0)
    if step_size is None:
        step_size = PGD_STEP_FRAC * eps
    step_size = _check_eps(step_size)
    bounds = _check_bounds(x, bounds)
    x0, y0 = _to_model(model, x, y)
    start = step.random_start(x0, eps, _generator(x0.device, seed)) if random_start else None
    if mode not in ("eval", "train"):
        raise AttackError(f"mode must be 'eval' or 'train', got {mode!r}")
    with eval_mode(model) if mode == "eval" else contextlib.nullcontext():
        x_adv = _ascend(model, x0, y0, eps, step, steps, step_size, start, bounds)
    return x_adv.to(x.device).contiguous()


def fgm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm="inf", bounds=(0.0, 1.0),
        mode: str = "eval") -> torch.Tensor:
    """One gradient step of size ``eps``: FGSM for l_inf, the fast gradient method for l2.

    Equal to :func:`pgd` with ``steps=1, step_size=eps, random_start=False``.

    Examples
    --------
    >>> model = torch.nn.Linear(4, 3)
    >>> x, y = torch.full((2, 4), 0.5), torch.tensor([0, 1])
    >>> delta = fgm(model, x, y, eps=0.1) - x
    >>> torch.allclose(delta.abs(), torch.full((2, 4), 0.1))
    True
    """
    return pgd(model, x, y, eps, norm=norm, steps=1, step_size=eps, random_start=False, bounds=bounds, mode=mode)


def _class_gradients(model: nn.Module, x: torch.Tensor, ranked: torch.Tensor):
    """Logits at ``x`` and the gradients of ``o_k - o_top`` for every other class ``k``.

    ``ranked`` holds each sample's classes by decreasing clean logit (the first is the
    clean prediction).  One forward pass, then one backward pass per class on the
    whole batch (input gradients only): ``(logits B x K, diffs B x (K-1),
    grads (K-1) x B x ...)``.
    """
    x = x.detach().requires_grad_(True)
    logits = model(x)
    top = logits.gather(1, ranked[:, :1])
    others = ranked[:, 1:]
    diffs = logits.gather(1, others) - top
    grads = []
    for j in range(others.shape[1]):
        (g,) = torch.autograd.grad(diffs[:, j].sum(), x, retain_graph=j + 1 < others.shape[1])
        grads.append(g)
    return logits.detach(), diffs.detach(), torch.stack(grads)


def deepfool(model: nn.Module, x: torch.Tensor, norm=2, steps: int = 50, overshoot: float = 0.02,
             bounds=(0.0, 1.0)) -> torch.Tensor:
    """DeepFool (Moosavi-Dezfooli et al., 2016): the smallest l_2 or l_inf step across the linearised boundary.

    Batched over images and classes.  Each iteration linearises every class margin
    ``o_k - o_c`` (``c`` the clean prediction) at the current point, steps to the
    nearest linearised boundary (distance ``|o_k - o_c| / ||grad||_q``, plus
    :data:`DEEPFOOL_NUDGE`), and sets ``x = clip(x0 + (1 + overshoot) * total)``: the
    overshoot applies to the total perturbation, as in foolbox.  An image stops as soon
    as its predicted class differs from its clean prediction; the others stop after
    ``steps`` iterations (they may then be unchanged in class).

    Parameters
    ----------
    model : torch.nn.Module
        Returns logits ``B x K`` (``K >= 2``).
    x : Tensor
        Clean inputs ``B x ...`` inside ``bounds``.
    norm : {2, "inf"}
    steps : int, default 50
    overshoot : float, default 0.02
    bounds : (float, float), default (0, 1)

    Returns
    -------
    Tensor
        ``x_adv`` on ``x``'s device; ``x_adv - x`` is the perturbation found.

    Examples
    --------
    A linear two-class model: the distance to its boundary is ``|w.x + b| / ||w||_2``.

    >>> model = torch.nn.Linear(2, 2)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    ...     _ = model.bias.copy_(torch.tensor([-0.3, 0.0]))
    >>> x = torch.tensor([[0.5, 0.5]])
    >>> delta = deepfool(model, x, overshoot=0.0) - x
    >>> round(float(delta.norm()), 4)   # 0.2 + DEEPFOOL_NUDGE
    0.2001
    """
    check_batch(x)
    p = parse_norm(norm)
    if p == 1.0:
        raise AttackError("deepfool supports norm 2 and 'inf' (an l1 DeepFool is not implemented)")
    _check_count("steps", steps, 0)
    overshoot = _check_eps(overshoot)
    low, high = _check_bounds(x, bounds)
    x0 = _to_model(model, x)[0]
    with eval_mode(model):
        with torch.no_grad():
            logits = model(x0)
        if logits.dim() != 2 or logits.shape[1] < 2:
            raise AttackError(f"deepfool needs logits of shape B x K with K >= 2 classes, got {tuple(logits.shape)}")
        ranked = logits.argsort(dim=1, descending=True)
        label = ranked[:, 0]
        x_adv, total = x0.clone(), torch.zeros_like(x0)
        active = torch.arange(x0.shape[0], device=x0.device)
        q = dual_exponent(p)
        for _ in range(steps):
            logits, diffs, grads = _class_gradients(model, x_adv[active], ranked[active])
            still = logits.argmax(1) == label[active]
            if not bool(still.any()):
                break
            active, diffs, grads = active[still], diffs[still], grads[:, still]
            g_norms = torch.linalg.vector_norm(grads.flatten(2), ord=q, dim=2).T  # B x (K-1)
            distances = diffs.abs() / (g_norms + 1e-8)
            best = distances.argmin(1)
            rows = torch.arange(len(active), device=x0.device)
            distance = distances[rows, best] + DEEPFOOL_NUDGE
            grad = grads[best, rows]
            if p == math.inf:
                move = _per_sample(distance, grad) * grad.sign()
            else:
                move = _per_sample(distance / (g_norms[rows, best] + 1e-8), grad) * grad
            total[active] += move
            x_adv[active] = (x0[active] + (1.0 + overshoot) * total[active]).clamp(low, high)
    return x_adv.to(x.device).contiguous()
