"""Laws of units at initialisation: the forward half of model mode.

With ``x ~ N(0, I)`` and the weights of a random layer i.i.d. with zero mean,
a unit's pre-activation is, in the infinite-width limit, a centred Gaussian
whose variance is the layer's weight variance times the sum of the second
moments of the units it reads (the NNGP recursion, diagonal part).  Pointwise
layers, skips and poolings then make laws that are not symmetric: a ReLU's
output is non-negative with an atom at 0, a skip adds a non-negative stream
to a fresh Gaussian, a max pool takes the largest of its window.

A :class:`Law` holds, for every unit of a tensor, a distribution on one value
grid shared by the tensor's units.  The backward half of model mode
(:func:`pathstats.layer_engine.model_map`) carries, for every unit ``u`` and
grid value ``a``, the *joint* moment ``B(u, a) = E[delta_u^2 ; value_u = a]``
of the gradient ``delta_u = do/d value_u``; a gate then keeps exactly the
values where it is open, so that correlated gates along one unit's chain
(two ReLUs in a row, the post-addition ReLUs of a residual stream, a ReLU
before a max pool) are counted once, not multiplied as if independent.

Discretisation: ``BINS`` bins over ``+-SPAN`` standard deviations, with 0 a
bin edge, so that ``P(z > 0)`` of a centred Gaussian is exactly 1/2 and the
second moments are right to about ``(width / sigma)^2 / 12 < 1e-3``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtr

from ..errors import InvalidArgumentError

__all__ = ["BINS", "SPAN", "Law", "Joint", "collapse", "centre", "gaussian_law", "map_law", "sum_law", "sum_backward", "SumPlan", "max_law",
           "equicorrelation", "window_conditionals", "off_moment", "pair_gain", "sum_off_moment", "wedge_moment",
           "independent_centred", "derivative_pair_gain", "fan_in_factor"]

BINS = 256
SPAN = 8.0


@dataclass
class Law:
    """Distributions of a tensor's units on one value grid.

    Attributes
    ----------
    values : numpy.ndarray
        ``(G,)`` ascending grid values.
    probs : numpy.ndarray
        ``unit_shape + (G,)``: probability of each grid value per unit; any
        unit axis may have size 1 (all units along it alike).
    gauss : tuple or None
        ``(mean, std)`` arrays of ``unit_shape`` when the law is exactly a
        discretised Gaussian (additions then use its exact CDF).
    caveat : str or None
        Where the law is only approximate: why (the engine notes it where a
        gate or a max pool reads the law).
    latent : tuple or None
        ``(grid, mean, std, functions)`` where each unit is
        ``functions[-1](...functions[0](z))`` of a Gaussian ``z ~ N(mean, std^2)``
        discretised on ``grid`` (a Gaussian, a ReLU of one, its BatchNorm...).
    rho : float or None
        Where ``latent`` is set: the correlation of the latent Gaussians of two
        distinct units of one channel (interior units; see :func:`equicorrelation`).
    c_off : float or None
        ``E[v_a v_b] / E[v^2]`` for two distinct units ``a, b`` of one channel
        (the uncentred correlation, at an interior unit), where known; near a
        border it is applied to the units' own second moments.
    independent, wedge : bool
        Whether the units are independent centred Gaussians of one variance
        (the network's input), and whether they are the outputs of a random
        layer on such units (a first layer): see :func:`wedge_moment`.
    """

    values: np.ndarray
    probs: np.ndarray
    gauss: tuple | None = None
    caveat: str | None = None
    latent: tuple | None = None
    rho: float | None = None
    c_off: float | None = None
    window_rho: Any = None  # members (W, n) -> mean latent correlation of each window's member pairs
    factors: list | None = None  # [(weight, probs (G,))]: an interior unit's law given the common factor
    #: the units are independent centred Gaussians of one variance (the network's input, or an affine
    #: map of it without shift): a random layer on them is a first layer, whose gates model mode treats exactly
    independent: bool = False
    #: the units are the outputs of such a first layer (or a shift-free affine map of them): a gate on
    #: them leaves the pair gain of two positions to that layer (:func:`wedge_moment`)
    wedge: bool = False
    #: where the units are a random layer's outputs on independent inputs: its fan-in, over which
    #: the unit's variance ``|w|^2`` fluctuates (:func:`fan_in_factor`)
    fan_in: int | None = None

    def second_moment(self) -> np.ndarray:
        """``E[value^2]`` per unit (exact for a Gaussian law, else from the grid)."""
        if self.gauss is not None:
            return self.gauss[0] ** 2 + self.gauss[1] ** 2
        return self.probs @ (self.values**2)

    def mean(self) -> np.ndarray:
        """``E[value]`` per unit."""
        return self.probs @ self.values

    def positive(self) -> np.ndarray:
        """``P(value > 0)`` per unit."""
        return self.probs[..., self.values > 0].sum(axis=-1)

    def nonnegative(self) -> bool:
        """Whether every unit is ``>= 0`` almost surely."""
        return bool(self.values[0] >= 0) or bool((self.probs[..., self.values < 0] == 0).all())

    def broadcast(self, shape: tuple) -> "Law":
        """The same law with units broadcast to ``shape``."""
        probs = np.broadcast_to(self.probs, tuple(shape) + self.values.shape)
        gauss = None if self.gauss is None else tuple(np.broadcast_to(g, shape) for g in self.gauss)
        latent = None if self.latent is None else (self.latent[0], np.broadcast_to(self.latent[1], shape),
                                                    np.broadcast_to(self.latent[2], shape), self.latent[3])
        return Law(self.values, probs, gauss, self.caveat, latent, self.rho, self.c_off, self.window_rho, self.factors,
                   self.independent, self.wedge, self.fan_in)


@dataclass
class Joint:
    """The backward state ``B(u, a) = scale(u) * weight(u, a)`` of model mode, kept factored.

    A random layer hands its inputs ``B(u, a) = c(u) p(u, a)``: a gradient
    moment per unit times the unit's law, which is the same law at every
    position away from zero-padded borders (its unit axes then have size 1).
    Pointwise layers act on ``weight`` only, so the state costs ``O(d)`` for the
    moments plus ``O(G)`` per distinct law, not ``O(d G)``.  Rules that need
    every value of every unit (max pooling, the skip of an addition) call
    :meth:`dense`.

    Examples
    --------
    >>> B = Joint(np.array([[1.0, 2.0]]), np.array([[[0.25, 0.75]]]))
    >>> B.total().tolist(), B.dense().shape
    ([[1.0, 2.0]], (1, 2, 2))
    """

    scale: np.ndarray  # unit shape (any axis may have size 1)
    weight: np.ndarray  # unit shape + (G,)

    @classmethod
    def of(cls, dense: np.ndarray) -> "Joint":
        """A dense ``B`` (unit shape + ``(G,)``) as a state."""
        return cls(np.ones((1,) * (dense.ndim - 1)), dense)

    def total(self) -> np.ndarray:
        """``sum_a B(u, a)``: the gradient's second moment per unit."""
        return self.scale * self.weight.sum(axis=-1)

    def dense(self) -> np.ndarray:
        """``B`` on every unit and grid value."""
        return self.scale[..., None] * self.weight

    def map(self, function) -> "Joint":
        """``function`` applied to the value axis (a pointwise layer's step)."""
        return Joint(self.scale, function(self.weight))

    def __add__(self, other: "Joint") -> "Joint":
        if self.weight is other.weight or (self.weight.shape == other.weight.shape and self.weight.size <= 1 << 16
                                           and np.array_equal(self.weight, other.weight)):
            return Joint(self.scale + other.scale, self.weight)
        return Joint.of(self.dense() + other.dense())


def collapse(*arrays: np.ndarray, rtol: float = 1e-12) -> tuple:
    """The arrays with every axis along which all of them are constant (to ``rtol``) cut to size 1.

    A layer's laws are alike at every position its padding treats alike
    (reflect and circular padding: everywhere); one law per distinct
    position then does, and the laws cost ``O(G)`` instead of ``O(d G)``.

    Examples
    --------
    >>> [a.shape for a in collapse(np.ones((2, 3)), np.array([[1.0, 1, 1], [2, 2, 2]]))]
    [(2, 1), (2, 1)]
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    arrays = [np.broadcast_to(a, shape) for a in arrays]
    for axis in range(len(shape)):
        if arrays[0].shape[axis] > 1:
            firsts = [np.take(a, [0], axis=axis) for a in arrays]
            if all(np.allclose(a, f, rtol=rtol, atol=0) for a, f in zip(arrays, firsts)):
                arrays = firsts
    return tuple(np.ascontiguousarray(a) for a in arrays)


def centre(array: np.ndarray) -> float:
    """The value of an array of units at its centre (an interior unit, away from zero-padded borders)."""
    array = np.asarray(array)
    return float(array[tuple(n // 2 for n in array.shape)])


#: Probabilists' Gauss-Hermite rule for the common factor of equicorrelated units.
FACTOR_NODES, FACTOR_WEIGHTS = np.polynomial.hermite_e.hermegauss(48)
FACTOR_WEIGHTS = FACTOR_WEIGHTS / FACTOR_WEIGHTS.sum()


def equicorrelation(law: Law):
    """Yield ``(weight, conditional law)`` over the common factor of the units' latent Gaussians.

    With i.i.d. inputs and i.i.d. weights per tap, two distinct units of one
    channel have latent Gaussians with one correlation ``rho`` whatever their
    offset (in the interior: ``E[z_p z_q] = sigma_w^2 sum_taps E[h_{p+t} h_{q+t}]``
    reads only distinct pairs below, so by induction every distinct pair has
    the same moment).  Equicorrelated Gaussians are ``z_j = mean_j + std_j
    (sqrt(rho) g + sqrt(1 - rho) e_j)`` with one common ``g`` and independent
    ``e_j``: given ``g`` the units are independent.  Gauss-Hermite quadrature
    over ``g`` (48 nodes) then gives any law of several units.
    """
    grid, mean, std, functions = law.latent
    rho = min(max(law.rho or 0.0, 0.0), 1.0)
    yield from _factor_conditionals(grid, mean, std, rho, functions)


def _factor_conditionals(grid, mean, std, rho, functions):
    """Yield ``(weight, law)`` of equicorrelated latent Gaussians given each quadrature
    node ``g`` of their common factor, mapped through the unit's ``functions``."""
    edges = np.concatenate([[-np.inf], 0.5 * (grid[1:] + grid[:-1]), [np.inf]])
    spread = np.maximum(std * np.sqrt(1.0 - rho), 1e-300)
    for g, w in zip(FACTOR_NODES, FACTOR_WEIGHTS):
        cdf = ndtr((edges - (mean + std * np.sqrt(rho) * g)[..., None]) / spread[..., None])
        conditional = Law(grid, np.diff(cdf, axis=-1))
        for function in functions:
            conditional, _ = map_law(conditional, function)
        yield float(w), conditional


def window_conditionals(law: Law, members: np.ndarray):
    """Yield ``(weight, probs)``: the members' laws ``(C, W, n, G)`` given the common factor of each window.

    As :func:`equicorrelation`, with one correlation per window: the mean
    latent correlation of its member pairs (``law.window_rho``, which sees the
    zero-padded borders), else ``law.rho``.
    """
    grid, mean, std, functions = law.latent
    gather = np.where(members >= 0, members, 0)
    channels = law.probs.shape[0]
    if math.prod(law.probs.shape[1:-1]) == 1:  # one law for every position (see :func:`collapse`)
        gather = np.zeros_like(gather)
    mean = np.broadcast_to(mean, law.probs.shape[:-1]).reshape(channels, -1)[:, gather]
    std = np.broadcast_to(std, law.probs.shape[:-1]).reshape(channels, -1)[:, gather]
    rho = law.window_rho(members) if law.window_rho is not None else np.full(len(members), law.rho)
    rho = np.clip(rho, 0.0, 1.0)[None, :, None]
    for w, conditional in _factor_conditionals(grid, mean, std, rho, functions):
        yield w, conditional.probs


def sum_off_moment(x: Law, y: Law) -> float | None:
    """``E[z_a z_b]`` of two distinct interior units of ``z = x + y`` (independent ``x``, ``y``)."""
    if x.c_off is None or y.c_off is None:
        return None
    return (x.c_off * centre(x.second_moment()) + y.c_off * centre(y.second_moment())
            + 2 * centre(x.mean()) * centre(y.mean()))


def _interior_unit(law: Law) -> Law:
    """One interior unit of ``law`` (its latent Gaussian at the centre), for :func:`equicorrelation`."""
    grid, mean, std, functions = law.latent
    shape = law.probs.shape[:-1]
    return Law(grid, np.ones((1, len(grid))), None, None,
               (grid, np.array([centre(np.broadcast_to(mean, shape))]), np.array([centre(np.broadcast_to(std, shape))]), functions),
               law.rho)


def pair_gain(law: Law, slope: float = 0.0) -> float:
    """``E[a_p a_q]`` for the gains ``a = 1`` (open) or ``slope`` (closed) of one gate at two distinct interior units.

    The gates of two positions read correlated inputs: with equicorrelated
    latent Gaussians (correlation ``rho``) they are independent given the
    common factor, so ``E[a_p a_q] = E_g[E[a | g]^2]``, which for a centred
    Gaussian input is ``1/4 + arcsin(rho) / (2 pi)``.  Without a known
    correlation the gates are taken as independent.  An input that is a ReLU's
    output passes everything the gate below it let through: gain 1.

    Examples
    --------
    >>> round(pair_gain(gaussian_law(np.ones((1, 1)), rho=0.5)), 4), round(0.25 + math.asin(0.5) / (2 * math.pi), 4)
    (0.3333, 0.3333)
    """
    if law.nonnegative():
        return 1.0
    return derivative_pair_gain(law, lambda v: np.where(v > 0, 1.0, slope))  # a gate's derivative: 1 or its slope


def derivative_pair_gain(law: Law, derivative) -> float:
    """``E[f'(z_p) f'(z_q)]`` for a smooth activation ``f`` at two distinct interior units of one channel.

    As :func:`pair_gain` for a gate: the units' inputs are independent given the common
    factor of their latent Gaussians, so the expectation is ``E_g[E[f'(z) | g]^2]``
    (Gauss-Hermite over ``g``); without a known correlation the two are taken as
    independent, ``E[f'(z)]^2``.

    Examples
    --------
    >>> law = gaussian_law(np.ones((1, 1)), rho=0.0)
    >>> mean = float(law.probs[0, 0] @ (1 - np.tanh(law.values) ** 2))
    >>> bool(np.isclose(derivative_pair_gain(law, lambda z: 1 - np.tanh(z) ** 2), mean ** 2, rtol=1e-9))
    True
    """
    if law.latent is None or law.rho is None:
        return float(centre(law.probs @ derivative(law.values))) ** 2
    unit = _interior_unit(law)
    return sum(w * float(c.probs[0] @ derivative(c.values)) ** 2 for w, c in equicorrelation(unit))


def fan_in_factor(derivative, variance: float, fan_in: int, nodes: int = 2048) -> float:
    """``E[s h(s)] / (E[s] h(E[s]))``, ``h(s) = E[f'(sqrt(s) z)^2]``: a first layer's gain beyond its law's.

    A first layer's unit ``u = w.x`` on independent unit inputs is ``N(0, s)`` given the
    weights, ``s = |w|^2 = variance chi^2_n / n`` for fan-in ``n``, and the weight it
    carries the gradient through has ``E[w_i^2 | s] = s / n``; so the gradient's second
    moment through an activation ``f`` is ``E[s h(s)] / n``, where the law of ``u``
    (Gaussian of variance ``E[s]``) gives ``E[s] h(E[s]) / n``.  The ratio is 1 for a
    ReLU (``h`` is constant) and, at fan-in 27, about 0.99 for tanh, whose ``f'^2``
    falls with the scale (the midpoint rule over ``nodes`` quantiles of ``s``, Gauss-Hermite over ``z``).

    Examples
    --------
    >>> relu = lambda z: (z > 0).astype(float)
    >>> round(fan_in_factor(relu, 2.0, 27), 12)
    1.0
    >>> bool(fan_in_factor(lambda z: 1 - np.tanh(z) ** 2, 2.0, 27) < 1)
    True
    """
    from scipy.stats import chi2

    scales = variance * chi2.ppf((np.arange(nodes) + 0.5) / nodes, fan_in) / fan_in
    weights = np.full(nodes, 1.0 / nodes)

    def h(s):
        z = np.sqrt(np.asarray(s, dtype=np.float64))[..., None] * FACTOR_NODES
        return (derivative(z) ** 2) @ FACTOR_WEIGHTS

    mean = float(weights @ scales)  # the rule's own E[s], so that a constant h gives exactly 1
    return float(weights @ (scales * h(scales))) / (mean * float(h(mean)))


def independent_centred(law: Law) -> bool:
    """Whether the units are independent centred Gaussians of one variance (see :attr:`Law.independent`)."""
    if not law.independent or law.gauss is None:
        return False
    mean, std = (np.asarray(g) for g in law.gauss)
    return bool((mean == 0).all()) and float(np.ptp(std)) == 0.0


def wedge_moment(a: np.ndarray, b: np.ndarray, variance: float = 1.0) -> np.ndarray:
    """``E[w w^T 1(w.a > 0) 1(w.b > 0)]`` for ``w ~ N(0, variance I)``: the second moment of a Gaussian on a wedge.

    With ``theta`` the angle between ``a`` and ``b`` and unit vectors ``u = a/|a|``, ``v = b/|b|``:
    ``variance [(pi - theta)/(2 pi) I + (u v^T + v u^T - cos(theta) (u u^T + v v^T)) / (2 pi sin(theta))]``.
    Derivation: the component of ``w`` orthogonal to ``a`` and ``b`` is independent of the two gates,
    which are open together on a planar wedge of angle ``pi - theta`` around ``u + v``; in polar
    coordinates its second moment is ``((alpha - sin alpha) I + 2 sin(alpha) m m^T) / (2 pi)``
    (``alpha = pi - theta``, ``m`` the unit bisector).  It is the mixed second derivative of the
    arc-cosine kernel of degree 1 (Cho and Saul, 2009): ``a^T M b = |a||b| (sin(theta) + (pi - theta)
    cos(theta)) / (2 pi)``.  ``theta -> 0`` gives ``variance I / 2`` (one gate); two gates on
    orthogonal inputs give ``I / 4`` plus ``(u v^T + v u^T) / (2 pi)``, the term that the
    gradient-independence step drops: gates correlated with the weights they multiply.

    Examples
    --------
    >>> M = wedge_moment(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    >>> np.round(M * 2 * math.pi, 6).tolist()   # (pi/2) I + u v^T + v u^T
    [[1.570796, 1.0], [1.0, 1.570796]]
    >>> bool(np.allclose(wedge_moment(np.array([1.0, 2.0]), np.array([2.0, 4.0])), np.eye(2) / 2))
    True
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or not (np.linalg.norm(a) > 0 and np.linalg.norm(b) > 0):
        raise InvalidArgumentError(f"wedge_moment needs two non-zero vectors of one length, got shapes {a.shape} and {b.shape}")
    u, v = a / np.linalg.norm(a), b / np.linalg.norm(b)
    cos = float(np.clip(u @ v, -1.0, 1.0))
    theta = math.acos(cos)
    result = (math.pi - theta) / (2 * math.pi) * np.eye(len(a))
    sin = math.sin(theta)
    if sin > 1e-12:  # at theta = 0 or pi the rank-two term vanishes (it is O(sin theta))
        result += (np.outer(u, v) + np.outer(v, u) - cos * (np.outer(u, u) + np.outer(v, v))) / (2 * math.pi * sin)
    return variance * result


def off_moment(law: Law) -> float | None:
    """``E[v_a v_b]`` of two distinct interior units: ``E_g[E[v | g]^2]`` over the common factor
    (the units are independent given it: a latent Gaussian's, or a max pool's ``factors``)."""
    if law.factors is not None:
        return sum(w * float(p @ law.values) ** 2 for w, p in law.factors)
    if law.latent is None or law.rho is None:
        return None
    unit = _interior_unit(law)
    return sum(w * float(c.mean()[0]) ** 2 for w, c in equicorrelation(unit))


def _edges(lo: float, hi: float, bins: int) -> np.ndarray:
    """About ``bins`` equal bins covering ``[lo, hi]``, with 0 on an edge."""
    width = max(hi - lo, 1e-12 * max(abs(lo), abs(hi), 1.0)) / bins
    return width * np.arange(np.floor(lo / width), np.ceil(hi / width) + 1)


def gaussian_law(std: np.ndarray, mean: np.ndarray | float = 0.0, bins: int = BINS, rho: float | None = None) -> Law:
    """``N(mean, std^2)`` per unit, discretised: bin probabilities from the exact CDF.

    ``rho``: the correlation between distinct units, where known.

    Examples
    --------
    >>> law = gaussian_law(np.array([1.0, 2.0]))
    >>> law.positive().tolist(), np.round(law.second_moment(), 3).tolist()
    ([0.5, 0.5], [1.0, 4.0])
    """
    std, mean = collapse(np.maximum(np.asarray(std, dtype=np.float64), 1e-300), mean)
    edges = _edges(float((mean - SPAN * std).min()), float((mean + SPAN * std).max()), bins)
    cdf = ndtr((edges[1:-1] - mean[..., None]) / std[..., None])
    cdf = np.concatenate([np.zeros(std.shape + (1,)), cdf, np.ones(std.shape + (1,))], axis=-1)
    values = 0.5 * (edges[1:] + edges[:-1])
    c_off = None if rho is None else (rho * centre(std) ** 2 + centre(mean) ** 2) / (centre(std) ** 2 + centre(mean) ** 2)
    return Law(values, np.diff(cdf, axis=-1), (mean, std.copy()), None, (values, mean, std.copy(), ()), rho, c_off)


def map_law(law: Law, function) -> tuple:
    """The law of ``function(value)``; returns ``(law, index)``.

    Grid values that ``function`` maps onto one value (a ReLU's negative half)
    merge into one bin; ``index[i]`` is the output bin of input bin ``i``.  The
    function need not be monotone (GELU and SiLU dip below zero): the output grid
    is the sorted set of mapped values.
    """
    mapped = function(law.values)
    values, index = np.unique(mapped, return_inverse=True)
    index = index.ravel()
    if len(values) == len(law.values):
        probs = np.zeros_like(law.probs)
        probs[..., index] = law.probs
    elif (np.diff(index) >= 0).all():  # a non-decreasing ``function``: merged bins are runs of the grid
        starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
        probs = np.add.reduceat(law.probs, starts, axis=-1)
    else:  # merged bins scattered over the grid: one 0/1 matrix from input to output bins
        merge = np.zeros((len(law.values), len(values)))
        merge[np.arange(len(law.values)), index] = 1.0
        probs = law.probs @ merge
    latent = None if law.latent is None else law.latent[:3] + (law.latent[3] + (function,),)
    factors = None
    if law.factors is not None:
        factors = [(w, map_law(Law(law.values, p[None]), function)[0].probs[0]) for w, p in law.factors]
    out = Law(values, probs, None, law.caveat, latent, law.rho, None, law.window_rho, factors)
    off = off_moment(out)
    out.c_off = None if off is None else off / max(centre(out.second_moment()), 1e-300)
    return out, index


def _transition(values: np.ndarray, mean: float, std: float, edges: np.ndarray) -> np.ndarray:
    """``T[a, c] = P(values[a] + N(mean, std^2) in bin c)`` (outer bins take the tails)."""
    cdf = ndtr((edges[None, 1:-1] - values[:, None] - mean) / std)
    cdf = np.concatenate([np.zeros((len(values), 1)), cdf, np.ones((len(values), 1))], axis=1)
    return np.diff(cdf, axis=1)


@dataclass
class SumPlan:
    """How :func:`sum_law` built ``x + y``: enough for the backward step."""

    shape: tuple  # unit shape of the sum
    groups: list  # (flat unit indices, transition matrix T) per distinct (mean, std) of y


def sum_law(x: Law, y: Law, bins: int = BINS) -> tuple:
    """The law of ``x + y`` for independent units ``x`` and ``y``, where ``y`` is Gaussian.

    Two Gaussians give a Gaussian.  Otherwise each grid value ``a`` of ``x``
    spreads onto the sum's bins by the exact CDF of ``a + y``:
    ``p_z(c) = sum_a p_x(a) T[a, c]``.  Returns ``(law, plan)``.
    """
    shape = np.broadcast_shapes(x.probs.shape[:-1], y.probs.shape[:-1])
    if x.gauss is not None and y.gauss is not None:
        mean = x.gauss[0] + y.gauss[0]
        std = np.broadcast_to(np.sqrt(x.gauss[1] ** 2 + y.gauss[1] ** 2), shape)
        rho = None
        off = sum_off_moment(x, y)
        if off is not None:
            rho = (off - centre(np.broadcast_to(mean, shape)) ** 2) / centre(std) ** 2
        return gaussian_law(std, np.broadcast_to(mean, shape), bins, rho), None
    mean, std = (np.broadcast_to(g, shape) for g in y.gauss)
    edges = _edges(float(x.values[0] + (mean - SPAN * std).min()), float(x.values[-1] + (mean + SPAN * std).max()), bins)
    px = np.broadcast_to(x.probs, shape + x.values.shape).reshape(-1, len(x.values))
    keys = np.round(np.stack([mean.ravel(), std.ravel()], axis=1), 12)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    probs = np.empty((px.shape[0], len(edges) - 1))
    groups = []
    for k, (m, s) in enumerate(unique):
        rows = np.flatnonzero(inverse.ravel() == k)
        T = _transition(x.values, m, max(s, 1e-300), edges)
        probs[rows] = px[rows] @ T
        groups.append((rows, T))
    law = Law(0.5 * (edges[1:] + edges[:-1]), probs.reshape(shape + (len(edges) - 1,)), None, x.caveat or y.caveat)
    return law, SumPlan(shape, groups)


def sum_backward(B: np.ndarray, x: Law, z: Law, plan: SumPlan) -> np.ndarray:
    """``B_x(u, a) = p_x(u, a) sum_c T[a, c] B_z(u, c) / p_z(u, c)``: the skip's share of ``B_z``."""
    if B.shape[:-1] != plan.shape and B.shape[0] > plan.shape[0]:  # per-channel gradients on a shared law
        return np.concatenate([sum_backward(B[c : c + 1], x, z, plan) for c in range(B.shape[0])])
    Bz = np.broadcast_to(B, plan.shape + z.values.shape).reshape(-1, len(z.values))
    pz = z.probs.reshape(-1, len(z.values))
    ratio = np.divide(Bz, pz, out=np.zeros_like(Bz), where=pz > 0)
    px = np.broadcast_to(x.probs, plan.shape + x.values.shape).reshape(-1, len(x.values))
    out = np.empty_like(px)
    for rows, T in plan.groups:
        out[rows] = px[rows] * (ratio[rows] @ T.T)
    return out.reshape(plan.shape + x.values.shape)


def max_law(gathered: np.ndarray, valid: np.ndarray) -> tuple:
    """The law of each window's maximum and, per member, ``P(it is the arg-max | its value)``.

    Parameters
    ----------
    gathered : numpy.ndarray
        ``(C, W, n, G)``: the law of member ``j`` of window ``w`` on one grid.
    valid : numpy.ndarray
        ``(W, n)`` bool: which members exist (windows clipped by padding have fewer).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The maximum's law ``(C, W, G)`` and the routing ``(C, W, n, G)``.

    Notes
    -----
    The members are taken as independent (the caller mixes over the common
    factor of correlated members): ``P(max <= v) = prod_j F_j(v)`` and
    ``P(j wins | value a) = prod_{k != j} P(value_k < a)``, with ties within a
    bin split at its midpoint (``F_k(a^-) + p_k(a) / 2``).
    """
    mask = valid[None, :, :, None]
    cdf = np.where(mask, np.cumsum(gathered, axis=-1), 1.0)
    below = np.where(mask, cdf - 0.5 * gathered, 1.0)
    top = np.prod(cdf, axis=2)
    out = np.diff(np.concatenate([np.zeros(top.shape[:-1] + (1,)), top], axis=-1), axis=-1)
    ones = np.ones_like(below[:, :, :1])
    before = np.cumprod(np.concatenate([ones, below[:, :, :-1]], axis=2), axis=2)
    after = np.cumprod(np.concatenate([ones, below[:, :, :0:-1]], axis=2), axis=2)[:, :, ::-1]
    return np.maximum(out, 0.0), before * after * mask
