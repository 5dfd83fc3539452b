"""Baselines for the gradient: what reverse mode is measured against.

Three ways to get d output / d x that do *not* solve the multiplier system
(I - J)^T lambda = e_n once (docs/lagrangian.md, sections 4-5):

* :func:`forward_gradient`: forward mode, one tangent solve (I - J) zdot = e_k
  per input entry, d solves in all;
* :func:`finite_difference_gradient`: central differences, 2 d forward solves;
* :func:`path_sum_gradient`: the flat formula. Expanding the output into one
  formula of the inputs and differentiating it term by term gives, for every
  input entry k, the sum over every path k -> ... -> n of the scalar
  dependency graph of the product of the local derivatives J[i, j] along the
  path. Nothing is shared between paths, so the cost grows with the number of
  paths, which doubles with every layer of a diamond graph; back-substitution
  computes the same sum by sharing the partial sums (the multipliers).

All three return what :meth:`lagrad.Solution.grad` returns: an array of the
input's shape for one input, a tuple of them for several.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.sparse.csgraph import breadth_first_order

from lagrad.errors import CycleError, LagradError, OptionError, ProgramError
from lagrad.ir.program import Program
from lagrad.solve.linsolve import solve_system
from lagrad.solve.solution import Solution

__all__ = ["forward_gradient", "finite_difference_gradient", "path_sum_gradient",
           "count_paths", "TooManyPathsError"]

Array = NDArray[np.float64]
DEFAULT_EPS = float(np.cbrt(np.finfo(float).eps))  # ~6e-6: balances truncation and rounding
DEFAULT_MAX_PATHS = 1_000_000


class TooManyPathsError(LagradError):
    """The flat formula has more paths than the ``max_paths`` allowed.

    Attributes
    ----------
    paths : int or float
        The number of input-to-output paths of the scalar dependency graph.
    """

    def __init__(self, message: str, paths: float) -> None:
        super().__init__(message)
        self.paths = paths


# ------------------------------------------------------------------ helpers

def _solve(program: Program, inputs: tuple[Any, ...], named: Mapping[str, Any],
           solve_options: Mapping[str, Any] | None) -> Solution:
    return program.solve(*inputs, **{**named, **dict(solve_options or {})})


def _scalar_output(sol: Solution) -> int:
    """Flat position of the output, which must be a scalar."""
    out = sol.schedule.output_variable
    if out.size != 1:
        raise ProgramError(f"the output {out.name!r} has shape {out.shape}; a gradient needs "
                           "a scalar output")
    return int(sol.schedule.index[out].start)


def _structure(sol: Solution, flat: Array) -> Any:
    """Per-input pieces of a flat vector, shaped like ``sol.grad()``'s result."""
    grads = sol.schedule.index.take(flat, sol.schedule.inputs)
    return grads[0] if len(grads) == 1 else grads


def _input_positions(sol: Solution) -> Array:
    return sol.schedule.index.positions(sol.schedule.inputs)


# ------------------------------------------------------------- forward mode

