"""Monte Carlo over random initialisations: empirical input Jacobians (docs page "The Monte Carlo estimator").

Each sample is one independent initialisation of the network's declared
initialisation (:meth:`pathstats.nets.InitialisedNet.init_variances`) and one fresh
standard-normal input.  Jacobian rows of one initialisation are strongly
correlated, so instead of the ``K`` rows of every logit each initialisation gets
one forward pass and two backward passes (a random logit, and the loss at a
random label), and ``B`` initialisations run as the ``B`` examples of one batch
(:class:`pathstats.verify.batched.BatchedInitialisations`): many cheap initialisations
replace a few expensive ones.  Where it is exact, part of the expectation over
the classifier's weights is taken analytically (:mod:`pathstats.verify.reduction`), which
keeps the logit sample's mean and lowers its variance.  Each
initialisation gives one value of each statistic, an independent sample;
estimates are means over the ``N`` samples with standard errors
``std / sqrt(N)``.
"""

from __future__ import annotations

import copy
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pathstats._validate import check_seed
from pathstats.progress import progress as progress_bar
from pathstats.stats import Estimate, standard_error

from .batched import WEIGHT_LAYERS, BatchedInitialisations
from .reduction import ClassifierReduction, plan_reduction, reduction_factors

__all__ = ["Estimate", "MonteCarloResult", "default_batch", "sample_gradients", "run_monte_carlo"]


@dataclass
class MonteCarloResult:
    """Per-sample statistics of ``N`` initialisations.

    ``grad_sq_samples`` has shape ``(N,) + input_shape``: per initialisation,
    ``(do_k/dx)^2`` for its random logit ``k``, so its mean over samples
    estimates ``E[(do/dx)^2]`` per coordinate.  The other arrays have one value
    per sample.
    """

    input_shape: tuple
    classes: int
    device: str
    grad_sq_samples: np.ndarray
    logit_l1: np.ndarray
    logit_l2: np.ndarray
    loss_l1: np.ndarray | None  # None when the run skipped the loss gradient
    loss_l2: np.ndarray | None
    softmax_factor: np.ndarray | None  # (1 - q_c)^2 + sum_{k != c} q_k^2 at the sampled input and label
    elapsed_s: float = 0.0
    seed: int = 0
    notes: list = field(default_factory=list)
    reduction: ClassifierReduction | None = None  # what was integrated analytically (None: raw samples)

    @property
    def samples(self) -> int:
        return len(self.logit_l1)

    def total(self) -> Estimate:
        """``E||do/dx||_2^2``: sum over coordinates, one value per initialisation."""
        return Estimate.of(self.grad_sq_samples.reshape(self.samples, -1).sum(axis=1))

    def map_estimate(self) -> tuple:
        """Per-coordinate mean and standard error of ``(do/dx)^2``."""
        flat = self.grad_sq_samples
        return flat.mean(axis=0), standard_error(flat, axis=0)


