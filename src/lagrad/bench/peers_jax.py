"""JAX for the ``peers`` workload: setup, ahead-of-time compilation, fixed
points (an iteration in ``while_loop``; a ``custom_vjp`` with BiCGSTAB for the
adjoint), and the two problems that compare lagrad's multi-block and
multi-seed solves with JAX's:

* blocks: the chain of B cyclic 3 x 3 blocks of the ``blocks`` workload, as a
  ``lax.scan`` over the blocks, each block a ``lax.custom_root`` (forward by
  the fixed-point iteration, tangent solve by a dense 3 x 3 solve; jaxopt:
  ``FixedPointIteration`` with implicit differentiation); gradient with
  respect to x and every c_k;
* jacobian: the ``jacobian`` workload's problems (a Jacobian with k rows) by
  ``jax.jacrev`` (a ``vmap`` of the VJP: for the DEQ, the ``custom_vjp``'s
  BiCGSTAB runs batched over the k seeds; jaxopt: ``FixedPointIteration``).

Every iteration stops at ``||z_new - z|| <= TOL max(1, ||z_new||)``, linear
solves at relative residual ``TOL``. Nothing here imports JAX: the module is
handed in (``mods``), as the other peers are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

import lagrad
from lagrad.options import DEFAULT_TOL

from .blocks import BlockChain
from .multirhs import JacobianProblem, deq_problem, mlp_problem

__all__ = ["TOL", "MAXITER", "EXTRA_PROBLEMS", "EXTRA_METHODS", "jax_setup", "jax_ready",
           "jax_compiled", "jax_fixed_point", "jax_implicit", "extra_problem",
           "extra_lagrad_call", "jax_extra", "jaxopt_fixed_point", "jaxopt_extra"]

TOL = DEFAULT_TOL  # iterations and linear solves stop where lagrad's default solves do
MAXITER = 10_000
EXTRA_PROBLEMS = ("blocks", "jacobian")
EXTRA_METHODS = {
    ("jax", "blocks"): "scan + custom_root (3x3 solve)",
    ("jaxopt", "blocks"): "scan + FixedPointIteration",
    ("jax", "jacobian"): "jacrev (deq: custom_vjp, BiCGSTAB)",
    ("jaxopt", "jacobian"): "jacrev, FixedPointIteration (deq)",
}


def jax_setup(mods: dict[str, Any]) -> Any:
    jax = mods["jax"]
    jax.config.update("jax_enable_x64", True)
    return jax


def jax_ready(jax: Any, value: Any) -> Any:
    return jax.tree_util.tree_map(lambda a: np.asarray(a.block_until_ready()), value)


def jax_compiled(jax: Any, p: dict[str, Any], fn: Callable[..., Any],
                  *args: Any) -> Callable[[], Any]:
    """``fn`` compiled ahead of time for ``args`` (the time goes to p["build_s"])."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    p["build_s"] = time.perf_counter() - t0
    return lambda: jax_ready(jax, compiled(*args))


def jax_fixed_point(jax: Any, residual: Callable[[Any], Any], z0: Any) -> Any:
    """Root of ``residual(z) = T(z) - z`` by the iteration z <- z + residual(z)."""
    jnp = jax.numpy

    def cond(state: Any) -> Any:
        z, step, k = state
        return (k < MAXITER) & (jnp.linalg.norm(step) > TOL * jnp.maximum(1.0, jnp.linalg.norm(z)))

    def body(state: Any) -> Any:
        z, _, k = state
        step = residual(z)
        return z + step, step, k + 1

    return jax.lax.while_loop(cond, body, (z0, jnp.full_like(z0, jnp.inf), 0))[0]


def jax_implicit(jax: Any, fixed: Callable[..., Any], z0: Any, *args: Any) -> Any:
    """z = fixed(z, *args), differentiable in ``args``: a ``custom_vjp`` whose
    backward solves (I - J^T) u = g by BiCGSTAB (J^T u by ``jax.vjp``), then
    returns u^T d fixed / d args. (``lax.custom_root`` with BiCGSTAB as its
    tangent solve cannot be transposed: NotImplementedError in JAX 0.10.)"""
    return _implicit_rule(jax)(fixed, z0, args)


_IMPLICIT_RULES: dict[int, Any] = {}


def _implicit_rule(jax: Any) -> Any:
    if id(jax) in _IMPLICIT_RULES:
        return _IMPLICIT_RULES[id(jax)]
    from jax.scipy.sparse.linalg import bicgstab

    @partial(jax.custom_vjp, nondiff_argnums=(0,))
    def solve(fixed: Callable[..., Any], z0: Any, args: Any) -> Any:
        return jax_fixed_point(jax, lambda z: fixed(z, *args) - z, z0)

    def forward(fixed: Callable[..., Any], z0: Any, args: Any) -> Any:
        z = solve(fixed, z0, args)
        return z, (z, args)

    def backward(fixed: Callable[..., Any], saved: Any, g: Any) -> Any:
        z, args = saved
        _, vjp_z = jax.vjp(lambda z: fixed(z, *args), z)
        u = bicgstab(lambda u: u - vjp_z(u)[0], g, tol=TOL, atol=0.0)[0]
        _, vjp_args = jax.vjp(lambda args: fixed(z, *args), args)
        return jax.numpy.zeros_like(z), vjp_args(u)[0]

    solve.defvjp(forward, backward)
    _IMPLICIT_RULES[id(jax)] = solve
    return solve


# ---------------------------------------------------------------- problems

