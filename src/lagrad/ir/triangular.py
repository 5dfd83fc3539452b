"""Triangular solves on traced values: ``lagrad.linalg.solve_triangular``,
``cho_factor`` and ``cho_solve``, as their :mod:`scipy.linalg` namesakes.

``solve_triangular(a, b, trans, lower, unit_diagonal)`` reads one triangle
of ``a`` (and not its diagonal with ``unit_diagonal``): the matrix T it
solves with, op(T) = T or T^T. From op(T) x = b,

* JVP: dx = op(T)^-1 (db - op(dT) x), dT the read part of da;
* VJP: b_bar = op(T)^-T g for b, and -b_bar x^T for op(T), that is
  -x b_bar^T for T when transposed, kept on the read part;
* second order: b_bar moves with T (d b_bar = -op(T)^-T op(dT)^T b_bar),
  and the cotangent of op(T) by the product rule.

``cho_solve((c, lower), b)`` is two triangular solves with the factor, and
``cho_factor(a, lower)`` gives the Cholesky factor (zero in the other
triangle, which scipy leaves arbitrary) with ``lower``.

>>> import numpy as np, lagrad
>>> k = np.array([[4.0, 2.0], [2.0, 3.0]])
>>> factor = lagrad.linalg.cho_factor(k, lower=True)
>>> bool(np.allclose(lagrad.linalg.cho_solve(factor, np.ones(2)), np.linalg.solve(k, np.ones(2))))
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from numpy.typing import NDArray

from lagrad.errors import ProgramError, SingularSystemError
from lagrad.ir import ops
from lagrad.ir import primitives as P
from lagrad.ir.arrayops import shape_of
from lagrad.ir.cholesky import cholesky_p

__all__ = ["solve_triangular", "solve_triangular_p", "cho_factor", "cho_solve"]

Array = NDArray[np.float64]
Shape = tuple[int, ...]


def _read(a: Array, lower: bool, unit: bool) -> Array:
    """The part of ``a`` a triangular solve reads (zero elsewhere)."""
    part = np.tril(a, -1 if unit else 0) if lower else np.triu(a, 1 if unit else 0)
    return np.asarray(part, dtype=float)


def _op(m: Array, trans: bool) -> Array:
    return m.T if trans else m


def _solve(a: Array, b: Array, *, lower: bool, trans: bool, unit: bool,
           adjoint: bool = False) -> Array:
    """op(T)^-1 b, or op(T)^-T b with ``adjoint``."""
    diagonal = np.ones(a.shape[0]) if unit else np.diagonal(a)
    if not np.all(np.isfinite(diagonal)) or not np.all(diagonal != 0):
        raise SingularSystemError(f"linalg.solve_triangular: the triangular matrix of shape "
                                  f"{np.shape(a)} has a zero on its diagonal, so it is singular")
    return scipy.linalg.solve_triangular(a, b, trans=int(trans != adjoint), lower=lower,
                                         unit_diagonal=unit, check_finite=False)


def _value(a: Array, b: Array, *, lower: bool, trans: bool, unit: bool) -> Array:
    return np.asarray(_solve(a, b, lower=lower, trans=trans, unit=unit), dtype=float)


def _shape(sa: Shape, sb: Shape, *, lower: bool, trans: bool, unit: bool) -> Shape:
    if len(sa) != 2 or sa[0] != sa[1]:
        raise ValueError(f"a must be a square matrix, got shape {sa}")
    if not 1 <= len(sb) <= 2 or sb[0] != sa[0]:
        raise ValueError(f"b must have shape ({sa[0]},) or ({sa[0]}, k), got {sb}")
    return sb


def _outer(u: Array, v: Array) -> Array:
    return np.multiply.outer(u, v) if np.ndim(u) == 1 else u @ v.T


def _jvp(ts: Sequence[Array | None], ans: Array, a: Array, b: Array, *, lower: bool,
         trans: bool, unit: bool) -> Array:
    ta, tb = ts
    rhs = np.zeros(np.shape(ans)) if tb is None else np.array(tb, dtype=float)
    if ta is not None:
        rhs -= _op(_read(ta, lower, unit), trans) @ ans
    return _solve(a, rhs, lower=lower, trans=trans, unit=unit)


def _a_bar(b_bar: Array, x: Array, lower: bool, trans: bool, unit: bool) -> Array:
    """The cotangent of a for the cotangent -b_bar x^T of op(T)."""
    return _read(_op(-_outer(b_bar, x), trans), lower, unit)


def _vjp(k: int, g: Array, ans: Array, a: Array, b: Array, *, lower: bool, trans: bool,
         unit: bool) -> Array:
    b_bar = _solve(a, np.asarray(g, dtype=float), lower=lower, trans=trans, unit=unit,
                   adjoint=True)
    return b_bar if k == 1 else _a_bar(b_bar, ans, lower, trans, unit)


def _jacobian(k: int, ans: Array, a: Array, b: Array, *, lower: bool, trans: bool,
              unit: bool) -> sp.csr_matrix:
    size = np.size(ans)
    rows = [np.ravel(_vjp(k, e.reshape(np.shape(ans)), ans, a, b, lower=lower, trans=trans,
                          unit=unit)) for e in np.eye(size)]
    return sp.csr_matrix(np.array(rows).reshape(size, -1))


def _second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array, a: Array,
                b: Array, *, lower: bool, trans: bool, unit: bool) -> Array | None:
    ta = ts[0]
    flags = {"lower": lower, "trans": trans, "unit": unit}
    b_bar = _solve(a, np.asarray(g, dtype=float), adjoint=True, **flags)
    d_bbar = None if ta is None else \
        -_solve(a, _op(_read(ta, lower, unit), trans).T @ b_bar, adjoint=True, **flags)
    if k == 1:
        return d_bbar
    dx = _jvp(ts, ans, a, b, **flags)
    term = _a_bar(b_bar, dx, lower, trans, unit)
    return term if d_bbar is None else term + _a_bar(d_bbar, ans, lower, trans, unit)


solve_triangular_p = P.Primitive(
    "solve_triangular", _value, _shape, vjp=_vjp, jvp=_jvp, jacobian=_jacobian,
    second_vjp=_second_vjp, doc="op(T)^-1 b for the triangle T of a")


def _trans_flag(trans: Any) -> bool:
    if trans in (0, "N"):
        return False
    if trans in (1, 2, "T", "C"):
        return True
    raise ProgramError(f"linalg.solve_triangular: trans must be 0, 1, 2, 'N', 'T' or 'C', "
                       f"got {trans!r}")


def solve_triangular(a: Any, b: Any, trans: Any = 0, lower: bool = False,
                     unit_diagonal: bool = False, overwrite_b: bool = False,
                     check_finite: bool = True) -> Any:
    """The solution x of op(T) x = b for the ``lower`` (or upper) triangle T
    of ``a`` (its diagonal taken as ones with ``unit_diagonal``), op(T) = T
    for ``trans`` 0 / "N" and T^T for 1, 2, "T", "C", as
    :func:`scipy.linalg.solve_triangular`; first and second derivatives, the
    other triangle's zero."""
    flags = {"lower": bool(lower), "trans": _trans_flag(trans), "unit": bool(unit_diagonal)}
    sa, sb = shape_of(a), shape_of(b)
    if len(sa) != 2 or sa[0] != sa[1]:
        raise ProgramError(f"linalg.solve_triangular: a has shape {sa}; give a square matrix")
    if not 1 <= len(sb) <= 2 or sb[0] != sa[0]:
        raise ProgramError(f"linalg.solve_triangular: b has shape {sb}, but a is {sa}; b must "
                           f"have shape ({sa[0]},) or ({sa[0]}, k)")
    if not isinstance(a, P.Tracer) and not isinstance(b, P.Tracer):
        return _value(np.asarray(a, dtype=float), np.asarray(b, dtype=float), **flags)
    return solve_triangular_p(a, b, **flags)


def cho_factor(a: Any, lower: bool = False, overwrite_a: bool = False,
               check_finite: bool = True) -> tuple[Any, bool]:
    """``(c, lower)`` with c the Cholesky factor of ``a`` (lower, or its
    transpose, the upper one), as :func:`scipy.linalg.cho_factor`; the other
    triangle of c is zero (scipy's is arbitrary)."""
    shape = shape_of(a)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ProgramError(f"linalg.cho_factor: a has shape {shape}; give a square matrix")
    factor = cholesky_p(a) if isinstance(a, P.Tracer) else np.linalg.cholesky(a)
    return (factor if lower else ops.transpose(factor)), bool(lower)


def cho_solve(c_and_lower: tuple[Any, bool], b: Any, overwrite_b: bool = False,
              check_finite: bool = True) -> Any:
    """The solution of A x = b from ``cho_factor(A)``'s ``(c, lower)``, as
    :func:`scipy.linalg.cho_solve`: two triangular solves with c."""
    c, lower = c_and_lower
    y = solve_triangular(c, b, trans=0 if lower else 1, lower=lower)
    return solve_triangular(c, y, trans=1 if lower else 0, lower=lower)
