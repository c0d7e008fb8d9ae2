"""Checks before trusting an attack (in the spirit of AutoAttack's flags).

A gradient attack says little about a model whose gradients vanish, whose outputs
are already probabilities (the cross-entropy of a softmax of probabilities has tiny,
misleading gradients) or whose eval-mode forward pass is random (gradients of one
pass do not describe the next).  :func:`check_model` looks for each and warns with an
:class:`AttackWarning` that says what to do; it returns the messages so that reports
can carry them.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from pathstats.errors import AttackWarning

from .gradients import check_batch, eval_mode, model_device

__all__ = ["AttackWarning", "check_outputs", "check_gradients", "check_deterministic", "check_model"]


def check_outputs(logits: torch.Tensor, atol: float = 1e-4) -> list:
    """A message if every row of ``logits`` is non-negative and sums to 1 (probabilities).

    Examples
    --------
    >>> check_outputs(torch.tensor([[2.0, -1.0]]))
    []
    >>> check_outputs(torch.softmax(torch.randn(3, 4), 1))  # doctest: +ELLIPSIS
    ['the model outputs look like probabilities ...']
    """
    if logits.numel() and bool((logits >= 0).all()) and torch.allclose(logits.sum(1), torch.ones_like(logits[:, 0]), atol=atol):
        return ["the model outputs look like probabilities (non-negative rows summing to 1), not logits: attacks and "
                "the cross-entropy expect logits; remove the final softmax"]
    return []


def check_gradients(grad_l2: torch.Tensor) -> list:
    """A message if some inputs have an input gradient that is exactly zero.

    Examples
    --------
    >>> check_gradients(torch.tensor([0.5, 0.2]))
    []
    >>> check_gradients(torch.tensor([0.5, 0.0]))  # doctest: +ELLIPSIS
    ['1 of 2 inputs have a zero loss gradient ...']
    """
    zero = int((grad_l2 == 0).sum())
    if zero:
        return [f"{zero} of {grad_l2.numel()} inputs have a zero loss gradient (saturated softmax, dead ReLUs or a "
                "non-differentiable step): gradient attacks cannot move them, so their vulnerability is a lower bound"]
    return []


def check_deterministic(model: nn.Module, x: torch.Tensor) -> list:
    """A message if two eval-mode forward passes on ``x`` differ (a random model).

    Examples
    --------
    >>> check_deterministic(torch.nn.Linear(3, 2), torch.rand(4, 3))
    []
    >>> noisy = torch.nn.Sequential(torch.nn.Linear(3, 2))
    >>> noisy.register_forward_hook(lambda m, i, o: o + torch.randn_like(o))  # doctest: +ELLIPSIS
    <...>
    >>> check_deterministic(noisy, torch.rand(4, 3))  # doctest: +ELLIPSIS
    ['two eval-mode forward passes ...']
    """
    x = x.detach().to(model_device(model))
    with eval_mode(model), torch.no_grad():
        first, second = model(x), model(x)
    if not torch.equal(first, second):
        gap = float((first - second).abs().max())
        return [f"two eval-mode forward passes on the same inputs differ (max logit gap {gap:.3g}): the model is "
                "random, so gradients of one pass do not describe the next; use an expectation-over-transformation "
                "attack or make the model deterministic"]
    return []


def check_model(model: nn.Module, x: torch.Tensor, grad_l2: torch.Tensor | None = None, *, sample: int = 16,
                warn: bool = True) -> list:
    """Run every check on ``model`` (at most ``sample`` inputs of ``x`` for the forward checks).

    Parameters
    ----------
    model : torch.nn.Module
    x : Tensor
        Inputs ``B x ...``.
    grad_l2 : Tensor, optional
        Per-sample ``||dL/dx||_2`` if already computed (checked for zeros).
    sample : int, default 16
    warn : bool, default True
        Emit each message as an :class:`AttackWarning` too.

    Returns
    -------
    list of str
        The messages (empty when nothing looks wrong).

    Examples
    --------
    >>> check_model(torch.nn.Linear(3, 2), torch.rand(4, 3))
    []
    """
    check_batch(x)
    head = x[:sample].detach().to(model_device(model))
    with eval_mode(model), torch.no_grad():
        logits = model(head)
    messages = check_outputs(logits) + check_deterministic(model, head)
    if grad_l2 is not None:
        messages += check_gradients(grad_l2)
    if warn:
        for message in messages:
            warnings.warn(message, AttackWarning, stacklevel=2)
    return messages
