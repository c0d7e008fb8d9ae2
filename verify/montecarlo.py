"""Monte Carlo over random initialisations: empirical input Jacobians (docs page "The Monte Carlo estimator").

Each sample is one independent initialisation, drawn from the same law as the
prediction's ``init`` (:func:`init_law`: the declared initialisation of a
registered net, He, PyTorch's default through each layer's own
``reset_parameters``, the present weights' scale, or a mapping of variances),
and one fresh standard-normal input.  Jacobian rows of one initialisation are strongly
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
from torch import fx, nn

from pathstats._validate import check_seed
from pathstats.errors import InvalidArgumentError, PathstatsError, UnsupportedLayerError
from pathstats.layer_engine.rules import weight_variance
from pathstats.nets.base import meta_forward
from pathstats.prediction import _init_policy
from pathstats.progress import progress as progress_bar
from pathstats.stats import Estimate, standard_error

from .batched import WEIGHT_LAYERS, BatchedInitialisations
from .reduction import ClassifierReduction, plan_reduction, reduction_factors

__all__ = ["Estimate", "MonteCarloResult", "InitLaw", "init_law", "weight_layers", "default_batch", "sample_gradients", "run_monte_carlo"]


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
    law: InitLaw | None = None  # what each initialisation was drawn from

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


@dataclass(frozen=True)
class InitLaw:
    """The law each Monte Carlo initialisation's weights are drawn from.

    Attributes
    ----------
    init : str
        The prediction's ``init`` label (:attr:`pathstats.prediction.Prediction.init`):
        the same policy sets the predicted variances and this law.
    variances : dict or None
        Weight layer name -> variance of i.i.d. ``N(0, v)`` weights, biases zero
        (the declared initialisation, ``"he"``, ``"weights"``, a mapping).  None for
        ``"torch"``: every initialisation calls each weight layer's own
        ``reset_parameters()`` (PyTorch's default: uniform weights and uniform
        biases, or whatever a subclass draws).
    draws : str
        What one initialisation draws, in words, for reports.
    """

    init: str
    variances: dict | None
    draws: str

    @property
    def resets(self) -> bool:
        """Whether the layers' own ``reset_parameters`` draw the weights (``init="torch"``)."""
        return self.variances is None


def weight_layers(model: nn.Module, graph: fx.GraphModule | None = None) -> list:
    """``[(name, layer)]``: every weight layer the Monte Carlo draws, named as model mode names them.

    The module's own ``nn.Linear`` / ``nn.Conv*d`` layers (subclasses included, in
    ``named_modules`` order), then the layers that :func:`pathstats.layer_engine.functional.modularise`
    reads from a custom block's own parameter (``F.linear(x, self.weight)`` in block
    ``block1``: an ``nn.Linear`` named ``block1`` sharing that weight).  ``graph`` is the
    modularised trace when the caller has one (:class:`BatchedInitialisations` keeps it).

    Examples
    --------
    >>> import torch.nn.functional as F
    >>> class Block(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.weight = nn.Parameter(torch.randn(3, 4))
    ...     def forward(self, x):
    ...         return F.linear(x, self.weight)
    >>> net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), Block())
    >>> [(name, type(layer).__name__) for name, layer in weight_layers(net)]
    [('0', 'Linear'), ('2', 'Linear')]
    """
    own = [(name, module) for name, module in model.named_modules() if isinstance(module, WEIGHT_LAYERS)]
    if graph is None:
        graph = BatchedInitialisations(model).module
    named = {name for name, _ in own}
    read = [(node.target, graph.get_submodule(node.target)) for node in graph.graph.nodes if node.op == "call_module"
            and node.target not in named and isinstance(graph.get_submodule(node.target), WEIGHT_LAYERS)]
    return own + list(dict(read).items())


