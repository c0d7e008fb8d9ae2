"""Monte Carlo over random initialisations: empirical input Jacobians (SPEC section 6).

Each sample is one independent initialisation of the network's declared
initialisation (:meth:`nets.InitialisedNet.init_variances`) and one fresh
standard-normal input.  The Jacobian rows of all ``K`` logits with respect to
the input come from one forward pass (``torch.func.jacrev``), and ``B``
initialisations run together under ``torch.func.vmap`` over stacked weights,
so many cheap initialisations replace a few expensive ones.  Every statistic
is a mean over samples with its standard error ``std / sqrt(N)``: rows and
logits of one initialisation are correlated, so they are averaged into one
sample before any error is computed.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

__all__ = ["Estimate", "MonteCarloResult", "sample_jacobians", "run_monte_carlo"]

WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo mean with its standard error and sample size."""

    estimate: float
    stderr: float
    samples: int

    @classmethod
    def of(cls, values: np.ndarray) -> "Estimate":
        values = np.asarray(values, dtype=np.float64)
        n = len(values)
        return cls(float(values.mean()), float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf, n)

    def z(self, predicted: float) -> float:
        """``(estimate - predicted) / stderr``."""
        return (self.estimate - predicted) / self.stderr if self.stderr > 0 else math.inf


@dataclass
class MonteCarloResult:
    """Per-sample statistics of ``N`` initialisations.

    ``grad_sq_samples`` has shape ``(N,) + input_shape``: per initialisation,
    the mean over the ``K`` logits of ``(do_k/dx)^2``, so its mean over samples
    estimates ``E[(do/dx)^2]`` per coordinate.  The other arrays have one value
    per sample (means over logits where the quantity is per logit).
    """

    input_shape: tuple
    classes: int
    device: str
    grad_sq_samples: np.ndarray
    logit_l1: np.ndarray
    logit_l2: np.ndarray
    loss_l1: np.ndarray
    loss_l2: np.ndarray
    softmax_factor: np.ndarray  # (1 - q_c)^2 + sum_{k != c} q_k^2 at the sampled input and label
    elapsed_s: float = 0.0
    seed: int = 0
    notes: list = field(default_factory=list)

    @property
    def samples(self) -> int:
        return len(self.logit_l1)

    def total(self) -> Estimate:
        """``E||do/dx||_2^2``: sum over coordinates, one value per initialisation."""
        return Estimate.of(self.grad_sq_samples.reshape(self.samples, -1).sum(axis=1))

    def map_estimate(self) -> tuple:
        """Per-coordinate mean and standard error of ``(do/dx)^2``."""
        flat = self.grad_sq_samples
        return flat.mean(axis=0), flat.std(axis=0, ddof=1) / math.sqrt(self.samples)


def _weight_layers(model: nn.Module) -> dict:
    return {name: m for name, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)}


def _sample_weights(model: nn.Module, variances: dict, batch: int, generator: torch.Generator, device) -> dict:
    params = {}
    for name, module in _weight_layers(model).items():
        shape = (batch,) + tuple(module.weight.shape)
        std = math.sqrt(variances[name])
        params[f"{name}.weight"] = torch.randn(shape, generator=generator, device=device) * std
        if module.bias is not None:  # the declared initialisation has zero biases
            params[f"{name}.bias"] = torch.zeros((batch,) + tuple(module.bias.shape), device=device)
    return params


def sample_jacobians(model: nn.Module, params: dict, inputs: torch.Tensor) -> tuple:
    """Jacobians ``(B, K) + input_shape`` and logits ``(B, K)`` of ``B`` initialisations.

    One forward pass per initialisation serves all ``K`` logits (``jacrev``
    vmaps the ``K`` backward passes) and the logits themselves (``has_aux``).
    ``params`` maps parameter names to stacked tensors ``(B, ...)``; parameters
    and buffers not in it are taken from ``model``.
    """
    fixed = {k: v for k, v in dict(model.named_parameters()).items() if k not in params}
    buffers = dict(model.named_buffers())

    def logits(p, x):
        out = functional_call(model, ({**fixed, **p}, buffers), (x.unsqueeze(0),)).squeeze(0)
        return out, out.detach()

    return vmap(jacrev(logits, argnums=1, has_aux=True))(params, inputs)


def run_monte_carlo(
    model: nn.Module,
    input_shape: tuple,
    samples: int,
    *,
    seed: int = 0,
    device: str = "cpu",
    batch: int = 32,
    progress: bool = False,
) -> MonteCarloResult:
    """Draw ``samples`` initialisations and measure the input gradients of each.

    Parameters
    ----------
    model : nets.InitialisedNet
        A network with a declared initialisation (``init_variances()``), in eval mode.
    input_shape : tuple
        One input's shape, batch axis excluded.
    samples : int
        Number ``N`` of independent initialisations (>= 2).
    seed : int
        Seeds the weights, the inputs and the labels: the result is the same for
        a given seed, device and batch size.
    device : {"cpu", "cuda"}
    batch : int
        Initialisations evaluated together.
    progress : bool
        Print a progress bar on stderr.

    Returns
    -------
    MonteCarloResult
    """
    if samples < 2:
        raise ValueError("a standard error needs at least 2 samples")
    if not hasattr(model, "init_variances"):
        raise TypeError("verify needs a network with a declared initialisation (nets.InitialisedNet)")
    start = time.perf_counter()
    model = model.to(device).eval()
    variances = model.init_variances()
    generator = torch.Generator(device=device).manual_seed(seed)
    grad_sq, logit_l1, logit_l2, loss_l1, loss_l2, softmax_factor = [], [], [], [], [], []
    done = 0
    while done < samples:
        b = min(batch, samples - done)
        params = _sample_weights(model, variances, b, generator, device)
        inputs = torch.randn((b,) + tuple(input_shape), generator=generator, device=device)
        jac, logits = sample_jacobians(model, params, inputs)
        jac, logits = jac.detach().double(), logits.detach().double()  # float64 accumulation
        classes = jac.shape[1]
        flat = jac.reshape(b, classes, -1)
        labels = torch.randint(0, classes, (b,), generator=generator, device=device)
        q = torch.softmax(logits, dim=1)
        weights = q - torch.nn.functional.one_hot(labels, classes).double()  # dL/do_k = q_k - [k = c]
        loss_grad = torch.einsum("bk,bkd->bd", weights, flat)
        grad_sq.append((flat**2).mean(dim=1).reshape((b,) + tuple(input_shape)).cpu().numpy())
        logit_l1.append(flat.abs().sum(dim=2).mean(dim=1).cpu().numpy())
        logit_l2.append(flat.norm(dim=2).mean(dim=1).cpu().numpy())
        loss_l1.append(loss_grad.abs().sum(dim=1).cpu().numpy())
        loss_l2.append(loss_grad.norm(dim=1).cpu().numpy())
        softmax_factor.append((weights**2).sum(dim=1).cpu().numpy())
        done += b
        if progress:
            _progress(done, samples, time.perf_counter() - start)
    if progress:
        print(file=sys.stderr)
    return MonteCarloResult(tuple(input_shape), classes, device, np.concatenate(grad_sq), np.concatenate(logit_l1),
                            np.concatenate(logit_l2), np.concatenate(loss_l1), np.concatenate(loss_l2),
                            np.concatenate(softmax_factor), time.perf_counter() - start, seed)


def _progress(done: int, total: int, elapsed: float) -> None:
    width = 30
    filled = int(width * done / total)
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else 0.0
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} initialisations, {rate:.1f}/s, eta {eta:.0f} s",
          end="", file=sys.stderr, flush=True)
