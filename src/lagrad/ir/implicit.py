"""Combinators that add a cyclic block to the program being traced.

``fixed_point(f, z0, *args)`` is z = f(z, *args); ``root(g, z0, *args)`` is
g(z, *args) = 0. Under tracing (when any of ``args`` is a traced variable) they
record an unknown and its equation and return the unknown; on plain numbers they
build a small program, solve it and return the value. Traced values must be
passed through ``args``: a function that closes over them cannot be recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lagrad.errors import ProgramError, require_callable
from lagrad.ir.constants import as_real
from lagrad.ir.program import Program, Variable
from lagrad.ir.vmapping import BatchedVariable, batch_of, materialize

__all__ = ["fixed_point", "root"]

_NAMES = {"define": "fixed_point", "root": "root"}  # how errors name the combinators


def fixed_point(f: Callable[..., Any], z0: Any, *args: Any, method: str | None = None,
                tol: float | None = None, maxiter: int | None = None,
                name: str | None = None, backward: Any = None,
                adjoint_method: str | None = None, adjoint_tol: float | None = None) -> Any:
    """The solution z of z = f(z, *args), started from ``z0``.

    Differentiable (under :func:`lagrad.grad`, ``jvp``, ``jacobian``) by the
    implicit function theorem: the multipliers of the block solve
    (I - df/dz)^T lambda = ..., with no iterations unrolled. ``backward``
    chooses another backward mode for this block: "unrolled" or "neumann"
    (K terms of the Neumann series, K given as ``(mode, K)``), "phantom" /
    "jfb" (one term), or "implicit" (the default); see
    :class:`~lagrad.options.BackwardOptions`.

    ``method``, ``tol`` and ``maxiter`` are this block's forward-solve
    options (:meth:`lagrad.Program.unknown`); ``adjoint_method`` (a block
    linear method: "splu", "gmres", "lgmres", "bicgstab", "fixed_point",
    "reduced_lu", "dense", "lstsq") and ``adjoint_tol`` are the defaults of
    its adjoint and tangent solves. Options given to the solve or the
    transform (``solve_options=``) win over the block's own; an unknown name
    or a negative tolerance raises OptionError here.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> sqrt2 = lagrad.fixed_point(lambda z, a: 0.5 * (z + a / z), 1.0, 2.0)
    >>> round(float(sqrt2), 12)
    1.414213562373
    >>> g = lagrad.grad(lambda a: lagrad.fixed_point(lambda z, a: 0.5 * (z + a / z), 1.0, a))
    >>> round(float(g(2.0)), 12)  # d sqrt(a)/da = 1 / (2 sqrt(a))
    0.353553390593
    """
    require_callable(f, "lagrad.fixed_point")
    return _implicit("define", f, z0, args,
                     (method, tol, maxiter, backward, adjoint_method, adjoint_tol), name)


def root(g: Callable[..., Any], z0: Any, *args: Any, method: str | None = None,
         tol: float | None = None, maxiter: int | None = None, name: str | None = None,
         backward: Any = None, adjoint_method: str | None = None,
         adjoint_tol: float | None = None) -> Any:
    """The solution z of g(z, *args) = 0 near ``z0`` (g must return z's shape).

    ``backward`` is the block's backward mode, as for :func:`fixed_point`; its
    map is z <- z - g(z), so a truncated mode suits a g with dg/dz near I.

    Examples
    --------
    >>> import lagrad
    >>> cube_root = lambda a: lagrad.root(lambda z, a: z ** 3 - a, 1.0, a)
    >>> round(float(cube_root(8.0)), 12)
    2.0
    >>> round(float(lagrad.grad(cube_root)(8.0)), 12)  # 1 / (3 z^2)
    0.083333333333
    """
    require_callable(g, "lagrad.root")
    return _implicit("root", g, z0, args,
                     (method, tol, maxiter, backward, adjoint_method, adjoint_tol), name)


Options = tuple[Any, Any, Any, Any, Any, Any]
"""method, tol, maxiter, backward, adjoint_method, adjoint_tol of program.unknown"""


def _implicit(kind: str, fn: Callable[..., Any], z0: Any, args: tuple[Any, ...],
              options: Options, name: str | None) -> Any:
    programs = {id(a.program): a.program for a in (z0, *args) if isinstance(a, Variable)}
    if len(programs) > 1:
        raise ProgramError(f"{kind}: arguments come from different programs")
    if not programs:
        return _solve_now(kind, fn, z0, args, options)
    program = next(iter(programs.values()))
    batch = batch_of((z0, *args))
    if batch is not None:
        return _implicit_batched(kind, fn, z0, args, options, name, program, batch)
    if isinstance(z0, Variable):  # its value, known at solve time, is the start
        shape, init = z0.shape, z0
    else:
        init = as_real(z0, f"z0 of {_NAMES[kind]}")
        shape = init.shape
    z = _unknown(program, name or _fresh(program), shape, init, options)
    expr = fn(z, *args)
    if kind == "define":
        program.define(z, expr)
    else:
        program.root(z, expr if isinstance(expr, Variable) else _not_traced(expr, z))
    return z


def _implicit_batched(kind: str, fn: Callable[..., Any], z0: Any, args: tuple[Any, ...],
                      options: Options, name: str | None, program: Program,
                      batch: int) -> BatchedVariable:
    """Under :func:`lagrad.vmap`: one unknown of shape (B, *s) for the B
    instances, so one cyclic block; its instances read only their own rows,
    so the block's Newton matrix is block diagonal."""
    if isinstance(z0, Variable):
        shape, init = z0.shape, materialize(z0, batch)
    else:
        start = as_real(z0, f"z0 of {_NAMES[kind]}")
        shape, init = start.shape, np.broadcast_to(start, (batch,) + start.shape)
    inner = _unknown(program, name or _fresh(program), (batch,) + shape, init, options)
    z = BatchedVariable(inner)
    expr = materialize(fn(z, *args), batch)
    if kind == "define":
        program.define(inner, expr)
    else:
        program.root(inner, expr if isinstance(expr, Variable) else _not_traced(expr, inner))
    return z


def _unknown(program: Program, name: str, shape: Any, init: Any, options: Options) -> Variable:
    method, tol, maxiter, backward, adjoint_method, adjoint_tol = options
    return program.unknown(name, shape, init, method=method, tol=tol, maxiter=maxiter,
                           backward=backward, adjoint_method=adjoint_method,
                           adjoint_tol=adjoint_tol)


def _solve_now(kind: str, fn: Callable[..., Any], z0: Any, args: tuple[Any, ...],
               options: Options) -> Any:
    program = Program(kind)
    inputs = [program.input(f"a{k}", np.shape(a)) for k, a in enumerate(args)]
    init = as_real(z0, f"z0 of {_NAMES[kind]}")
    z = _unknown(program, "z", init.shape, init, options)
    expr = fn(z, *inputs)
    if kind == "define":
        program.define(z, expr)
    else:
        program.root(z, expr if isinstance(expr, Variable) else _not_traced(expr, z))
    program.output(z)
    return program.solve(*args).output


def _not_traced(expr: Any, z: Variable) -> Variable:
    raise ProgramError(f"root: the residual does not depend on the unknown {z.name!r}; "
                       "g(z, ...) must be computed from z")


def _fresh(program: Program) -> str:
    start = len(program.block_options) + len(program.inits)  # a cheap lower bound
    return program.fresh_name("z", start)