def init_law(model: nn.Module, init=None, layers: list | None = None) -> InitLaw:
    """The Monte Carlo's law for an ``init`` policy, the one :func:`pathstats.predict` takes.

    ``None`` is the declared initialisation of a registered net, else ``"weights"``
    (as for the prediction).  ``layers``: :func:`weight_layers` of ``model``, when the
    caller has them.  Gaussian laws take each layer's variance from
    :func:`pathstats.layer_engine.rules.weight_variance`, the function that gives model mode its
    variances, so the prediction and the Monte Carlo cannot drift apart.

    Raises
    ------
    PathstatsError
        For an ``init`` that :func:`pathstats.predict` refuses too, or a mapping
        that lacks a weight layer.

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> init_law(net, "he").variances
    {'0': 0.25, '2': 0.5}
    >>> law = init_law(net, "torch")
    >>> law.resets, law.init
    (True, 'torch: PyTorch default, 1/(3 fan_in)')
    >>> init_law(net, "xavier")
    Traceback (most recent call last):
    ...
    pathstats.errors.InvalidArgumentError: init must be None, 'he', 'torch', 'weights' or a mapping, not 'xavier'
    """
    policy, label = _init_policy(model, init)
    if isinstance(policy, str) and policy == "torch":
        return InitLaw(label, None, "each weight layer's own reset_parameters() (PyTorch's default: uniform weights "
                                    "and biases), once per initialisation")
    layers = layers or weight_layers(model)
    if init is None and isinstance(policy, dict):  # a registered net's declaration: it names its own layers only
        missing = [name for name, _ in layers if name not in policy]
        if missing:
            raise UnsupportedLayerError(
                f"no initialisation for the weights of {missing[0]!r} (read by F.linear / F.conv in forward): the declared "
                f"initialisation (init_variances()) names nn.Linear and nn.Conv1d/2d/3d layers only; store the weight in "
                f"such a layer, or pass init 'he', 'torch', 'weights' or a mapping")
    variances = {name: weight_variance(name, module, policy) for name, module in layers}
    return InitLaw(label, variances, "i.i.d. N(0, v) weights per layer (v from the init), zero biases")


def _sample_weights(layers: list, variances: dict, batch: int, seeds: list, device, pool=None) -> dict:
    """Weights of ``batch`` initialisations, ``{layer name: (batch,) + weight.shape}``.

    Each layer is drawn in ``_DRAW_CHUNKS`` slices of the batch, each slice from its
    own generator (``seeds[i * _DRAW_CHUNKS + j]`` for slice ``j`` of the ``i``-th
    weight layer), so the slices can be drawn on several threads (``pool``) and the
    result does not depend on which thread drew what.  2-d kernels are drawn channels-last
    (i.i.d. entries: the memory order does not change their law), the layout
    :class:`BatchedInitialisations` convolves in.
    """
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


