"""Input gradients of the cross-entropy, per sample, and their norms.

Lemma 2 of Simon-Gabriel et al. (2019) says that an ``eps``-sized l_p attack raises
the loss at ``x`` by ``eps ||dL/dx||_q`` at first order (``1/p + 1/q = 1``), so the
per-sample norms ``||dL/dx||_1`` and ``||dL/dx||_2`` are the quantities every
vulnerability measurement is compared with.  The loss is the cross-entropy summed
over the batch (foolbox's convention): in eval mode the samples do not interact, so
the gradient of the sum with respect to ``x`` is, row by row, each sample's own
gradient ``dL(x_i, y_i)/dx_i`` -- never a batch-mean gradient rescaled.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from pathstats.errors import AttackError

__all__ = ["AttackError", "eval_mode", "model_device", "loss_and_input_gradients", "input_gradients", "grad_norms"]


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter or buffer (CPU for a model with neither).

    Examples
    --------
    >>> model_device(torch.nn.Linear(2, 2))
    device(type='cpu')
    """
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every sub-module of ``model`` in eval mode, and restore each one's mode after.

    Attacks run inside it, so that BatchNorm uses (and never updates) its running
    statistics and Dropout is off; a model whose sub-modules were in mixed modes gets
    exactly those modes back.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout()).train()
    >>> with eval_mode(net):
    ...     net.training
    False
    >>> net.training, net[1].training
    (True, True)
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def check_batch(x: torch.Tensor, y: torch.Tensor | None = None) -> None:
    """Refuse inputs that are not a batch of floats, or labels that do not match them."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise AttackError("x must be a floating-point tensor with a batch axis first (B x ...); "
                          f"got {type(x).__name__} {getattr(x, 'dtype', '')} of shape {tuple(getattr(x, 'shape', ()))}")
    if y is None:
        return
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.shape[0] != x.shape[0] or y.is_floating_point() or y.is_complex():
        raise AttackError(f"y must be a 1-d integer tensor of {x.shape[0]} class indices, one per row of x; "
                          f"got {type(y).__name__} {getattr(y, 'dtype', '')} of shape {tuple(getattr(y, 'shape', ()))}")


def _to_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None):
    """``x`` (detached) and ``y`` on the model's device; images in channels-last layout.

    Convolutions read and write channels-last tensors about twice as fast on CPUs
    (oneDNN) and keep the layout through the network, so the attacks and gradient
    measurements run that way; values are unchanged.
    """
    device = model_device(model)
    x = x.detach().to(device)
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, (None if y is None else y.to(device=device, dtype=torch.long))


def loss_and_input_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, create_graph: bool = False):
    """``(per-sample losses, dL/dx)`` of the sum-reduced cross-entropy at ``x`` (model as it is)."""
    x = x if create_graph and x.requires_grad else x.detach().requires_grad_(True)
    logits = model(x)
    if logits.dim() != 2:
        raise AttackError(f"the model must return logits of shape B x K, got shape {tuple(logits.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= logits.shape[1]):
        raise AttackError(f"labels must lie in 0..{logits.shape[1] - 1} (the model has {logits.shape[1]} logits); "
                          f"got {int(y.min())}..{int(y.max())}")
    losses = F.cross_entropy(logits, y, reduction="none")
    (grad,) = torch.autograd.grad(losses.sum(), x, create_graph=create_graph)
    return losses, grad


def input_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """Per-sample input gradients ``dL(x_i, y_i)/dx_i`` of the cross-entropy.

    The model is used in the mode it is in (the attacks and :func:`grad_norms` put it
    in eval mode; a training loop that penalises gradients may keep train mode, in
    which case BatchNorm couples the rows of the batch).  Only the gradient with
    respect to ``x`` is computed: parameter gradients are neither computed nor
    accumulated.

    Parameters
    ----------
    model : torch.nn.Module
        Returns logits ``B x K``.
    x : Tensor
        Inputs ``B x ...`` (moved to the model's device).
    y : Tensor
        Integer labels ``B``.
    create_graph : bool, default False
        Keep the graph for double backpropagation (gradient penalties); ``x`` then
        keeps its own graph if it has one.

    Returns
    -------
    Tensor
        ``dL/dx`` of the shape of ``x``, on the model's device.

    Examples
    --------
    A linear model ``o = W x`` has ``dL/dx = W^T (softmax(o) - onehot(y))``:

    >>> model = torch.nn.Linear(3, 2, bias=False)
    >>> x, y = torch.rand(4, 3), torch.tensor([0, 1, 1, 0])
    >>> g = input_gradients(model, x, y)
    >>> p = torch.softmax(model(x), 1) - torch.nn.functional.one_hot(y, 2)
    >>> torch.allclose(g, p @ model.weight)
    True
    """
    check_batch(x, y)
    if create_graph:
        device = model_device(model)
        x, y = x.to(device), y.to(device=device, dtype=torch.long)
    else:
        x, y = _to_model(model, x, y)
    return loss_and_input_gradients(model, x, y, create_graph=create_graph)[1]


def grad_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Per-sample ``||dL/dx||_1`` and ``||dL/dx||_2`` of the cross-entropy, in eval mode.

    Returns
    -------
    dict
        ``{"l1": Tensor[B], "l2": Tensor[B]}`` (detached, on the model's device).

    Examples
    --------
    >>> model = torch.nn.Linear(3, 2, bias=False)
    >>> x, y = torch.rand(4, 3), torch.tensor([0, 1, 1, 0])
    >>> norms = grad_norms(model, x, y)
    >>> g = input_gradients(model, x, y)
    >>> torch.allclose(norms["l1"], g.abs().sum(1)), torch.allclose(norms["l2"], g.norm(dim=1))
    (True, True)
    """
    check_batch(x, y)
    x, y = _to_model(model, x, y)
    with eval_mode(model):
        grad = loss_and_input_gradients(model, x, y)[1].flatten(1)
    return {"l1": grad.abs().sum(1), "l2": grad.norm(dim=1)}
