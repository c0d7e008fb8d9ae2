"""Exact variance reduction: integrating the classifier's weights analytically.

A sample of :func:`pathstats.verify.montecarlo.run_monte_carlo` is the input gradient of
one random logit, ``g = J^T w``, where ``w`` (``n`` entries) is that logit's row
of the classifier and ``J = dh/dx`` the Jacobian of the classifier's input
features ``h``.  Two facts about the declared initialisation let part of the
expectation be taken in closed form: every sample is replaced by its
conditional expectation given the rest (step 1), then reweighted by its number
of active features (step 2).  The estimator keeps its exact mean, its samples
stay independent, and its variance drops.

Notes
-----
**Step 1, the norm of the probed row** (any network whose output is a
bias-free :class:`torch.nn.Linear` of features ``h``).  Rows of ``J`` whose
feature is exactly zero vanish (almost surely, for piecewise-linear
features: ``h_i = 0`` on a set of positive measure only where ``h_i`` is
locally constant).  On the support ``S = {i : h_i != 0}``, of size ``m``,
write ``w_S = r u`` with ``u`` a unit vector: since ``w_S ~ N(0, s^2 I_m)``
independently of ``S`` and ``J``, ``r^2 ~ s^2 chi^2_m`` is independent of
``u``, and ``g = r J_S^T u``.  Hence

.. math::

    E[g_j^2 | u, S, J] = s^2 m\\, (J_S^T u)_j^2 = \\frac{s^2 m}{r^2} g_j^2, \\qquad
    E[\\|g\\|_p | u, S, J] = \\frac{E[r]}{r} \\|g\\|_p, \\quad
    E[r] = s \\sqrt 2\\, \\frac{\\Gamma((m + 1)/2)}{\\Gamma(m/2)}.

**Step 2, the number of active features** (when ``h = ReLU(c * z)`` with
``z`` the output of a weight layer that has one output unit per filter, e.g. a
dense layer, or conv6 whose last convolution ends at 1x1, and ``c`` a nonzero
BatchNorm scale).  Flipping the sign of filter ``i`` preserves its Gaussian
law, toggles whether feature ``i`` is active and leaves ``||dh_i/dx||``
unchanged; so, given the layers below (unless they output zero, when
``g = 0`` whatever the estimator), the active count ``m`` is Binomial(``n``,
1/2) and ``E[g_j^2 | S, below] = m C_j(below)``.  Dividing the sample by
``m P(m > 0) = m (1 - 2^-n)`` and multiplying by ``E[m] = n/2`` keeps the
mean exactly: ``E[m C (n/2) / (m (1 - 2^-n)) 1[m > 0]] = (n/2) E[C]``.

Together, the quadratic statistics (the per-coordinate map and the total)
are multiplied by ``s^2 (n/2) / ((1 - 2^-n) ||w_S||^2)`` (step 1 only:
``s^2 m / ||w_S||^2``); the l1 and l2 norms by ``E[r] / r`` (step 1).  The
loss gradient mixes all rows through the softmax and is left as measured.
Costs: nothing but the captured features; measured on conv6 at 3x32x32,
the coefficient of variation of ``||g||^2`` falls from 0.37 to 0.24 (2.4x
fewer initialisations for a given standard error).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import fx, nn

from pathstats.layer_engine.trace import FLATTEN_FUNCTIONS, FLATTEN_METHODS, RELU_FUNCTIONS

__all__ = ["ClassifierReduction", "plan_reduction", "reduction_factors"]



@dataclass(frozen=True)
class ClassifierReduction:
    """Where the classifier's weights can be integrated analytically (see the module notes).

    Attributes
    ----------
    classifier : str
        Name of the final linear layer (step 1).
    variance : float
        Declared variance ``s^2`` of its weights.
    features : int
        Its fan-in ``n``.
    flip_layer : str or None
        The weight layer whose filters' signs decide which features are active
        (step 2), or None where step 2 does not hold.
    reason : str
        Why step 2 holds or not, in words.
    """

    classifier: str
    variance: float
    features: int
    flip_layer: str | None
    reason: str

    def describe(self) -> str:
        """One line for reports."""
        text = f"norm of the probed row of {self.classifier!r} integrated analytically"
        if self.flip_layer is not None:
            return text + f"; active-feature count of {self.flip_layer!r} replaced by its mean n/2 = {self.features / 2:g}"
        return text + f"; active-feature count kept ({self.reason})"


def plan_reduction(graph: fx.GraphModule, variances: dict) -> ClassifierReduction | None:
    """Find the classifier and decide which reduction steps hold for this network.

    Parameters
    ----------
    graph : torch.fx.GraphModule
        The traced network (eval mode, biases zero as declared).
    variances : dict
        Declared weight variances by layer name (``init_variances()``).

    Returns
    -------
    ClassifierReduction or None
        None when the output is not a linear layer of declared variance used
        once (nothing is integrated then; samples stay raw).

    Examples
    --------
    >>> from pathstats import nets
    >>> net = nets.build("fc", (24,), widths=(16, 16))
    >>> plan = plan_reduction(fx.symbolic_trace(net), net.init_variances())
    >>> plan.classifier, plan.features, plan.flip_layer
    ('classifier', 16, 'features.3')
    >>> net = nets.build("conv6", (3, 64, 64))  # the last convolution ends at 2x2: filters are shared
    >>> plan_reduction(fx.symbolic_trace(net), net.init_variances()).flip_layer is None
    True
    """
    output = next(node for node in graph.graph.nodes if node.op == "output")
    head = output.args[0]
    if not isinstance(head, fx.Node) or head.op != "call_module":
        return None
    classifier = graph.get_submodule(head.target)
    if not isinstance(classifier, nn.Linear) or head.target not in variances or _calls(graph, head.target) != 1:
        return None
    flip_layer, reason = _flip_layer(graph, head.args[0], classifier.in_features, variances)
    return ClassifierReduction(head.target, float(variances[head.target]), classifier.in_features, flip_layer, reason)


def _calls(graph: fx.GraphModule, target: str) -> int:
    return sum(node.op == "call_module" and node.target == target for node in graph.graph.nodes)


def _flip_layer(graph: fx.GraphModule, node, features: int, variances: dict) -> tuple:
    """Walk back from the features: reshapes, one ReLU, an optional BatchNorm, a weight layer."""
    def single_use(n) -> bool:
        return isinstance(n, fx.Node) and len(n.users) == 1

    while single_use(node) and _is_reshape(graph, node):
        node = node.args[0]
    if not (single_use(node) and _is_relu(graph, node)):
        return None, "the features are not the ReLU of one layer"
    node = node.args[0]
    norm = graph.get_submodule(node.target) if single_use(node) and node.op == "call_module" else None
    if isinstance(norm, nn.modules.batchnorm._BatchNorm):
        if not _sign_preserving(norm):
            return None, "the BatchNorm before the last ReLU is not a nonzero scale"
        node = node.args[0]
    if not (single_use(node) and node.op == "call_module" and node.target in variances and _calls(graph, node.target) == 1):
        return None, "the last ReLU does not follow a weight layer used once"
    layer = graph.get_submodule(node.target)
    filters = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    if filters != features:
        return None, f"{node.target!r} shares each filter among {features // filters} features"
    return node.target, "one filter per feature"


def _is_reshape(graph, node) -> bool:
    if node.op == "call_function":
        return node.target in FLATTEN_FUNCTIONS
    if node.op == "call_method":
        return node.target in FLATTEN_METHODS
    return node.op == "call_module" and isinstance(graph.get_submodule(node.target), nn.Flatten)


def _is_relu(graph, node) -> bool:
    if node.op == "call_function":
        return node.target in RELU_FUNCTIONS
    if node.op == "call_method":
        return node.target == "relu"
    return node.op == "call_module" and isinstance(graph.get_submodule(node.target), nn.ReLU)


def _sign_preserving(norm: nn.Module) -> bool:
    """Eval-mode BatchNorm that multiplies each channel by a nonzero constant (no shift)."""
    if norm.training or norm.running_mean is None:
        return False
    shift_free = not norm.running_mean.any() and (norm.bias is None or not norm.bias.any())
    return bool(shift_free and (norm.weight is None or norm.weight.all()))


def reduction_factors(plan: ClassifierReduction, features: torch.Tensor, row: torch.Tensor) -> tuple:
    """Per-sample factors for the quadratic statistics and for the norms of ``g = J^T w``.

    Parameters
    ----------
    plan : ClassifierReduction
    features : torch.Tensor
        ``(B, n)``: the classifier's input of each sample.
    row : torch.Tensor
        ``(B, n)``: the probed row ``w`` of each sample's classifier.

    Returns
    -------
    (quadratic, norm) : tuple of torch.Tensor
        ``(B,)`` float64 factors: multiply ``g_j^2`` (and ``||g||^2``) by the
        first, ``||g||_1`` and ``||g||_2`` by the second.  Both are 0 where no
        feature is active (then ``g = 0``).

    Examples
    --------
    With every feature active and ``||w||^2 = s^2 n``, nothing changes:

    >>> plan = ClassifierReduction("classifier", 0.25, 4, None, "")
    >>> quadratic, norm = reduction_factors(plan, torch.ones(1, 4), torch.full((1, 4), 0.5))
    >>> float(quadratic[0]), round(float(norm[0]), 4)  # E[r] < sqrt(E[r^2]): Jensen
    (1.0, 0.94)
    """
    support = features.detach() != 0
    active = support.sum(dim=1).double()
    radius_sq = (row.detach().double() ** 2 * support).sum(dim=1)
    safe = torch.where(active > 0, radius_sq, torch.ones_like(radius_sq))
    count = active if plan.flip_layer is None else plan.features / 2 / -math.expm1(-plan.features * math.log(2))
    quadratic = torch.where(active > 0, plan.variance * count / safe, torch.zeros_like(safe))
    half = torch.clamp(active, min=1) / 2
    mean_radius = math.sqrt(2 * plan.variance) * torch.exp(torch.lgamma(half + 0.5) - torch.lgamma(half))
    norm = torch.where(active > 0, mean_radius / safe.sqrt(), torch.zeros_like(safe))
    return quadratic, norm
