"""Number systems for the layer-level recursion.

The layer engine runs the same backward recursion in three arithmetics:

* :class:`FloatAlgebra` — float64 arrays, sparse products through scipy (fast);
* :class:`ExactAlgebra` — object arrays of Python ``int`` / ``Fraction``
  (exact path counts at any size, exact rationals on small nets);
* :class:`ModularAlgebra` — int64 arrays modulo a prime below ``2**31``, for
  fingerprints of path-degree polynomials (the (S) check at scale).

An algebra only provides the few operations the recursion needs; arrays may have
size-1 (broadcast) axes wherever all nodes along that axis hold the same value.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidArgumentError

__all__ = ["FloatAlgebra", "ExactAlgebra", "ModularAlgebra"]


def _moved(state: np.ndarray, axis: int, length: int) -> tuple:
    """Broadcast ``axis`` to ``length``, move it first and flatten the rest."""
    shape = list(state.shape)
    shape[axis] = length
    full = np.broadcast_to(state, shape)
    moved = np.moveaxis(full, axis, 0)
    return moved.reshape(length, -1), moved.shape[1:]


class _FieldOps:
    """Plain numpy operators: enough for float64 and for object arrays of exact numbers."""

    def mul(self, a, b):
        return a * b

    def add(self, a, b):
        return a + b

    def sum_keep(self, a: np.ndarray, axis: int) -> np.ndarray:
        return a.sum(axis=axis, keepdims=True)


class FloatAlgebra(_FieldOps):
    """float64 arithmetic."""

    name = "float64"
    exact = False

    def cast(self, values) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)

    def reciprocal(self, values) -> np.ndarray:
        return 1.0 / np.asarray(values, dtype=np.float64)

    def axis_backward(self, state: np.ndarray, axis: int, matrix: sp.csr_matrix) -> np.ndarray:
        """``out[..., i, ...] = sum_q matrix[q, i] * state[..., q, ...]`` along ``axis``."""
        n_out, n_in = matrix.shape
        flat, rest = _moved(state, axis, n_out)
        result = np.asarray(matrix.T @ flat).reshape((n_in,) + rest)
        return np.moveaxis(result, 0, axis)


class ExactAlgebra(_FieldOps):
    """Exact arithmetic on object arrays of Python ints and Fractions."""

    name = "exact"
    exact = True

    def cast(self, values) -> np.ndarray:
        array = np.asarray(values)
        if array.dtype == object:
            return array
        if array.dtype.kind in "iub":
            return np.vectorize(int, otypes=[object])(array) if array.ndim else np.array(int(array), dtype=object)
        return np.vectorize(Fraction, otypes=[object])(array) if array.ndim else np.array(Fraction(float(array)), dtype=object)

    def reciprocal(self, values) -> np.ndarray:
        array = np.asarray(values)
        return np.vectorize(lambda d: Fraction(1, int(d)), otypes=[object])(array)

    def axis_backward(self, state: np.ndarray, axis: int, matrix: sp.csr_matrix) -> np.ndarray:
        n_out, n_in = matrix.shape
        flat, rest = _moved(state, axis, n_out)
        result = np.zeros((n_in, flat.shape[1]), dtype=object)
        coo = matrix.tocoo()
        for q, i, m in zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist()):
            result[i] += int(m) * flat[q]
        return np.moveaxis(result.reshape((n_in,) + rest), 0, axis)


class ModularAlgebra:
    """Arithmetic modulo a prime ``p < 2**31`` on int64 arrays (no overflow)."""

    name = "modular"
    exact = True

    def __init__(self, prime: int):
        if not 2 < prime < 2**31:
            raise InvalidArgumentError("the modulus must be a prime below 2**31")
        self.prime = prime

    def cast(self, values) -> np.ndarray:
        return np.asarray(values, dtype=np.int64) % self.prime

    def reciprocal(self, values) -> np.ndarray:
        raise TypeError("fingerprints use no reciprocals")

    def mul(self, a, b):
        return (np.asarray(a, dtype=np.int64) * np.asarray(b, dtype=np.int64)) % self.prime

    def add(self, a, b):
        return (a + b) % self.prime

    def sum_keep(self, a: np.ndarray, axis: int) -> np.ndarray:
        # at most 2**32 terms below 2**31 fit in int64
        return a.sum(axis=axis, keepdims=True) % self.prime

    def axis_backward(self, state: np.ndarray, axis: int, matrix: sp.csr_matrix) -> np.ndarray:
        n_out, n_in = matrix.shape
        flat, rest = _moved(state, axis, n_out)
        # each output row sums at most (taps * multiplicity) terms below 2**31 * m: no overflow
        result = np.asarray(matrix.T.astype(np.int64) @ flat) % self.prime
        return np.moveaxis(result.reshape((n_in,) + rest), 0, axis)