def forward_gradient(program: Program, *inputs: Any,
                     solve_options: Mapping[str, Any] | None = None,
                     **named: Any) -> Any:
    """Gradient by forward mode: one tangent solve per input entry.

    For each input entry k the tangent system (I - J) zdot = e_k is solved
    (forward substitution, or a linear solve inside cyclic blocks) and the
    output's tangent is d output / d x_k. With d input entries that is d
    solves against the single adjoint solve of :meth:`lagrad.Solution.grad`.

    Parameters
    ----------
    program : Program
        A program with a scalar output.
    *inputs, **named
        Input values, positionally in ``program.inputs`` order or by name
        (as for :meth:`lagrad.Program.solve`).
    solve_options : mapping, optional
        Keyword options of the forward solve (``method``, ``tol``, ...).

    Returns
    -------
    ndarray or tuple of ndarray
        The gradient, structured as :meth:`lagrad.Solution.grad` returns it.

    Raises
    ------
    ProgramError
        If the output is not a scalar.

    See Also
    --------
    lagrad.Solution.tangent : one tangent solve along any direction.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> from lagrad.study.naive import forward_gradient
    >>> p = lagrad.trace(lambda x: lagrad.sum(lagrad.sin(x) * x), np.zeros(3))
    >>> x = np.array([0.1, 0.2, 0.3])
    >>> bool(np.allclose(forward_gradient(p, x), np.cos(x) * x + np.sin(x)))
    True
    """
    sol = _solve(program, inputs, named, solve_options)
    out = _scalar_output(sol)
    positions = _input_positions(sol)
    system = sol.tangent_system({v: np.zeros(v.shape) for v in sol.schedule.inputs})
    flat = np.zeros(sol.schedule.size)
    for k in positions:
        system.rhs[k] = 1.0
        flat[k] = solve_system(system, compute_residual=False).x[out]
        system.rhs[k] = 0.0
    return _structure(sol, flat)


# ----------------------------------------------------- finite differences

def finite_difference_gradient(program: Program, *inputs: Any, eps: float = DEFAULT_EPS,
                               solve_options: Mapping[str, Any] | None = None,
                               **named: Any) -> Any:
    """Gradient by central differences: two forward solves per input entry.

    d output / d x_k ~ (f(x + h e_k) - f(x - h e_k)) / (2 h) with the relative
    step h = eps * max(1, |x_k|). The error is O(h^2) truncation plus
    O(eps_machine / h) rounding, about 1e-10 relative for smooth programs
    with the default eps.

    Parameters
    ----------
    program : Program
        A program with a scalar output.
    *inputs, **named
        Input values, positionally or by name.
    eps : float
        Relative step (default: the cube root of machine epsilon, ~6e-6).
    solve_options : mapping, optional
        Keyword options of every forward solve (``method``, ``tol``, ...).

    Returns
    -------
    ndarray or tuple of ndarray
        The gradient, structured as :meth:`lagrad.Solution.grad` returns it.

    Raises
    ------
    OptionError
        If ``eps`` is not a positive finite number.
    ProgramError
        If the output is not a scalar.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> from lagrad.study.naive import finite_difference_gradient
    >>> p = lagrad.trace(lambda x: lagrad.sum(lagrad.exp(x)), np.zeros(2))
    >>> g = finite_difference_gradient(p, np.array([0.0, 1.0]))
    >>> bool(np.allclose(g, np.exp([0.0, 1.0]), rtol=1e-9))
    True
    """
    if not (np.isfinite(eps) and eps > 0):
        raise OptionError(f"eps must be a positive finite number, got {eps!r}")
    sol = _solve(program, inputs, named, solve_options)
    _scalar_output(sol)
    declared = sol.schedule.inputs
    index = sol.schedule.index
    x = [np.array(sol.z[index[v]]) for v in declared]  # flat copies of each input
    flat = np.zeros(sol.schedule.size)
    options = dict(solve_options or {})

    def output_at(values: list[Array]) -> float:
        args = [val.reshape(v.shape) for v, val in zip(declared, values)]
        return float(program.solve(*args, **options).output)

    for v, xv in zip(declared, x):
        start = index[v].start
        for k in range(xv.size):
            h = eps * max(1.0, abs(float(xv[k])))
            keep = xv[k]
            xv[k] = keep + h
            plus = output_at(x)
            xv[k] = keep - h
            minus = output_at(x)
            xv[k] = keep
            flat[start + k] = (plus - minus) / (2.0 * h)
    return _structure(sol, flat)


# ---------------------------------------------------------------- path sum

def _acyclic(program: Program) -> None:
    for block in program.blocks:
        if block.cyclic:
            raise CycleError(f"{block.name} is cyclic: its scalar dependency graph has "
                             "infinitely many input-to-output paths, so the flat formula "
                             "does not exist; use sol.grad() (implicit differentiation)")


