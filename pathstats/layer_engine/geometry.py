"""The tap geometry of layers along one axis, and covariances between positions carried through it.

A convolution or pooling along one spatial axis is a sparse matrix from input to
output positions (:func:`conv_axis`, :func:`pool_axis`, :func:`adaptive_axis`),
padding modes included (:func:`pathstats.dag.generators.padded_source`, the one
padding geometry); a layer over several axes is their Kronecker product.  The rules of
:mod:`.rules` take their DAG fragments and recursion steps from these matrices.
"""

from __future__ import annotations

import itertools
import math
from typing import Iterator, Sequence

import numpy as np
import scipy.sparse as sp

from ..dag.generators import PADDING_MODES, padded_source
from ..errors import InvalidArgumentError, UnsupportedLayerError

__all__ = ["axis_forward", "conv_axis", "pool_axis", "adaptive_axis", "COVARIANCE_POSITIONS"]


def axis_forward(state: np.ndarray, axis: int, matrix: sp.csr_matrix) -> np.ndarray:
    """``out[..., q, ...] = sum_i matrix[q, i] * state[..., i, ...]`` along ``axis`` (the transpose of a backward step)."""
    n_out, n_in = matrix.shape
    shape = list(state.shape)
    shape[axis] = n_in
    moved = np.moveaxis(np.broadcast_to(state, shape), axis, 0)
    result = np.asarray(matrix @ moved.reshape(n_in, -1)).reshape((n_out,) + moved.shape[1:])
    return np.moveaxis(result, 0, axis)


# --------------------------------------------------------------------------- axes
def _csr(rows: Sequence[Sequence[int]], n_in: int) -> sp.csr_matrix:
    """Count matrix ``A[q, i] = #{taps of output q that read input i}``."""
    data, indices, indptr = [], [], [0]
    for sources in rows:
        counts: dict = {}
        for i in sources:
            counts[i] = counts.get(i, 0) + 1
        for i in sorted(counts):
            indices.append(i)
            data.append(counts[i])
        indptr.append(len(indices))
    return sp.csr_matrix((np.array(data, dtype=np.int64), np.array(indices, dtype=np.int64), np.array(indptr)), shape=(len(rows), n_in))


def conv_axis(n: int, kernel: int, stride: int, left: int, right: int, dilation: int, mode: str) -> sp.csr_matrix:
    """The taps of a torch convolution along one axis, as a count matrix.

    ``A[q, i]`` counts the taps of output position ``q`` that read input ``i``
    after padding by ``left``/``right`` in ``mode``: zero padding drops taps,
    reflect and replicate fold them onto inputs (parallel edges), circular wraps.

    Examples
    --------
    >>> conv_axis(4, 3, 1, 1, 1, 1, "reflect").toarray()
    array([[1, 2, 0, 0],
           [1, 1, 1, 0],
           [0, 1, 1, 1],
           [0, 0, 2, 1]])
    """
    if mode not in PADDING_MODES:
        raise UnsupportedLayerError(f"padding mode {mode!r} is not one of {PADDING_MODES}")
    if mode == "reflect" and max(left, right) >= n:
        raise InvalidArgumentError(f"reflect padding {max(left, right)} needs an input longer than {max(left, right)}, got {n}")
    n_out = (n + left + right - dilation * (kernel - 1) - 1) // stride + 1
    if n_out < 1:
        raise InvalidArgumentError(f"kernel {kernel} (dilation {dilation}) does not fit an input of {n} with padding {left}+{right}")
    rows = []
    for q in range(n_out):
        taps = (padded_source(q * stride + t * dilation, n, left, mode) for t in range(kernel))
        rows.append([i for i in taps if i is not None])
    return _csr(rows, n)