def sample_gradients(runner: BatchedInitialisations, weights: dict, inputs: torch.Tensor, cotangents,
                     biases: dict | None = None) -> tuple:
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
    biases : dict, optional
        Layer name -> ``(B,) + bias.shape``; layers without an entry have zero biases.

    Returns
    -------
    (gradients, logits)
        ``(B, P) + input_shape`` and ``(B, K)``: one forward and ``P`` backward
        passes for all ``B`` initialisations together.
    """
    x = inputs.detach().requires_grad_(True)
    logits = runner.run_batch(weights, x, biases)
    rows = cotangents(logits.detach())
    grads = [torch.autograd.grad(logits, x, grad_outputs=rows[j], retain_graph=j + 1 < len(rows))[0] for j in range(len(rows))]
    return torch.stack(grads, dim=1), logits.detach()


def _batch_seeds(seed: int, index: int, count: int) -> list:
    """Independent 64-bit seeds for batch ``index``: one per stream the batch needs."""
    state = np.random.SeedSequence([seed, index]).generate_state(2 * count)
    return [int(state[2 * i]) << 32 | int(state[2 * i + 1]) for i in range(count)]


def _reset_weights(layers: list, batch: int, seed: int, device) -> tuple:
    """Weights and biases of ``batch`` initialisations by each weight layer's own
    ``reset_parameters()`` (``init="torch"``): ``({name: (batch,) + weight.shape},
    {name: (batch,) + bias.shape})``.

    The layers draw from the global generator, so the draw runs on a private copy of
    each layer under a forked, seeded CPU generator: the caller's random state is left
    as it was and the result depends on ``seed`` alone.  One call per layer and
    initialisation: slower than the Gaussian draw, which is vectorised, but it is the
    layer's own law whatever a subclass's ``reset_parameters`` does.
    """
    weights, biases = {}, {}
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for name, module in layers:
            layer = copy.deepcopy(module).cpu()
            drawn, offsets = [], []
            for _ in range(batch):
                layer.reset_parameters()
                drawn.append(layer.weight.detach().clone())
                if layer.bias is not None:
                    offsets.append(layer.bias.detach().clone())
            weights[name] = torch.stack(drawn).to(device)
            if offsets:
                biases[name] = torch.stack(offsets).to(device)
    return weights, biases


def _draw_batch(layers: list, law: InitLaw, input_shape, size, seed: int, index: int, device, pool=None) -> tuple:
    """Everything random about one batch: weights, biases, inputs, probed logits, labels.

    The streams of inputs, logits and labels do not depend on the law, so two laws
    run with one seed see the same inputs (common random numbers)."""
    seeds = _batch_seeds(seed, index, len(layers) * _DRAW_CHUNKS + 1)
    if law.resets:
        params, biases = _reset_weights(layers, size, seeds[0], device)
    else:
        params, biases = _sample_weights(layers, law.variances, size, seeds[:-1], device, pool), None
    generator = torch.Generator(device=device).manual_seed(seeds[-1])
    inputs = torch.randn((size,) + tuple(input_shape), generator=generator, device=device)
    probe = torch.randint(0, 10**9, (size,), generator=generator, device=device)
    label = torch.randint(0, 10**9, (size,), generator=generator, device=device)
    return params, biases, inputs, probe, label


def _run_batch(runner, draw: tuple, input_shape, size, loss: bool, reduction: ClassifierReduction | None) -> dict:
    params, biases, inputs, probe, label = draw

    def cotangents(out):
        k = out.shape[1]
        logit = F.one_hot(probe % k, k).to(out.dtype)  # one random logit per initialisation
        if not loss:
            return logit.unsqueeze(0)
        dloss = torch.softmax(out, 1) - F.one_hot(label % k, k).to(out.dtype)  # dL/do at a random label
        return torch.stack([logit, dloss])

    grads, logits = sample_gradients(runner, params, inputs, cotangents, biases)
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
    meta_forward(model, input_shape, leaf_hook=lambda _, out: sizes.append(out[0].numel()))
    return max(1, min(largest, budget_bytes // (4 * max(sizes))))


def run_monte_carlo(
    model: nn.Module,
    input_shape: tuple,
    samples: int,
    *,
    init=None,
    seed: int = 0,
    device: str = "cpu",
    batch: int | None = None,
    loss: bool = True,
    reduce: bool = True,
    progress: bool = False,
    desc: str | None = None,
) -> MonteCarloResult:
    """Draw ``samples`` initialisations and measure the input gradients of each.

    Per initialisation: fresh weights from ``init``'s law (:func:`init_law`), one
    standard-normal input, one forward pass and one backward pass for a
    uniformly chosen logit ``k`` (``do_k/dx``: by exchangeability of the logits
    an unbiased sample of the per-logit quantities), plus one for the
    cross-entropy at a uniformly chosen label ``c``
    (``dL/dx = sum_k (q_k - [k = c]) do_k/dx``) unless ``loss`` is False.

    Parameters
    ----------
    model : torch.nn.Module
        Any module :func:`pathstats.predict` accepts, returning logits ``(B, K)``;
        it runs in eval mode on a copy (the module itself is left as it is).  Its
        ``nn.Linear`` / ``nn.Conv*d`` weights are redrawn; every other parameter
        and buffer (BatchNorm's) is used as it is.
    input_shape : tuple
        One input's shape, batch axis excluded.
    samples : int
        Number ``N`` of independent initialisations (>= 2).
    init : None, "he", "torch", "weights" or mapping
        The law of each initialisation, as :func:`pathstats.predict`'s ``init``:
        ``None`` is the declared initialisation of a registered net, else
        ``"weights"`` (``N(0, mean square of the present weights)``); ``"he"``
        ``N(0, 2/fan_in)``; a mapping ``N(0, v)`` per layer name (biases zero in
        these four); ``"torch"`` each layer's own ``reset_parameters()``, biases
        included.
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
        loses variance.  False keeps the raw gradients.  Nothing is integrated under
        ``init="torch"`` (uniform weights and non-zero biases: the steps are not exact).
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
        raise InvalidArgumentError("a standard error needs at least 2 samples")
    if not isinstance(model, nn.Module):
        raise InvalidArgumentError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    if batch is not None and batch < 1:
        raise InvalidArgumentError(f"batch must be a positive number of initialisations, got {batch}")
    start = time.perf_counter()
    model = copy.deepcopy(model).to(device).eval()
    runner = BatchedInitialisations(model)
    layers = weight_layers(model, runner.module)
    law = init_law(model, init, layers)  # refuses a bad init before the Monte Carlo
    if batch is None:
        batch = default_batch(model, input_shape)
    sizes = [min(batch, samples - i) for i in range(0, samples, batch)]

    reduction = plan_reduction(runner.module, law.variances) if reduce and not law.resets else None
    if reduction is not None:
        runner.capture.add(reduction.classifier)

    results = []
    desc = desc or f"{type(model).__name__} {'x'.join(map(str, input_shape))}"
    # each generator is a sequential RNG: draw the layers on all cores
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool, \
            progress_bar(total=samples, desc=desc, unit="init", disable=not progress) as bar:
        for index, size in enumerate(sizes):
            draw = _draw_batch(layers, law, input_shape, size, seed, index, device, pool)
            results.append(_run_batch(runner, draw, input_shape, size, loss, reduction))
            bar.update(size)
    merged = {key: np.concatenate([r[key] for r in results]) for key in results[0] if key != "classes"}
    return MonteCarloResult(tuple(input_shape), results[0]["classes"], device, merged["grad_sq"], merged["logit_l1"],
                            merged["logit_l2"], merged.get("loss_l1"), merged.get("loss_l2"), merged.get("softmax_factor"),
                            time.perf_counter() - start, seed, reduction=reduction, law=law)

