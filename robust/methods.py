"""The training methods of ``pathstats train``: one table, name -> training loss.

Every method is a :class:`Method` in :data:`METHODS`, with its description, its
source (paper and equation), the attack norm ``p`` its strength refers to, and its
training loss ``loss(model, x, y, eps_p, config) -> Tensor`` (a scalar: the batch
mean of the per-sample objective).  The losses are built from the attacks
(:func:`~pathstats.robust.attacks.pgd`, :func:`~pathstats.robust.attacks.fgm`) and
the operator-norm penalty of :mod:`pathstats.robust`; nothing here is a second copy
of an attack.

Conventions (Simon-Gabriel et al. 2019, where they matter):

* strengths of the norm-``p`` methods are the paper's ``eps_p = eps d^(1/p)``
  (eq. 3), computed by :meth:`Method.strength`; the other methods take ``eps`` as
  it is (a regularisation constant);
* the gradient penalty carries eq. 4's weight ``eps_p / 2`` and is the per-sample
  dual norm ``||dL/dx_i||_q``, averaged over the batch (never a batch-mean
  gradient rescaled);
* adversarial augmentation is 50/50 (eq. 5), PGD training uses the adversarial
  loss alone (Madry et al.);
* the attacks inside the adversarial losses run in the model mode ``adv_mode``
  (``"eval"``, the default, or ``"train"``, the authors' code: BatchNorm uses each
  attack step's batch statistics) and clip to the box if ``adv_clip`` (default;
  the authors' code does not clip).  Either way BatchNorm running statistics are
  updated by exactly one training forward per step: the clean batch (the
  adversarial batch for ``pgd``).  Every further training-mode forward (the
  adversarial half of ``fgsm``, a train-mode attack, the finite-difference probe,
  the power iteration) uses its own batch statistics but leaves the running
  statistics as they were (:func:`frozen_batchnorm_stats`).

The model is in train mode when a loss is called (the training loop's job).  With
BatchNorm in train mode the rows of a batch interact through the batch statistics,
so a "per-sample" input gradient there carries an ``O(1/B)`` coupling term, as in
the authors' code; without BatchNorm (and in eval mode) it is exactly each
sample's own gradient.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from pathstats.errors import MethodError

from .attacks import PGD_STEP_FRAC, PGD_STEPS, fgm, lp_radius, parse_norm, pgd, step_for
from .gradients import loss_and_input_gradients, eval_mode
from .opnorm import operator_norm_penalty

__all__ = [
    "Method",
    "METHODS",
    "MethodError",
    "get_method",
    "frozen_batchnorm_stats",
    "per_sample_norm",
    "cross_lipschitz",
    "finite_difference_direction",
    "finite_difference_penalty",
    "OPTION_DEFAULTS",
    "OPNORM_FORMS",
    "ADV_MODES",
    "methods_table_rst",
]

#: The options a loss reads from its ``config`` (any object with these attributes, e.g.
#: :class:`pathstats.robust.train.TrainConfig`); a missing attribute, or no config, means
#: the default in ``OPTION_DEFAULTS``: the ``TrainConfig`` field's default (``pgd_steps``,
#: not a field, is :data:`~pathstats.robust.attacks.PGD_STEPS`).
_OPTIONS = ("fd_h", "opnorm_p", "opnorm_q", "opnorm_iters", "pgd_steps", "adv_mode", "adv_clip", "opnorm_form")

#: ``opnorm_form`` values: the penalty ``||J v||_q`` (Roth et al. eq. 13) or its square
#: (eq. 7 for p = q = 2, the squared data-dependent spectral norm their experiments use).
OPNORM_FORMS = ("squared", "eq13")
#: ``adv_mode`` values: the model mode of the attacks inside the adversarial training losses.
ADV_MODES = ("train", "eval")


@functools.cache
def _option_defaults() -> dict:
    # read when first needed: train.py (TrainConfig's home) imports this module
    from .train import TrainConfig

    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    return {name: PGD_STEPS if name == "pgd_steps" else fields[name] for name in _OPTIONS}


def __getattr__(name: str):
    # OPTION_DEFAULTS is computed from TrainConfig on first access (PEP 562), see _option_defaults
    if name == "OPTION_DEFAULTS":
        return dict(_option_defaults())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _option(config, name: str):
    default = _option_defaults()[name]
    return default if config is None else getattr(config, name, default)


def per_sample_norm(g: torch.Tensor, q: float) -> torch.Tensor:
    """``||g_i||_q`` of each row ``g_i`` of a batch (all axes but the first flattened).

    Examples
    --------
    >>> per_sample_norm(torch.tensor([[3.0, -4.0], [1.0, 1.0]]), 2)
    tensor([5.0000, 1.4142])
    >>> per_sample_norm(torch.tensor([[3.0, -4.0]]), 1)
    tensor([7.])
    """
    return torch.linalg.vector_norm(g.flatten(1), ord=q, dim=1)


@contextlib.contextmanager
def frozen_batchnorm_stats(model: nn.Module) -> Iterator[nn.Module]:
    """Run extra training-mode forwards without moving BatchNorm's running statistics.

    Inside, BatchNorm layers in train mode still normalise with the batch's own
    statistics (and back-propagate through them), but update scratch copies of
    their running statistics; on exit the layers get their own buffers back,
    untouched (rebound, not overwritten, so tensors saved for backward stay valid).

    Examples
    --------
    >>> bn = torch.nn.BatchNorm1d(2).train()
    >>> with frozen_batchnorm_stats(bn):
    ...     _ = bn(torch.randn(8, 2) + 5)
    >>> bn.running_mean.tolist(), int(bn.num_batches_tracked)
    ([0.0, 0.0], 0)
    """
    names = ("running_mean", "running_var", "num_batches_tracked")
    saved = [(module, {name: getattr(module, name) for name in names})
             for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    for module, buffers in saved:
        for name, buffer in buffers.items():
            if buffer is not None:
                setattr(module, name, buffer.detach().clone())
    try:
        yield model
    finally:
        for module, buffers in saved:
            for name, buffer in buffers.items():
                setattr(module, name, buffer)


# --------------------------------------------------------------------------- losses
# Each loss: (model, x, y, eps_p, config=None, *, bounds=(0, 1), seed=None) -> scalar.


def _loss_none(model, x, y, eps_p, config=None, *, bounds=(0.0, 1.0), seed=None):
    return F.cross_entropy(model(x), y)


def _gradient_penalty(q: float) -> Callable:
    def loss(model, x, y, eps_p, config=None, *, bounds=(0.0, 1.0), seed=None):
        losses, grad = loss_and_input_gradients(model, x, y, create_graph=True)
        return losses.mean() + eps_p / 2 * per_sample_norm(grad, q).mean()

    return loss


def _attack_settings(model: nn.Module, config, bounds) -> tuple:
    """``(context, bounds)`` of a training attack under ``adv_mode`` and ``adv_clip``: a
    train-mode attack runs with frozen BatchNorm statistics; no clipping means no box."""
    mode, clip = _option(config, "adv_mode"), bool(_option(config, "adv_clip"))
    if mode not in ADV_MODES:
        raise MethodError(f"adv_mode must be one of {', '.join(ADV_MODES)}, got {mode!r}")
    context = frozen_batchnorm_stats(model) if mode == "train" else contextlib.nullcontext()
    return mode, context, (bounds if clip else None)


def _augmentation(norm) -> Callable:
    def loss(model, x, y, eps_p, config=None, *, bounds=(0.0, 1.0), seed=None):
        mode, context, box = _attack_settings(model, config, bounds)
        with context:
            x_adv = fgm(model, x, y, eps_p, norm=norm, bounds=box, mode=mode).detach()
        clean = F.cross_entropy(model(x), y)
        with frozen_batchnorm_stats(model):
            adversarial = F.cross_entropy(model(x_adv), y)
        return (clean + adversarial) / 2

    return loss


def _loss_fgsm_through(model, x, y, eps_p, config=None, *, bounds=(0.0, 1.0), seed=None):
    # The FGSM step written differentiably (fgm returns a detached x_adv): the
    # gradient reaches the parameters through delta = eps sign(dL/dx) too.  The sign
    # has derivative 0 almost everywhere, so for l_inf the parameter gradient equals
    # fgsm's; only the cost differs (tests check both facts).
    mode, context, box = _attack_settings(model, config, bounds)
    with context, (eval_mode(model) if mode == "eval" else contextlib.nullcontext()):
        _, grad = loss_and_input_gradients(model, x, y, create_graph=True)
    x_adv = x + eps_p * step_for("inf").direction(grad)
    x_adv = x_adv if box is None else torch.clamp(x_adv, *box)
    clean = F.cross_entropy(model(x), y)
    with frozen_batchnorm_stats(model):
        adversarial = F.cross_entropy(model(x_adv), y)
    return (clean + adversarial) / 2


def _loss_pgd(model, x, y, eps_p, config=None, *, bounds=(0.0, 1.0), seed=None):
    steps = int(_option(config, "pgd_steps"))
    mode, context, box = _attack_settings(model, config, bounds)
    with context:
        x_adv = pgd(model, x, y, eps_p, norm="inf", steps=steps, step_size=PGD_STEP_FRAC * eps_p, random_start=True,
                    bounds=box, seed=seed, mode=mode).detach()
    return F.cross_entropy(model(x_adv), y)


def cross_lipschitz(model: nn.Module, x: torch.Tensor):
    """Logits and Hein & Andriushchenko's cross-Lipschitz regulariser per sample.

    ``R_xLip(x) = (1/K^2) sum_{k,h} ||df_h/dx - df_k/dx||_2^2`` (paper eq. 18),
    computed as ``(2/K) sum_k ||df_k/dx - mean_h df_h/dx||_2^2`` (the same sum,
    without cancellation); differentiable (``K`` backward passes with graph).

    Returns
    -------
    (logits, R) : (Tensor[B, K], Tensor[B])

    Examples
    --------
    For a linear model ``f = W x`` the Jacobian is ``W`` at every ``x``:

    >>> model = torch.nn.Linear(4, 3, bias=False)
    >>> _, r = cross_lipschitz(model, torch.rand(2, 4))
    >>> W = model.weight
    >>> brute = sum(((W[h] - W[k]) ** 2).sum() for h in range(3) for k in range(3)) / 9
    >>> torch.allclose(r, brute.expand(2))
    True
    """
    x = x.detach().requires_grad_(True)
    logits = model(x)
    K = logits.shape[1]
    rows = [torch.autograd.grad(logits[:, k].sum(), x, create_graph=True)[0].flatten(1) for k in range(K)]
    jac = torch.stack(rows, 1)  # B x K x d
    centred = jac - jac.mean(1, keepdim=True)
    return logits, 2.0 / K * centred.pow(2).sum((1, 2))


def _loss_crosslip(model, x, y, eps_p, config=None, *, bounds=(0.0, 1.0), seed=None):
    logits, penalty = cross_lipschitz(model, x)
    return F.cross_entropy(logits, y) + eps_p * penalty.mean()


def finite_difference_direction(grad: torch.Tensor, q: float) -> torch.Tensor:
    """Finlay & Oberman's probe direction: ``g/||g||_2`` (q = 2) or ``sign(g)/sqrt(N)`` (q = 1).

    The attacks' steepest-ascent directions (l2 and l_inf steps of
    :func:`~pathstats.robust.attacks.step_for`), the sign scaled by ``1/sqrt(N)``
    (``N`` input coordinates) so that both have unit l2 norm and the step ``h``
    means the same; zero where the gradient is zero.

    Examples
    --------
    >>> finite_difference_direction(torch.tensor([[3.0, -4.0], [0.0, 0.0]]), 2)
    tensor([[ 0.6000, -0.8000],
            [ 0.0000,  0.0000]])
    >>> finite_difference_direction(torch.tensor([[3.0, -4.0, 0.0, 1.0]]), 1)
    tensor([[ 0.5000, -0.5000,  0.0000,  0.5000]])
    """
    if q == 2:
        return step_for(2).direction(grad)
    if q == 1:
        return step_for("inf").direction(grad) / math.sqrt(grad[0].numel())
    raise MethodError(f"the finite-difference penalty is defined for q = 1 or 2, not {q}")


def finite_difference_penalty(model: nn.Module, x: torch.Tensor, y: torch.Tensor, q: float, h: float):
    """Per-sample losses and Finlay & Oberman's penalty ``((L(x + h d) - L(x)) / h)^2``.

    ``d`` (:func:`finite_difference_direction`) comes from the gradient of the first
    forward and is detached, so the penalty costs two ordinary backward passes and
    no double backpropagation (their Section 3.1, Algorithm 1).  As ``h -> 0`` it
    tends to ``||dL/dx||_2^2`` (q = 2) or ``||dL/dx||_1^2 / N`` (q = 1, ``N`` input
    coordinates), with an ``O(h)`` error.  The probe ``x + h d`` is not clipped to
    the box (it is a finite difference, not an input); its forward leaves
    BatchNorm's running statistics alone.

    Returns
    -------
    (losses, penalty) : (Tensor[B], Tensor[B]), both differentiable in the parameters

    Examples
    --------
    On a linear model the penalty approaches ``||dL/dx||_2^2``:

    >>> from pathstats.robust.gradients import input_gradients
    >>> torch.manual_seed(0) and None
    >>> model = torch.nn.Linear(5, 3).double()
    >>> x, y = torch.rand(4, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 0])
    >>> _, pen = finite_difference_penalty(model, x, y, q=2, h=1e-5)
    >>> torch.allclose(pen, input_gradients(model, x, y).norm(dim=1) ** 2, rtol=1e-3)
    True
    """
    x = x.detach().requires_grad_(True)
    losses = F.cross_entropy(model(x), y, reduction="none")
    (grad,) = torch.autograd.grad(losses.sum(), x, retain_graph=True)  # keeps the graph for the parameters
    direction = finite_difference_direction(grad, q)
    with frozen_batchnorm_stats(model):
        probe = F.cross_entropy(model(x.detach() + h * direction), y, reduction="none")
    return losses, ((probe - losses) / h) ** 2


def _finite_difference(q: float) -> Callable:
    def loss(model, x, y, eps_p, config=None, *, bounds=(0.0, 1.0), seed=None):
        losses, penalty = finite_difference_penalty(model, x, y, q, float(_option(config, "fd_h")))
        return losses.mean() + eps_p * penalty.mean()

    return loss


def _loss_opnorm(model, x, y, eps_p, config=None, *, bounds=(0.0, 1.0), seed=None):
    # The power iteration runs in eval mode without graph; one training forward then
    # carries v as a forward-mode tangent and gives the logits and J v together.
    penalty, logits = operator_norm_penalty(model, x, parse_norm(_option(config, "opnorm_p")),
                                            parse_norm(_option(config, "opnorm_q")),
                                            iters=int(_option(config, "opnorm_iters")), seed=seed, return_logits=True)
    form = _option(config, "opnorm_form")
    if form not in OPNORM_FORMS:
        raise MethodError(f"opnorm_form must be one of {', '.join(OPNORM_FORMS)}, got {form!r}")
    if form == "squared":
        # the value is ||J v||_q and its graph carries that value's weight gradient, so the
        # square's gradient is 2 ||J v||_q times it: Roth et al.'s eq. 7 for p = q = 2
        penalty = penalty ** 2
    return F.cross_entropy(logits, y) + eps_p * penalty.mean()


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Method:
    """A training method: its loss and where it comes from.

    Attributes
    ----------
    name : str
        The ``--method`` value.
    description : str
        The training loss in one line.
    source : str
        Paper and equation.
    norm : str or None
        The attack norm ``p`` (``"inf"`` or ``"2"``) whose radius ``eps_p = eps
        d^(1/p)`` the loss takes as strength; None when ``eps`` is used as it is.
    loss : callable
        ``loss(model, x, y, eps_p, config=None, *, bounds=(0, 1), seed=None) ->
        Tensor`` (scalar), the model in train mode.  ``config`` supplies the
        options in ``OPTION_DEFAULTS`` (``fd_h``, ``opnorm_p`` ...); ``seed``
        seeds the random start of PGD and the power iteration.
    """

    name: str
    description: str
    source: str
    norm: str | None
    loss: Callable[..., torch.Tensor]

    def strength(self, eps: float, d: int) -> float:
        """The strength the loss takes: ``eps_p = eps d^(1/p)`` for a norm-``p`` method, else ``eps``.

        Examples
        --------
        >>> METHODS["grad-l2"].strength(0.01, 3072) == 0.01 * 3072 ** 0.5
        True
        >>> METHODS["fgsm"].strength(0.01, 3072), METHODS["fd-l2"].strength(0.01, 3072)
        (0.01, 0.01)
        """
        return float(eps) if self.norm is None else float(lp_radius(eps, d, self.norm))

    def to_dict(self) -> dict:
        """Name, description, source and norm (JSON-ready; the loss left out)."""
        return {"name": self.name, "description": self.description, "source": self.source, "norm": self.norm}


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("none", "L: plain cross-entropy", "", None, _loss_none),
        Method("grad-l1", "L + (eps_p/2) ||dL/dx||_1 per sample (p = inf), double backprop",
               "Simon-Gabriel et al. 2019, eq. 4", "inf", _gradient_penalty(1.0)),
        Method("grad-l2", "L + (eps_p/2) ||dL/dx||_2 per sample (p = 2), double backprop",
               "Simon-Gabriel et al. 2019, eq. 4; Drucker & LeCun 1991", "2", _gradient_penalty(2.0)),
        Method("fgsm", "(L(x) + L(x + delta))/2, delta: FGSM of l_inf radius eps_p, detached",
               "Simon-Gabriel et al. 2019, eq. 5; Goodfellow et al. 2015", "inf", _augmentation("inf")),
        Method("fgm-l2", "(L(x) + L(x + delta))/2, delta: one l2 gradient step of radius eps_p, detached",
               "Simon-Gabriel et al. 2019, eq. 5", "2", _augmentation(2)),
        Method("fgsm-through", "as fgsm, the gradient also back-propagated through delta",
               "Simon-Gabriel et al. 2019, App. E", "inf", _loss_fgsm_through),
        Method("pgd", f"L(x + delta), delta: l_inf PGD, {PGD_STEPS} steps of {PGD_STEP_FRAC:g} eps_p, random start",
               "Simon-Gabriel et al. 2019, Sec. 4.1; Madry et al. 2018", "inf", _loss_pgd),
        Method("crosslip", "L + eps R_xLip, R_xLip = (1/K^2) sum_kh ||df_h/dx - df_k/dx||_2^2",
               "Simon-Gabriel et al. 2019, eq. 18; Hein & Andriushchenko 2017", None, _loss_crosslip),
        Method("fd-l2", "L + eps ((L(x + h d) - L(x))/h)^2, d = g/||g||_2 detached: ~ eps ||dL/dx||_2^2",
               "Finlay & Oberman 2019, Sec. 3.1, Alg. 1", None, _finite_difference(2.0)),
        Method("fd-l1", "L + eps ((L(x + h d) - L(x))/h)^2, d = sign(g)/sqrt(N) detached: ~ eps ||dL/dx||_1^2 / N",
               "Finlay & Oberman 2019, Sec. 3.1", None, _finite_difference(1.0)),
        Method("opnorm", "L + eps ||J_f(x)||_(p,q) by power iteration (--opnorm-p/-q, default 2, 2); "
               "squared with --opnorm-form squared",
               "Roth et al. 2020, eq. 13 (eq. 7 squared)", None, _loss_opnorm),
    ]
}


def get_method(name: str) -> Method:
    """The method called ``name``.

    Examples
    --------
    >>> get_method("pgd").source
    'Simon-Gabriel et al. 2019, Sec. 4.1; Madry et al. 2018'
    >>> get_method("adv")
    Traceback (most recent call last):
    ...
    pathstats.errors.MethodError: unknown method 'adv'; the methods are: none, grad-l1, grad-l2, fgsm, fgm-l2, fgsm-through, pgd, crosslip, fd-l2, fd-l1, opnorm
    """
    try:
        return METHODS[name]
    except KeyError:
        raise MethodError(f"unknown method {name!r}; the methods are: {', '.join(METHODS)}") from None


def methods_table_rst() -> str:
    """:data:`METHODS` as a reStructuredText list-table (the docs include it, so it cannot drift).

    Examples
    --------
    >>> print(methods_table_rst().splitlines()[0])
    .. list-table::
    >>> "``fd-l2``" in methods_table_rst()
    True
    """
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 14 52 8 26", "",
             "   * - ``--method``", "     - training loss", "     - ``eps`` taken as", "     - source"]
    for m in METHODS.values():
        strength = "eps (constant)" if m.norm is None else f"eps_p, p = {m.norm}"
        lines += [f"   * - ``{m.name}``", f"     - ``{m.description}``", f"     - {strength}", f"     - {m.source or '-'}"]
    return "\n".join(lines) + "\n"