def pool_axis(n: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool) -> tuple:
    """Windows of a torch pooling along one axis: count matrix and clipped window sizes.

    Returns ``(A, padded_size)``; ``padded_size[q]`` is the window length that
    ``count_include_pad=True`` divides by (the window clipped to the padded input).
    """
    span = n + 2 * padding - dilation * (kernel - 1) - 1
    n_out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (n_out - 1) * stride >= n + padding:
        n_out -= 1  # torch: the last window must start inside the input or left padding
    rows, padded_size = [], []
    for q in range(n_out):
        start = q * stride - padding
        rows.append([start + t * dilation for t in range(kernel) if 0 <= start + t * dilation < n])
        padded_size.append(min(start + kernel, n + padding) - start)
    return _csr(rows, n), np.array(padded_size, dtype=np.int64)


def adaptive_axis(n: int, n_out: int) -> sp.csr_matrix:
    """Windows of adaptive pooling: ``[floor(q n / m), ceil((q + 1) n / m))``."""
    rows = [list(range((q * n) // n_out, -(-((q + 1) * n) // n_out))) for q in range(n_out)]
    return _csr(rows, n)


def _outer(vectors: Sequence[np.ndarray]) -> np.ndarray:
    result = np.ones((), dtype=np.int64)
    for v in vectors:
        result = np.multiply.outer(result, v)
    return result


def _row_counts(matrix: sp.csr_matrix) -> np.ndarray:
    return np.asarray(matrix.sum(axis=1)).ravel().astype(np.int64)


def _taps(axes: Sequence[sp.csr_matrix]) -> Iterator[tuple]:
    """Yield ``(out_position, in_position, multiplicity)`` over all spatial axes.

    The multiplicity of a pair is the product of the per-axis tap counts (for
    reflect padding, two taps along each of two axes give four parallel edges).
    """
    rows = [[list(zip(a.indices[a.indptr[q]:a.indptr[q + 1]].tolist(), a.data[a.indptr[q]:a.indptr[q + 1]].tolist())) for q in range(a.shape[0])] for a in axes]
    for q in itertools.product(*(range(a.shape[0]) for a in axes)):
        for combo in itertools.product(*(rows[k][q[k]] for k in range(len(q)))):
            yield q, tuple(i for i, _ in combo), math.prod(m for _, m in combo)


def _overlapping(matrix: sp.csr_matrix) -> bool:
    return bool((np.asarray((matrix > 0).sum(axis=0)).ravel() > 1).any())


# ------------------------------------------------- covariance between positions
#: Most positions per channel whose gradient covariance model mode keeps (a dense
#: matrix of this side: 4096 = 64 x 64, 128 MiB); above it the covariance is dropped (noted).
COVARIANCE_POSITIONS = 4096


def _kron_all(matrices: Sequence[sp.csr_matrix]) -> sp.csr_matrix:
    """``A_1 (x) A_2 (x) ...``: the map on flattened (C-order) positions of per-axis maps."""
    result = sp.csr_matrix(np.ones((1, 1)))
    for m in matrices:
        result = sp.kron(result, m, format="csr")
    return result


def _sandwich(matrix: sp.csr_matrix, cov: np.ndarray) -> np.ndarray:
    """``matrix.T @ cov @ matrix`` for a symmetric dense ``cov``."""
    transposed = matrix.T.tocsr()
    half = np.ascontiguousarray((transposed @ cov).T)  # (A^T C)^T = C A, (n_out, n_in)
    return np.asarray(transposed @ half)  # A^T C A


def _split(cov: np.ndarray) -> tuple:
    """``(off-diagonal part, diagonal)`` of a square matrix."""
    diag = np.diag(cov).copy()
    off = cov.copy()
    np.fill_diagonal(off, 0.0)
    return off, diag


def _channel_field(total: np.ndarray, spatial: tuple) -> np.ndarray:
    """The gradient's second moment per position, averaged over exchangeable channels, flattened."""
    full = np.broadcast_to(total, (np.shape(total)[0],) + tuple(spatial)) if np.ndim(total) == len(spatial) + 1 else np.broadcast_to(total, tuple(spatial))
    return np.asarray(full).reshape(-1, math.prod(spatial)).mean(axis=0) if full.ndim == len(spatial) + 1 else np.asarray(full).ravel()