def extra_problem(name: str, size: Any) -> dict[str, Any]:
    """blocks: size B; jacobian: (problem, size, rows) as in the jacobian workload."""
    if name == "blocks":
        return {"blocks": BlockChain(size), "label": f"B={size}"}
    which, n, k = size
    prob = mlp_problem(n, k) if which == "mlp" else deq_problem(n, k)
    return {"jacobian": prob, "label": f"{which} {prob.label}, {k} rows"}


def extra_lagrad_call(problem: str, p: dict[str, Any]) -> Callable[[], Any]:
    """lagrad on blocks (default gradient, traced once) or jacobian (jacrev, jit-ed)."""
    if problem == "blocks":
        chain: BlockChain = p["blocks"]
        program = chain.trace()
        return lambda: program.solve(chain.x, chain.c).grad()
    prob: JacobianProblem = p["jacobian"]
    jac = lagrad.jacrev(lagrad.jit(prob.f))
    return lambda: jac(prob.x)


# ---------------------------------------------------------------- jax

def _dense_tangent_solve(jax: Any) -> Callable[[Any, Any], Any]:
    def solve(g: Any, y: Any) -> Any:  # (dG/dz) x = y for a small block, densely
        return jax.numpy.linalg.solve(jax.jacobian(g)(y), y)
    return solve


def _chain(jax: Any, p: dict[str, Any], block_root: Callable[..., Any]) -> Callable[[], Any]:
    """grad (x, c) of the blocks chain: ``lax.scan`` over the blocks, each
    solved by ``block_root(T, z0)`` for z = T(z)."""
    jnp = jax.numpy
    chain: BlockChain = p["blocks"]

    def total(x: Any, c: Any, a: Any, b: Any) -> Any:
        def step(carry: Any, block: Any) -> Any:
            previous, acc = carry
            a_k, b_k, c_k = block
            shift = c_k * jnp.sum(previous) + b_k
            z = block_root(lambda z, a_k, shift: jnp.tanh(a_k @ z + shift), jnp.zeros(3),
                           a_k, shift)
            return (z, acc + jnp.sum(z * z)), None
        (_, acc), _ = jax.lax.scan(step, (x, jnp.zeros(())), (a, b, c))
        return acc
    return jax_compiled(jax, p, jax.grad(total, argnums=(0, 1)),
                        *(jnp.asarray(v) for v in (chain.x, chain.c, chain.A, chain.b)))


def _jacobian(jax: Any, p: dict[str, Any], fixed_point: Callable[..., Any] | None
              ) -> Callable[[], Any]:
    """jax.jacrev of the jacobian problem (the DEQ's fixed point by ``fixed_point``)."""
    jnp = jax.numpy
    prob: JacobianProblem = p["jacobian"]
    arrays = prob.arrays
    if prob.name == "mlp":
        params = tuple(jnp.asarray(a) for a in arrays["params"])

        def net(x: Any, params: Any) -> Any:
            h = x
            for j in range(len(params) // 2):
                h = h @ params[2 * j] + params[2 * j + 1]
                if j < len(params) // 2 - 1:
                    h = jnp.tanh(h)
            return h
        return jax_compiled(jax, p, jax.jacrev(net), jnp.asarray(prob.x), params)
    if fixed_point is None:
        raise NotImplementedError("the deq Jacobian only")
    k, n = arrays["k"], arrays["n"]

    def rows(x: Any, w: Any, u: Any, b: Any) -> Any:
        z = fixed_point(lambda z, w, a: jnp.tanh(w @ z + a), jnp.zeros(n), w, u @ x + b)
        return z[:k]
    return jax_compiled(jax, p, jax.jacrev(rows),
                        *(jnp.asarray(v) for v in (prob.x, arrays["W"], arrays["U"],
                                                   arrays["b"])))


def jax_extra(problem: str, p: dict[str, Any], mods: dict[str, Any]) -> Callable[[], Any]:
    """JAX on blocks (scan + custom_root) or jacobian (jacrev)."""
    jax = jax_setup(mods)
    if problem == "blocks":
        tangent_solve = _dense_tangent_solve(jax)

        def block_root(fixed: Callable[..., Any], z0: Any, *args: Any) -> Any:
            def residual(z: Any) -> Any:
                return fixed(z, *args) - z
            return jax.lax.custom_root(residual, z0, partial(jax_fixed_point, jax),
                                       tangent_solve)
        return _chain(jax, p, block_root)
    return _jacobian(jax, p, partial(jax_implicit, jax))


def jaxopt_fixed_point(mods: dict[str, Any]) -> Callable[..., Any]:
    """``fixed_point(fixed, z0, *args)`` by jaxopt's FixedPointIteration with
    implicit differentiation (BiCGSTAB), at the tolerances every peer uses."""
    jaxopt = mods["jaxopt"]
    solve = partial(jaxopt.linear_solve.solve_bicgstab, tol=TOL, atol=0.0)

    def fixed_point(fixed: Callable[..., Any], z0: Any, *args: Any) -> Any:
        fpi = jaxopt.FixedPointIteration(fixed, maxiter=MAXITER, tol=TOL, implicit_diff=True,
                                         implicit_diff_solve=solve)
        return fpi.run(z0, *args).params
    return fixed_point


def jaxopt_extra(problem: str, p: dict[str, Any], mods: dict[str, Any]) -> Callable[[], Any]:
    """jaxopt's FixedPointIteration (implicit differentiation) on blocks and the
    DEQ Jacobian; the MLP Jacobian has no fixed point (NotImplementedError)."""
    if problem == "jacobian" and p["jacobian"].name != "deq":
        raise NotImplementedError("jaxopt: the deq Jacobian only (the mlp has no fixed point)")
    jax = jax_setup(mods)
    fixed_point = jaxopt_fixed_point(mods)
    if problem == "blocks":
        return _chain(jax, p, fixed_point)
    return _jacobian(jax, p, fixed_point)