def _graph(sol: Solution) -> tuple[sp.csr_matrix, int, Array]:
    """The structure of J (entries kept even where a derivative is 0), the
    output's position and the input positions."""
    jac = sol.adjoint_system().jacobian.tocsr()
    return jac, _scalar_output(sol), _input_positions(sol)


def _path_counts(sol: Solution, jac: sp.csr_matrix, out: int) -> Array:
    """N[j] = number of paths j -> ... -> out (float64, inf on overflow).

    N_j = [j == out] + sum over children i of N_i, computed one level of equal
    height at a time from the top (a child's level exceeds its parents' in an
    acyclic program), one sparse product per level.
    """
    schedule = sol.schedule
    level = schedule.index.spread(schedule.levels)
    order = np.argsort(-level, kind="stable")
    structure = sp.csr_matrix((np.ones(jac.nnz), jac.indices, jac.indptr), shape=jac.shape)
    by_level = structure.T.tocsr()[order]  # row r: the children of node order[r]
    cuts = np.flatnonzero(np.diff(level[order])) + 1
    bounds = np.concatenate([[0], cuts, [order.size]]).astype(int)
    counts = np.zeros(jac.shape[0])
    counts[out] = 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        for a, b in itertools.pairwise(bounds):
            counts[order[a:b]] += by_level[a:b] @ counts
    return counts


def count_paths(program: Program, *inputs: Any,
                solve_options: Mapping[str, Any] | None = None, **named: Any) -> int | float:
    """Number of input-to-output paths in the program's scalar dependency graph.

    This is the number of terms of the flat formula that
    :func:`path_sum_gradient` sums (counted here by dynamic programming, which
    shares work, so it is cheap). The graph is that of J assembled at the
    solution for the given inputs: one node per scalar entry of every
    variable.

    Returns
    -------
    int or float
        The count; a float (possibly ``inf``) when it exceeds 2**63.

    Raises
    ------
    CycleError
        If the program has a cyclic block (infinitely many paths).

    Examples
    --------
    >>> import lagrad
    >>> from lagrad.study.naive import count_paths
    >>> def diamonds(x):
    ...     for _ in range(5):  # every layer: two branches that meet again
    ...         x = lagrad.sin(x) + lagrad.cos(x)
    ...     return x
    >>> count_paths(lagrad.trace(diamonds, 0.0), 0.3)
    32
    """
    _acyclic(program)
    sol = _solve(program, inputs, named, solve_options)
    jac, out, sources = _graph(sol)
    total = float(np.sum(_path_counts(sol, jac, out)[sources]))
    return int(total) if total < 2.0 ** 63 else total


def _children(jac: sp.csr_matrix, out: int) -> dict[int, list[tuple[int, float]]]:
    """For every node that reaches ``out``: its children (i, J[i, j]) that also reach it."""
    reach = breadth_first_order(jac, out, directed=True, return_predecessors=False)
    inside = np.zeros(jac.shape[0], dtype=bool)
    inside[reach] = True
    jc = jac.tocsc()
    children: dict[int, list[tuple[int, float]]] = {}
    for j in reach.tolist():
        lo, hi = jc.indptr[j], jc.indptr[j + 1]
        rows, vals = jc.indices[lo:hi], jc.data[lo:hi]
        keep = inside[rows]
        children[j] = list(zip(rows[keep].tolist(), vals[keep].tolist()))
    return children


