"""Predicted input gradients of a network at initialisation (docs pages "Command line" and "API reference").

:func:`predict` traces a registered architecture or any module built from
supported layers and returns a :class:`Prediction`: the per-coordinate
``E[(do/dx)^2]`` in the chosen mode, the path-sum map ``S(x)``, Lemma 7's total,
(S), exact path counts, the average-pooling factor of Theorem 11 and the
predicted norms of logit and loss gradients.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from ._io import atomic_write
from ._validate import check_int, check_shape
from .errors import InvalidArgumentError, PathstatsError
from .layer_engine.recursion import (FINGERPRINT_PRIMES, backward_map, count_classes, fingerprint_maps, merge_notes, model_map, path_count_map,
                           propagate_laws)
from .layer_engine.rules import Note
from .progress import progress as progress_bar
from .layer_engine.trace import read_model

__all__ = ["Prediction", "predict", "loss_gradient_factor", "MODES", "save_array"]

MODES = ("model", "theory")
GAUSS_L1 = math.sqrt(2.0 / math.pi)  # E|g| / sqrt(E g^2) for a centred Gaussian g


def loss_gradient_factor(classes: int) -> float:
    """``(1 - q_c)^2 + sum_{k != c} q_k^2`` at the uniform softmax ``q_k = 1/K``.

    Step 2 of the proof of Theorem 4: with logit gradients uncorrelated across
    logits, ``E[(dL/dx)^2] = E[(do/dx)^2] * factor``, and the factor is ``(K-1)/K``.

    Examples
    --------
    >>> round(loss_gradient_factor(10), 15)
    0.9
    """
    if classes < 2:
        raise InvalidArgumentError(f"a softmax over {classes} class has no gradient; --classes needs K >= 2")
    q = 1.0 / classes
    return (1 - q) ** 2 + (classes - 1) * q**2


def _norms(grad_sq: np.ndarray, factor: float = 1.0) -> dict:
    """Predicted norms of a gradient whose coordinates have second moments ``factor * grad_sq``."""
    moments = factor * grad_sq
    root = np.sqrt(moments)
    return {
        "l1": float(GAUSS_L1 * root.sum()),
        "l1_upper": float(root.sum()),
        "l2": float(math.sqrt(moments.sum())),
        "l2_sq": float(moments.sum()),
    }


@dataclass
class Prediction:
    """The prediction for one network, input shape and mode.

    Attributes
    ----------
    grad_sq_map : numpy.ndarray
        float64 array of ``input_shape``: predicted ``E[(do/dx)^2]`` for one logit.
    path_sum_map : numpy.ndarray
        float64 array of ``input_shape``: the path sum ``S(x)`` (``c_v = 1/d_v``).
    path_count_map : numpy.ndarray
        object array of ``input_shape``: exact ``|P(x, o)|`` as Python ints.
    lemma7_total : float
        ``sum_x S(x)`` in float64: Lemma 7 says exactly 1, and the float sum is 1 up
        to rounding (e.g. ``0.9999999999999998``), so compare with
        ``math.isclose(p.lemma7_total, 1, rel_tol=1e-12)``, not ``== 1``
        (:func:`pathstats.lemma7_total` on a DAG is an exact ``Fraction``).
    symmetric : bool
        Whether (S) holds (fingerprints of the path-degree multisets).
    symmetry_classes : int
        Number of distinct path-degree multisets among the inputs.
    avgpool_factor : float
        Theorem 11's ``1/(a_1 ... a_n)`` over the average-pooling layers (1 if none).
    notes : list of Note
        What the prediction neglects: per note the layer, the assumption and,
        where measured, the size of its effect.  A model-mode prediction
        without notes claims agreement with the Monte Carlo within its precision.
    gates : dict
        Model mode: each ReLU's (or LeakyReLU's) mean ``P(input > 0)`` under
        the forward laws (1/2 for a centred Gaussian input).
    avgpool_layers : dict
        The average-pooling layers behind :attr:`avgpool_factor`, each with its window size ``a``.
    maxpool_routing : dict
        Model mode: per max-pooling layer, the mean probability that a member
        is its window's arg-max with a positive value, and the uniform
        routing's ``P(value > 0) / n`` beside it.
    """

    arch: str
    input_shape: tuple
    mode: str
    init: str
    classes: int
    grad_sq_map: np.ndarray
    path_sum_map: np.ndarray
    path_count_map: np.ndarray
    symmetry_classes: int
    avgpool_factor: float
    notes: list = field(default_factory=list)
    elapsed_s: float = 0.0
    gates: dict = field(default_factory=dict)
    maxpool_routing: dict = field(default_factory=dict)
    avgpool_layers: dict = field(default_factory=dict)

    @property
    def has_avgpool(self) -> bool:
        """Whether an average-pooling layer is on the paths (:attr:`avgpool_factor` names it)."""
        return bool(self.avgpool_layers)

    @property
    def d(self) -> int:
        return int(math.prod(self.input_shape))

    @property
    def lemma7_total(self) -> float:
        return float(self.path_sum_map.sum())

    @property
    def symmetric(self) -> bool:
        return self.symmetry_classes == 1

    @property
    def logit_grad(self) -> dict:
        """Predicted norms of ``do/dx``: ``l1`` Gaussian approximation, ``l1_upper`` Jensen bound,
        ``l2`` = ``sqrt(E||do/dx||_2^2)`` (a Jensen upper bound on ``E||do/dx||_2``)."""
        return _norms(self.grad_sq_map)

    @property
    def loss_grad(self) -> dict | None:
        """Predicted norms of the cross-entropy gradient ``dL/dx``, each under the assumption
        that makes it hold (None for a single-logit model: a softmax over one class has no
        gradient).

        With ``r = q - e_c`` (softmax ``q``, label ``c``), ``dL/dx = sum_k r_k do_k/dx``.
        Assume (A): the logit gradients are uncorrelated with each other and with the
        softmax and label, each with the predicted ``E[(do/dx)^2]``.  Then
        ``E[(dL/dx)^2] = E[F] E[(do/dx)^2]`` with ``F = ||q - e_c||^2``, and:

        * at a uniform softmax (equal logits) ``F = (K-1)/K`` (``factor``): ``l2`` and
          ``l1_upper`` are then Jensen upper bounds on ``E||dL/dx||_2`` and ``_1``,
          ``l1`` a Gaussian approximation.  At initialisation the logits are not equal,
          and for a label drawn uniformly ``E[F] = 1 - 2/K + E||q||^2 >= (K-1)/K``: these
          values are approximations from below, not bounds (``assumption``);
        * for any softmax ``F = (1-q_c)^2 + sum_{k != c} q_k^2 < 2 (1-q_c)^2 <= 2``, so under
          (A) alone ``E||dL/dx||_2 < sqrt(2 E||do/dx||_2^2)`` and ``E||dL/dx||_1 <
          sqrt(2) sum_x sqrt(E[(do/dx)^2])`` (``any_softmax``), while ``l2_sq`` bounds
          ``E||dL/dx||_2^2`` from below.

        Examples
        --------
        >>> p = predict("fc", (64,))
        >>> loss = p.loss_grad
        >>> round(loss["l2"] ** 2 / p.logit_grad["l2_sq"], 12), round(loss["any_softmax"]["l2_upper"] ** 2 / p.logit_grad["l2_sq"], 12)
        (0.9, 2.0)
        """
        if self.classes < 2:
            return None
        factor = loss_gradient_factor(self.classes)
        logit = _norms(self.grad_sq_map)
        return {
            **_norms(self.grad_sq_map, factor),
            "factor": factor,
            "assumption": f"uniform softmax (q_k = 1/K, equal logits): factor (K-1)/K = {factor:.4g}, and logit gradients "
                          "uncorrelated with each other and with the softmax; under it l2 and l1_upper are Jensen upper "
                          "bounds. At initialisation the logits differ and E[factor] >= (K-1)/K for a uniform label, so "
                          "these are approximations, not bounds (with uncorrelated logit gradients alone, l2_sq is a "
                          "lower bound on E||dL/dx||_2^2)",
            "any_softmax": {
                "factor_max": 2.0,
                "l2_upper": math.sqrt(2.0) * logit["l2"],
                "l1_upper": math.sqrt(2.0) * logit["l1_upper"],
                "assumption": "any softmax and label: factor (1-q_c)^2 + sum_{k!=c} q_k^2 < 2; logit gradients "
                              "uncorrelated with each other and with the softmax; strict upper bounds (Jensen)",
            },
        }

    def to_dict(self) -> dict:
        """The JSON object of ``pathstats predict --json`` (docs page "Command line")."""
        g, s = self.grad_sq_map, self.path_sum_map
        counts = self.path_count_map.ravel()
        logit = self.logit_grad
        return {
            "arch": self.arch,
            "input_shape": list(self.input_shape),
            "d": self.d,
            "mode": self.mode,
            "init": self.init,
            "classes": self.classes,
            "lemma7_total": self.lemma7_total,
            "path_sum": {"min": float(s.min()), "mean": float(s.mean()), "max": float(s.max()),
                         "min_times_d": float(s.min()) * self.d, "max_times_d": float(s.max()) * self.d},
            "symmetric": self.symmetric,
            "symmetry_classes": self.symmetry_classes,
            "grad_sq": {"min": float(g.min()), "mean": float(g.mean()), "max": float(g.max()), "total": float(g.sum())},
            "grad_l1_upper": logit["l1_upper"],
            "grad_l1_gauss": logit["l1"],
            "grad_l2": logit["l2"],
            "avgpool_factor": self.avgpool_factor,
            "n_paths": {"min": str(min(counts)), "max": str(max(counts))},
            "loss_grad": self.loss_grad,
            "notes": [note.to_dict() if isinstance(note, Note) else Note(None, str(note)).to_dict() for note in self.notes],
            "gates": dict(self.gates),
            "maxpool_routing": dict(self.maxpool_routing),
            "avgpool_layers": dict(self.avgpool_layers),
            "elapsed_s": self.elapsed_s,
        }


def _resolve(model: Any, input_shape: Any, classes: int | None) -> tuple:
    if input_shape is not None:
        input_shape = check_shape(input_shape)
    if isinstance(model, str):
        from pathstats import nets  # the registry lives in the sibling package

        arch = nets.get(model)
        shape = input_shape if input_shape is not None else arch.default_shape(3072)
        classes = 10 if classes is None else check_int(classes, "classes", minimum=1, hint="the number of logits")
        return arch.build(shape, classes), model, shape
    if not isinstance(model, nn.Module):
        raise InvalidArgumentError(f"model must be a registered name or a torch.nn.Module, not {type(model).__name__}")
    if input_shape is None:
        raise InvalidArgumentError("input_shape is required for a module (the shape of one input, batch axis excluded)")
    return model, type(model).__name__, input_shape


def _init_policy(model: nn.Module, init: Any) -> tuple:
    if init is None:
        declared = getattr(model, "init_variances", None)
        if callable(declared):
            return declared(), f"declared: {getattr(model, 'declared_init', 'the module init_variances()')}"
        return "weights", "weights: mean square of the module's own weights"
    if isinstance(init, dict):
        return init, "mapping from layer name to variance"
    labels = {"he": "he: 2/fan_in for every weight layer", "torch": "torch: PyTorch default, 1/(3 fan_in)",
              "weights": "weights: mean square of the module's own weights"}
    if init not in labels:
        raise InvalidArgumentError(f"init must be None, 'he', 'torch', 'weights' or a mapping, not {init!r}")
    return init, labels[init]


def _avgpool_layers(graph) -> dict:
    """Average-pooling layer name -> its window size ``a`` (Theorem 11's factor is ``prod 1/a``)."""
    return {rule.name: int(rule.divisor.max()) for rule in graph.node_rules() if rule.category == "avgpool"}


def predict(model: Any, input_shape: Any = None, mode: str = "model", classes: int | None = None, init: Any = None,
            progress: bool = False) -> Prediction:
    """Predict the input gradients of a network at initialisation.

    Parameters
    ----------
    model : str or torch.nn.Module
        A registered architecture (``pathstats archs``) or any module built from
        supported layers, returning logits ``(batch, K)``.
    input_shape : tuple of int
        One input's shape, batch axis excluded (default for a registered image
        architecture: ``(3, 32, 32)``).
    mode : {"model", "theory"}
        ``theory``: the paper's (H)/(H') literally, ``c_v = 1/d_v`` or ``1/a_v^2``;
        refuses layers outside them.  ``model``: the module as initialised.
    classes : int, optional
        ``K`` for the loss gradient; default: the model's number of logits (a
        registered architecture is built with ``K`` logits, default 10).
    init : None, "he", "torch", "weights" or mapping
        Where model mode takes each weight layer's variance from; None: the
        declared initialisation of a registered architecture, else "weights".
        Theory mode takes no ``init`` (its variances are the paper's by definition).
    progress : bool, default False
        Show progress on stderr, layer by layer, for predictions that take more
        than two seconds (:func:`pathstats.progress.progress`).

    Returns
    -------
    Prediction

    Raises
    ------
    PathstatsError
        Unknown architecture, impossible shape (or an int where a shape tuple is
        wanted), unsupported layer, a layer outside (H') in theory mode, a bad
        ``init`` or an ``init`` with theory mode.

    Notes
    -----
    Cost: a few backward passes over the traced layers (float64 for the maps,
    exact integers for the path counts, four modular passes for (S)), each about
    ``sum_layers kernel * H * W`` operations, independent of the channel count.

    Examples
    --------
    >>> p = predict("conv6", (3, 32, 32), mode="theory")
    >>> round(p.lemma7_total, 12), p.grad_sq_map.shape, p.symmetric
    (1.0, (3, 32, 32), False)
    >>> round(float(p.grad_sq_map.sum()), 12)
    1.0
    >>> predict("conv6-avgpool", (3, 32, 32), mode="theory").avgpool_factor == 1 / 1024
    True
    """
    if mode not in MODES:
        raise InvalidArgumentError(f"mode must be one of {MODES}, not {mode!r}")
    if mode == "theory" and init is not None:
        raise InvalidArgumentError(
            f"init={init!r} sets the weight variances of model mode; theory mode uses those of the paper's (H)/(H') "
            "by definition, so it takes no init: drop init, or use mode 'model'")
    start = time.perf_counter()
    module, name, shape = _resolve(model, input_shape, classes)
    policy, init_label = _init_policy(module, init)
    graph = read_model(module, shape, init=policy)
    if classes is not None and not isinstance(model, str) and classes != graph.classes:
        raise InvalidArgumentError(f"classes={classes} but the model has {graph.classes} logits")
    passes = 3 + len(FINGERPRINT_PRIMES)  # mode, path sums, counts, fingerprints
    gates, routing, law_notes = {}, {}, []
    with progress_bar(total=passes * len(graph.rules), desc=f"predict {name} {'x'.join(map(str, shape))}", unit="layer",
                      disable=not progress, delay=2.0) as bar:
        if mode == "model":
            forward = propagate_laws(graph)
            grad_sq = model_map(graph, forward)
            gates, routing, law_notes = forward.gates, forward.routing, forward.notes
            bar.update(len(graph.rules))
        else:
            grad_sq = backward_map(graph, mode, bar=bar)
        path_sum = backward_map(graph, "path_sum", bar=bar)
        counts = path_count_map(graph, bar=bar)
        n_classes = count_classes(fingerprint_maps(graph, bar=bar))
    notes = merge_notes(list(graph.notes) + law_notes)
    pools = _avgpool_layers(graph)
    if n_classes > 1:
        spread = path_sum * math.prod(shape)
        notes.append(Note(
            None, f"(S) fails: {n_classes} classes of inputs; S(x)*d ranges from {spread.min():.4g} to {spread.max():.4g}, "
            "so the per-coordinate gradient is not uniform (Lemma 8 does not apply)"
        ))
    if mode == "model" and isinstance(model, str) and init is None and classes in (None, 10):
        gap = _measured_gap_note(name, shape, float(grad_sq.sum()))
        if gap is not None:
            notes.append(gap)
    if mode == "model" and isinstance(policy, str) and policy == "weights" and not isinstance(model, str):
        notes.append(Note(None, "model mode took each layer's variance from its present weights (init='weights')"))
    return Prediction(name, shape, mode, init_label, graph.classes, grad_sq, path_sum, counts, n_classes,
                      1.0 / math.prod(pools.values()), notes, time.perf_counter() - start, gates, routing, pools)


def _measured_gap_note(name: str, shape: tuple, predicted: float) -> Note | None:
    """The measured size of everything model mode still neglects on a registered net,
    where the Monte Carlo differs from this prediction by more than 4 standard errors
    (``benchmarks/registered_gaps.py``; a test keeps the stored predictions equal to
    model mode's)."""
    from pathstats import nets

    gap = nets.measured_gap(name, shape)
    if gap is None or abs(gap["z"]) <= 4 or not math.isclose(gap["predicted"], predicted, rel_tol=1e-6):
        return None
    rel, rel_se = gap["measured"] / predicted - 1, gap["stderr"] / predicted
    return Note(None, f"on {name} {'x'.join(map(str, shape))} the Monte Carlo measured E||do/dx||_2^2 = "
                f"{gap['measured']:.4g} +- {gap['stderr']:.2g} (N = {gap['samples']}, seed {gap['seed']}) against this "
                f"prediction: the approximations noted here add up to",
                f"measured {100 * rel:+.1f}% +- {100 * rel_se:.1f}%, z = {gap['z']:+.1f}")


def save_array(path: str, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` as .npy atomically (a temporary file, then a rename)."""
    atomic_write(path, lambda f: np.save(f, array))