def _sample_weights(model: nn.Module, variances: dict, batch: int, seeds: list, device, pool=None) -> dict:
    """Weights of ``batch`` initialisations, ``{layer name: (batch,) + weight.shape}``.

    Each layer is drawn in ``_DRAW_CHUNKS`` slices of the batch, each slice from its
    own generator (``seeds[i * _DRAW_CHUNKS + j]`` for slice ``j`` of the ``i``-th
    weight layer), so the slices can be drawn on several threads (``pool``) and the
    result does not depend on which thread drew what.  2-d kernels are drawn channels-last
    (i.i.d. entries: the memory order does not change their law), the layout
    :class:`BatchedInitialisations` convolves in.
    """
    layers = [(name, module) for name, module in model.named_modules() if isinstance(module, WEIGHT_LAYERS)]
    weights, tasks = {}, []
    for i, (name, module) in enumerate(layers):
        shape = (batch,) + tuple(module.weight.shape)
        channels_last = len(shape) == 5  # (B, out, in, kh, kw) stored as (B, out, kh, kw, in)
        storage = torch.empty(shape[:2] + shape[3:] + shape[2:3] if channels_last else shape, device=device)
        weights[name] = storage.permute(0, 1, 4, 2, 3) if channels_last else storage
        rows = -(-batch // _DRAW_CHUNKS)
        for chunk in range(_DRAW_CHUNKS):  # contiguous slices: normal_ is vectorised only there
            if chunk * rows < batch:
                tasks.append((storage[chunk * rows : (chunk + 1) * rows], math.sqrt(variances[name]), seeds[i * _DRAW_CHUNKS + chunk]))

    def draw(task):
        block, std, seed = task
        block.normal_(0.0, std, generator=torch.Generator(device=device).manual_seed(seed))

    list(pool.map(draw, tasks) if pool is not None else map(draw, tasks))
    return weights


_DRAW_CHUNKS = 4  # slices per layer drawn in parallel; fixed, so results do not depend on the thread count


def sample_gradients(runner: BatchedInitialisations, weights: dict, inputs: torch.Tensor, cotangents) -> tuple:
    """Input gradients of ``B`` initialisations for chosen combinations of logits.

    Parameters
    ----------
    runner : BatchedInitialisations
        The traced network.
    weights : dict
        Layer name -> ``(B,) + weight.shape``: one set of weights per initialisation.
    inputs : torch.Tensor
        ``(B,) + input_shape``: one input per initialisation.
    cotangents : callable
        ``cotangents(logits) -> (P, B, K)``: the combinations of logits to
        differentiate, chosen after the forward pass (the loss needs the softmax).

    Returns
    -------
    (gradients, logits)
        ``(B, P) + input_shape`` and ``(B, K)``: one forward and ``P`` backward
        passes for all ``B`` initialisations together.
    """
    x = inputs.detach().requires_grad_(True)
    logits = runner.run_batch(weights, x)
    rows = cotangents(logits.detach())
    grads = [torch.autograd.grad(logits, x, grad_outputs=rows[j], retain_graph=j + 1 < len(rows))[0] for j in range(len(rows))]
    return torch.stack(grads, dim=1), logits.detach()


def _batch_seeds(seed: int, index: int, count: int) -> list:
    """Independent 64-bit seeds for batch ``index``: one per stream the batch needs."""
    state = np.random.SeedSequence([seed, index]).generate_state(2 * count)
    return [int(state[2 * i]) << 32 | int(state[2 * i + 1]) for i in range(count)]


def _draw_batch(model, variances, input_shape, size, seed: int, index: int, device, pool=None) -> tuple:
    """Everything random about one batch: weights, inputs, probed logits, labels."""
    n_layers = sum(isinstance(m, WEIGHT_LAYERS) for m in model.modules())
    seeds = _batch_seeds(seed, index, n_layers * _DRAW_CHUNKS + 1)
    params = _sample_weights(model, variances, size, seeds[:-1], device, pool)
    generator = torch.Generator(device=device).manual_seed(seeds[-1])
    inputs = torch.randn((size,) + tuple(input_shape), generator=generator, device=device)
    probe = torch.randint(0, 10**9, (size,), generator=generator, device=device)
    label = torch.randint(0, 10**9, (size,), generator=generator, device=device)
    return params, inputs, probe, label


def _run_batch(runner, draw: tuple, input_shape, size, loss: bool, reduction: ClassifierReduction | None) -> dict:
    params, inputs, probe, label = draw

    def cotangents(out):
        k = out.shape[1]
        logit = F.one_hot(probe % k, k).to(out.dtype)  # one random logit per initialisation
        if not loss:
            return logit.unsqueeze(0)
        dloss = torch.softmax(out, 1) - F.one_hot(label % k, k).to(out.dtype)  # dL/do at a random label
        return torch.stack([logit, dloss])

    grads, logits = sample_gradients(runner, params, inputs, cotangents)
    grads, logits = grads.detach().double(), logits.detach().double()  # float64 accumulation
    k = logits.shape[1]
    logit_grad = grads[:, 0].reshape(size, -1)
    quadratic = norm = torch.ones(size, dtype=torch.float64, device=grads.device)
    if reduction is not None:  # same mean, lower variance (verify.reduction)
        row = params[reduction.classifier][torch.arange(size, device=grads.device), probe % k]
        quadratic, norm = reduction_factors(reduction, runner.captured[reduction.classifier].reshape(size, -1), row)
    result = {
        "grad_sq": (logit_grad**2 * quadratic[:, None]).reshape((size,) + tuple(input_shape)).cpu().numpy(),
        "logit_l1": (logit_grad.abs().sum(dim=1) * norm).cpu().numpy(),
        "logit_l2": (logit_grad.norm(dim=1) * norm).cpu().numpy(),
        "classes": k,
    }
    if loss:
        loss_grad = grads[:, 1].reshape(size, -1)
        weights = torch.softmax(logits, dim=1) - F.one_hot(label % k, k).double()
        result.update(loss_l1=loss_grad.abs().sum(dim=1).cpu().numpy(), loss_l2=loss_grad.norm(dim=1).cpu().numpy(),
                      softmax_factor=(weights**2).sum(dim=1).cpu().numpy())
    return result


def default_batch(model: nn.Module, input_shape: tuple, budget_bytes: int = 2**28, largest: int = 64) -> int:
    """Initialisations per batch: ``largest``, or fewer so that the biggest float32
    activation of one batch stays within ``budget_bytes`` (shapes from a meta-device run).

    Examples
    --------
    >>> from pathstats import nets
    >>> default_batch(nets.build("conv6", (3, 32, 32)), (3, 32, 32)), default_batch(nets.build("conv6", (3, 256, 256)), (3, 256, 256))
    (64, 16)
    """
    sizes = [math.prod(input_shape)]
    probe = copy.deepcopy(model).to("meta")
    hooks = [m.register_forward_hook(lambda _, __, out: sizes.append(out[0].numel())) for m in probe.modules() if not list(m.children())]
    with torch.no_grad():
        probe(torch.empty((1,) + tuple(input_shape), device="meta"))
    for hook in hooks:
        hook.remove()
    return max(1, min(largest, budget_bytes // (4 * max(sizes))))


def run_monte_carlo(
    model: nn.Module,
    input_shape: tuple,
    samples: int,
    *,
    seed: int = 0,
    device: str = "cpu",
    batch: int | None = None,
    loss: bool = True,
    reduce: bool = True,
    progress: bool = False,
    desc: str | None = None,
) -> MonteCarloResult:
    """Draw ``samples`` initialisations and measure the input gradients of each.

    Per initialisation: fresh weights from the declared initialisation, one
    standard-normal input, one forward pass and one backward pass for a
    uniformly chosen logit ``k`` (``do_k/dx``: by exchangeability of the logits
    an unbiased sample of the per-logit quantities), plus one for the
    cross-entropy at a uniformly chosen label ``c``
    (``dL/dx = sum_k (q_k - [k = c]) do_k/dx``) unless ``loss`` is False.

    Parameters
    ----------
    model : nets.InitialisedNet
        A network with a declared initialisation (``init_variances()``), in eval mode.
    input_shape : tuple
        One input's shape, batch axis excluded.
    samples : int
        Number ``N`` of independent initialisations (>= 2).
    seed : int
        Seeds weights, inputs, logits and labels, batch by batch (a stream per
        batch): the result is the same for a given seed, device and batch size.
    device : {"cpu", "cuda"}
    batch : int, optional
        Initialisations evaluated together as one batch; by default
        :func:`default_batch` (64 where activations are small).
    loss : bool, default True
        Also measure the loss gradient (one more backward pass per initialisation).
    reduce : bool, default True
        Integrate the classifier's weights analytically where that is exact
        (:mod:`pathstats.verify.reduction`): each logit-gradient sample keeps its mean and
        loses variance.  False keeps the raw gradients.
    progress : bool
        Show progress on stderr (:func:`pathstats.progress.progress`: a bar on a
        terminal, plain lines in a log).
    desc : str, optional
        What the progress shows as running (default: the model's class and input shape).

    Returns
    -------
    MonteCarloResult
    """
    seed = check_seed(seed, "seed")
    if samples < 2:
        raise ValueError("a standard error needs at least 2 samples")
    if not hasattr(model, "init_variances"):
        raise TypeError("verify needs a network with a declared initialisation (nets.InitialisedNet)")
    start = time.perf_counter()
    model = model.to(device).eval()
    variances = model.init_variances()
    if batch is None:
        batch = default_batch(model, input_shape)
    elif batch < 1:
        raise ValueError(f"batch must be a positive number of initialisations, got {batch}")
    sizes = [min(batch, samples - i) for i in range(0, samples, batch)]

    runner = BatchedInitialisations(model)
    reduction = plan_reduction(runner.module, variances) if reduce else None
    if reduction is not None:
        runner.capture.add(reduction.classifier)

    results = []
    desc = desc or f"{type(model).__name__} {'x'.join(map(str, input_shape))}"
    # each generator is a sequential RNG: draw the layers on all cores
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool, \
            progress_bar(total=samples, desc=desc, unit="init", disable=not progress) as bar:
        for index, size in enumerate(sizes):
            draw = _draw_batch(model, variances, input_shape, size, seed, index, device, pool)
            results.append(_run_batch(runner, draw, input_shape, size, loss, reduction))
            bar.update(size)
    merged = {key: np.concatenate([r[key] for r in results]) for key in results[0] if key != "classes"}
    return MonteCarloResult(tuple(input_shape), results[0]["classes"], device, merged["grad_sq"], merged["logit_l1"],
                            merged["logit_l2"], merged.get("loss_l1"), merged.get("loss_l2"), merged.get("softmax_factor"),
                            time.perf_counter() - start, seed, reduction=reduction)

