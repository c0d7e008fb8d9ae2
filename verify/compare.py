"""Monte Carlo estimates against the predictions, with honest statistics."""

from __future__ import annotations

import math

import numpy as np
from scipy import special  # not scipy.stats: its import alone costs pathstats verify ~0.5 s

from pathstats.errors import InvalidArgumentError
from pathstats.prediction import Prediction

from pathstats.stats import Estimate

from .montecarlo import MonteCarloResult

__all__ = ["map_fit", "map_test_min_samples", "map_test_bin_bounds", "compare"]


def map_fit(result: MonteCarloResult, predicted: np.ndarray, bins: int = 8) -> dict:
    """Goodness of fit of the per-coordinate map: Hotelling's T^2 on binned coordinates.

    Coordinates of one initialisation are strongly correlated, so a chi-square
    over all ``d`` coordinates would be wrong.  Coordinates are grouped by their
    distance to the border (``bins`` rings, the last one holding the interior;
    contiguous chunks for flat inputs), each ring split at the median of the
    prediction, so the partition sees border effects even where a (wrong)
    prediction is flat; each initialisation gives one
    vector of bin means, whose mean over the ``N`` samples is compared with the
    predicted bin means using the sample covariance:
    ``T^2 = N (m - mu)^T S^{-1} (m - mu)`` and ``F = (N - B) T^2 / (B (N - 1))``,
    which follows ``F(B, N - B)`` when the prediction is right (Gaussian limit).

    Returns
    -------
    dict
        ``statistic`` (F), ``dof`` ([B, N - B]), ``p_value``, ``bins`` and
        ``method``.
    """
    n = result.samples
    flat_pred = np.asarray(predicted, dtype=np.float64).ravel()
    samples = result.grad_sq_samples.reshape(n, -1)
    labels = _bin_labels(result.input_shape, flat_pred, bins)
    groups = [np.flatnonzero(labels == b) for b in np.unique(labels)]
    b = len(groups)
    if n < b + 2:
        raise InvalidArgumentError(f"the map test over {b} bins needs at least {b + 2} samples; got {n}")
    observed = np.stack([samples[:, g].mean(axis=1) for g in groups], axis=1)
    expected = np.array([flat_pred[g].mean() for g in groups])
    diff = observed.mean(axis=0) - expected
    cov = np.cov(observed, rowvar=False).reshape(b, b)
    t2 = float(n * diff @ np.linalg.pinv(cov) @ diff)
    f = (n - b) * t2 / (b * (n - 1))
    return {"statistic": f, "dof": [b, n - b], "p_value": float(special.fdtrc(b, n - b, f)), "bins": b,
            "method": "Hotelling T^2 over border rings x prediction halves, F-distributed"}


def map_test_min_samples(input_shape: tuple, predicted: np.ndarray, bins: int = 8) -> tuple:
    """``(minimum N, number of bins B)`` for :func:`map_fit` on this shape and prediction.

    The test needs ``N >= B + 2`` initialisations (a non-singular B x B sample
    covariance and an F distribution with positive degrees of freedom); ``B``
    depends on the input shape and on where the prediction is flat, so it is known
    from the prediction, before the Monte Carlo.

    Examples
    --------
    >>> import numpy as np
    >>> map_test_min_samples((64,), np.arange(64.0))
    (10, 8)
    """
    flat = np.asarray(predicted, dtype=np.float64).ravel()
    b = len(np.unique(_bin_labels(tuple(input_shape), flat, bins)))
    return b + 2, b


def map_test_bin_bounds(input_shape: tuple, bins: int = 8) -> tuple:
    """Least and most bins :func:`map_fit` can use on inputs of this shape, whatever
    the prediction: one or two per border ring.

    Known from the shape alone, so a sample count can be refused before predicting.

    Examples
    --------
    >>> map_test_bin_bounds((3, 32, 32)), map_test_bin_bounds((3, 4, 4)), map_test_bin_bounds((5,))
    ((8, 16), (2, 4), (5, 10))
    """
    shape = tuple(input_shape)
    rings = min(bins, (min(shape[1:]) - 1) // 2 + 1) if len(shape) >= 2 else min(bins, math.prod(shape))
    return rings, 2 * rings


def _bin_labels(shape: tuple, flat_pred: np.ndarray, bins: int) -> np.ndarray:
    if len(shape) >= 2:
        grids = np.meshgrid(*[np.arange(n) for n in shape[1:]], indexing="ij")
        ring = np.min([np.minimum(g, n - 1 - g) for g, n in zip(grids, shape[1:])], axis=0)
        ring = np.broadcast_to(np.minimum(ring, bins - 1), shape).ravel()
    else:
        ring = (np.arange(flat_pred.size) * bins) // flat_pred.size
    return 2 * ring + (flat_pred > np.median(flat_pred))


def _entry(estimate: Estimate, predicted: float, upper: float | None = None) -> dict:
    stderr = estimate.stderr if estimate.stderr is not None else math.inf  # one sample: no spread known
    z = (estimate.value - predicted) / stderr if stderr > 0 else math.inf
    entry = {"estimate": estimate.value, "stderr": stderr, "samples": estimate.n, "predicted": predicted, "z": z,
             "relative_error": (estimate.value - predicted) / predicted if predicted else math.nan}
    if upper is not None:
        entry["predicted_upper"] = upper
    return entry


def compare(result: MonteCarloResult, model_prediction: Prediction, theory_prediction: Prediction | None = None) -> dict:
    """Compare a Monte Carlo run with the model-mode prediction (and theory mode beside it).

    Returns the JSON object of ``pathstats verify --json`` without the run's
    identification (arch, device, ...), which the caller adds.
    """
    if model_prediction.mode != "model":
        raise InvalidArgumentError("verify compares with the model-mode prediction")
    logit, loss = model_prediction.logit_grad, model_prediction.loss_grad
    total = result.total()
    report = {
        "grad_sq_total": _entry(total, float(model_prediction.grad_sq_map.sum())),
        "map_fit": map_fit(result, model_prediction.grad_sq_map),
        "logit_grad_l1": _entry(Estimate.of(result.logit_l1), logit["l1"], logit["l1_upper"]),
        "logit_grad_l2": _entry(Estimate.of(result.logit_l2), logit["l2"]),
    }
    if result.loss_l1 is not None:
        report["loss_grad_l1"] = _entry(Estimate.of(result.loss_l1), loss["l1"], loss["l1_upper"])
        report["loss_grad_l2"] = _entry(Estimate.of(result.loss_l2), loss["l2"])
        for key in ("loss_grad_l1", "loss_grad_l2"):  # the uniform-softmax values are bounds only under it
            report[key]["assumption"] = loss["assumption"]
        report["loss_grad_l2"]["predicted_upper_any_softmax"] = loss["any_softmax"]["l2_upper"]
        report["softmax_factor"] = _entry(Estimate.of(result.softmax_factor), loss["factor"])
    if theory_prediction is not None:
        theory_total = float(theory_prediction.grad_sq_map.sum())
        report["theory"] = {
            "grad_sq_total": theory_total,
            "relative_deviation_from_model": (theory_total - report["grad_sq_total"]["predicted"]) / report["grad_sq_total"]["predicted"],
        }
    return report
