"""The matrix exponential on traced values: ``lagrad.linalg.expm``, as
:func:`scipy.linalg.expm` (a square matrix, or a stack of them).

Its derivatives are Fréchet derivatives, each read off the exponential of
a block upper-triangular matrix (Mathias; Higham and Relton for the second):

* the JVP along E is L(A, E), the top-right block of
  exp([[A, E], [0, A]]);
* the VJP of the cotangent G is L(A^T, G), since the adjoint of L(A, .) is
  L(A^T, .);
* the second-order term, the derivative of L(A^T, G) along a tangent T of
  A, is L2(A^T; T^T, G), the top-right block of the exponential of the 4 x 4
  block matrix with A^T on the diagonal, T^T at (1, 2) and (3, 4), and G at
  (1, 3) and (2, 4).

Each is one call of scipy's expm (on a stack when there are several
matrices or tangents), so the local Jacobian of an n x n exponential is one
call on n^2 blocks of size 2n.

>>> import numpy as np, lagrad
>>> a = np.array([[0.0, 1.0], [-1.0, 0.0]])  # d/dA tr(exp A) = exp(A)^T
>>> bool(np.allclose(lagrad.grad(lambda m: np.trace(lagrad.linalg.expm(m)))(a),
...                  lagrad.linalg.expm(a).T))
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.linalg
from numpy.typing import NDArray

from lagrad.errors import ProgramError
from lagrad.ir import primitives as P
from lagrad.ir.arrayops import shape_of
from lagrad.ir.eigen import jacobian_by_jvp

__all__ = ["expm", "expm_p", "frechet"]

Array = NDArray[np.float64]
Shape = tuple[int, ...]


def _swap(a: Array) -> Array:
    return np.swapaxes(a, -1, -2)


def _blocks(diagonal: Array, blocks: dict[tuple[int, int], Array], k: int) -> Array:
    """The stack of k x k block matrices with ``diagonal`` on the diagonal
    and ``blocks[(i, j)]`` at block (i, j) (zero elsewhere), all broadcast."""
    parts = np.broadcast_arrays(diagonal, *blocks.values())
    n = diagonal.shape[-1]
    out = np.zeros(parts[0].shape[:-2] + (k * n, k * n))
    for i in range(k):
        out[..., i * n:(i + 1) * n, i * n:(i + 1) * n] = parts[0]
    for (i, j), block in zip(blocks, parts[1:]):
        out[..., i * n:(i + 1) * n, j * n:(j + 1) * n] = block
    return out


def frechet(a: Array, e: Array) -> Array:
    """L(A, E), the Fréchet derivative of exp at A along E (stacks broadcast)."""
    n = np.shape(a)[-1]
    return scipy.linalg.expm(_blocks(np.asarray(a, float), {(0, 1): np.asarray(e, float)},
                                     2))[..., :n, n:]


def _value(a: Array) -> Array:
    return np.asarray(scipy.linalg.expm(np.asarray(a, dtype=float)), dtype=float)


def _shape(s: Shape) -> Shape:
    if len(s) < 2 or s[-1] != s[-2]:
        raise ValueError(f"expm needs a square matrix or a stack of them, got shape {s}")
    return s


def _jvp(ts: Sequence[Array | None], ans: Array, a: Array) -> Array:
    return frechet(a, ts[0])  # type: ignore[arg-type]


def _vjp(k: int, g: Array, ans: Array, a: Array) -> Array:
    return frechet(_swap(np.asarray(a, float)), g)


def _second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array,
                a: Array) -> Array | None:
    if ts[0] is None:
        return None
    n = np.shape(a)[-1]
    t, g = _swap(np.asarray(ts[0], float)), np.asarray(g, float)
    m = _blocks(_swap(np.asarray(a, float)), {(0, 1): t, (2, 3): t, (0, 2): g, (1, 3): g}, 4)
    return scipy.linalg.expm(m)[..., :n, 3 * n:]


expm_p = P.Primitive("expm", _value, _shape, vjp=_vjp, jvp=_jvp, jacobian=jacobian_by_jvp(_jvp),
                     second_vjp=_second_vjp, doc="the matrix exponential")


def expm(a: Any) -> Any:
    """The matrix exponential of a square matrix (or of each of a stack), as
    :func:`scipy.linalg.expm`, with first and second derivatives."""
    shape = shape_of(a)
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise ProgramError(f"linalg.expm: give a square matrix or a stack of them (..., n, n), "
                           f"got shape {shape}")
    if not isinstance(a, P.Tracer):
        return _value(a)
    return expm_p(a)