def _enumerate(source: int, out: int, children: dict[int, list[tuple[int, float]]],
               budget: int) -> tuple[float, int]:
    """Sum over every path source -> out of the product of its edge weights,
    each product formed from scratch (no sharing); returns (sum, paths)."""
    if source == out:
        return 1.0, 1
    if source not in children:
        return 0.0, 0
    total, paths = 0.0, 0
    weights: list[float] = []  # edge weights along the current path
    stack: list[Iterator[tuple[int, float]]] = [iter(children[source])]
    while stack:
        step = next(stack[-1], None)
        if step is None:
            stack.pop()
            if weights:
                weights.pop()
            continue
        i, w = step
        if i == out:
            product = w
            for u in weights:
                product *= u
            total += product
            paths += 1
            if paths > budget:
                break
            continue
        weights.append(w)
        stack.append(iter(children[i]))
    return total, paths


def path_sum_gradient(program: Program, *inputs: Any, max_paths: int = DEFAULT_MAX_PATHS,
                      return_paths: bool = False,
                      solve_options: Mapping[str, Any] | None = None, **named: Any) -> Any:
    """Gradient by the flat formula: a sum over every input-to-output path.

    With J assembled at the solution (J[i, j] = df_i/dz_j, one node per scalar
    entry), d output / d x_k is the sum, over every path k -> ... -> n of the
    graph, of the product of J's entries along the path. Each product is
    formed from scratch: this is the chain rule without sharing, whose cost
    grows with the number of paths (exponentially with depth for stacked
    diamonds), where back-substitution costs O(edges).

    Parameters
    ----------
    program : Program
        An acyclic program with a scalar output.
    *inputs, **named
        Input values, positionally or by name.
    max_paths : int
        Refuse (raise) when the graph has more paths than this.
    return_paths : bool
        Also return the number of paths summed.
    solve_options : mapping, optional
        Keyword options of the forward solve.

    Returns
    -------
    gradient : ndarray or tuple of ndarray
        Structured as :meth:`lagrad.Solution.grad` returns it.
    paths : int
        Only with ``return_paths=True``: the number of paths enumerated.

    Raises
    ------
    CycleError
        If the program has a cyclic block: infinitely many paths.
    TooManyPathsError
        If the number of paths exceeds ``max_paths`` (checked before the
        enumeration starts, by :func:`count_paths`' dynamic programming).
    OptionError
        If ``max_paths`` is not a non-negative integer.
    ProgramError
        If the output is not a scalar.

    Examples
    --------
    >>> import lagrad
    >>> from lagrad.study.naive import path_sum_gradient
    >>> def diamonds(x):
    ...     for _ in range(3):
    ...         x = lagrad.sin(x) + lagrad.cos(x)
    ...     return x
    >>> p = lagrad.trace(diamonds, 0.0)
    >>> g, paths = path_sum_gradient(p, 0.3, return_paths=True)
    >>> paths
    8
    >>> bool(abs(g - p.solve(0.3).grad()) < 1e-14)
    True
    >>> path_sum_gradient(p, 0.3, max_paths=4)
    Traceback (most recent call last):
    ...
    lagrad.study.naive.TooManyPathsError: the flat formula has 8 paths, more than max_paths=4; ...
    """
    if isinstance(max_paths, bool) or not isinstance(max_paths, (int, np.integer)) \
            or max_paths < 0:
        raise OptionError(f"max_paths must be a non-negative integer, got {max_paths!r}")
    _acyclic(program)
    sol = _solve(program, inputs, named, solve_options)
    jac, out, sources = _graph(sol)
    counts = _path_counts(sol, jac, out)
    expected = float(np.sum(counts[sources]))
    if expected > max_paths:
        shown = int(expected) if expected < 2.0 ** 63 else f"{expected:.3g}"
        raise TooManyPathsError(f"the flat formula has {shown} paths, more than "
                                f"max_paths={max_paths}; raise max_paths or use sol.grad() "
                                "(back-substitution shares the sub-sums)", expected)
    children = _children(jac, out)
    flat = np.zeros(sol.schedule.size)
    paths = 0
    for k in sources.tolist():
        flat[k], found = _enumerate(k, out, children, int(max_paths) - paths)
        paths += found
    grad = _structure(sol, flat)
    return (grad, paths) if return_paths else grad
