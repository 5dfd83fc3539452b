"""PageRank on a random sparse graph, as cyclic constraints with a variable sparse matrix."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from numpy.typing import NDArray

from lagrad.ir import ops
from lagrad.ir.program import Program
from lagrad.ir.sparse import coo_matvec

from .base import Example

__all__ = ["pagerank"]

Array = NDArray[np.float64]
DIRECT_REFERENCE_NODES = 1000  # above: the reference iterates instead of factorizing


def pagerank(n_nodes: int = 200, n_edges: int = 2000, alpha: float = 0.85,
             seed: int = 0) -> Example:
    """PageRank r = alpha P^T r + (1 - alpha) v; output the rank mass of 1% of the nodes.

    Parameters
    ----------
    n_nodes : int
        Number of nodes n.
    n_edges : int
        Number of directed edges m (at least ``n_nodes``): a ring i -> i + 1,
        so that every node has an out-edge, plus random edges (no self-loops;
        repeated edges are allowed and simply add up).
    alpha : float
        Damping factor, 0 < alpha < 1.
    seed : int
        Seed of the graph, the weights and the teleport vector.

    Returns
    -------
    Example
        Inputs ``w`` (m,), positive edge weights, and ``v`` (n,), the teleport
        distribution (positive, sums to 1). Solve option: fixed-point
        iteration (a contraction with factor alpha).

    Notes
    -----
    P[i, j] = w_e / s_i for the edge e = (i -> j), with s_i the out-weight of
    node i. The program never assembles P: its values c are a variable, its
    pattern (src, dst) is constant. With the constant sparse incidence matrix
    ``out`` (n x m, out[i, e] = 1 when e leaves i),

        s = out @ w,    c = w / s[src],    r = alpha * P^T r + (1 - alpha) v,

    where P^T r is :func:`lagrad.coo_matvec` ``(c, src, dst, r, shape=(n, n),
    transpose=True)``: P in COO form with variable values c. One iteration
    (and one adjoint product) is one scipy sparse product, O(n + m), and the
    program scales to 1e5 nodes and 1e6 edges. The reference solves
    (I - alpha P^T) r = (1 - alpha) v and (I - alpha P) lambda = 1_S with one
    scipy sparse LU (above 1000 nodes, where the LU fills in, by Neumann
    iteration to rounding); then

        d output / d v = (1 - alpha) lambda,
        d output / d w_e = alpha r_i / s_i (lambda_j - (P lambda)_i)   for e = (i -> j).

    Examples
    --------
    >>> from lagrad.examples import pagerank
    >>> ex = pagerank()
    >>> ex.solve_options
    {'method': 'fixed_point'}
    >>> sol = ex.solve()
    >>> bool(ex.gradient_error(sol) < 1e-8)
    True
    >>> gw, gv = sol.grad()
    >>> gw.shape, gv.shape
    ((2000,), (200,))
    """
    if n_edges < n_nodes:
        raise ValueError(f"n_edges={n_edges} must be at least n_nodes={n_nodes} (the ring)")
    rng = np.random.default_rng(seed)
    n, m = n_nodes, n_edges
    ring = np.arange(n)
    extra_src = rng.integers(0, n, m - n)
    extra_dst = (extra_src + rng.integers(1, n, m - n)) % n if n > 1 else extra_src
    src = np.concatenate([ring, extra_src])
    dst = np.concatenate([(ring + 1) % n, extra_dst])
    w = rng.uniform(0.5, 1.5, m)
    v = rng.uniform(0.5, 1.5, n)
    v /= v.sum()
    subset = np.sort(rng.choice(n, max(1, n // 100), replace=False))

    out = sp.csr_matrix((np.ones(m), (src, np.arange(m))), shape=(n, m))

    p = Program("pagerank")
    w_in = p.input("w", (m,))
    v_in = p.input("v", (n,))
    s = ops.matmul(out, w_in)  # out-weight of every node
    c = w_in / s[src]  # P's entry carried by each edge
    r = p.unknown("r", (n,), init=np.full(n, 1.0 / n))
    pt_r = coo_matvec(c, src, dst, r, shape=(n, n), transpose=True)  # P^T r
    p.define(r, alpha * pt_r + (1.0 - alpha) * v_in)
    p.output(ops.sum(r[subset]))

    return Example(
        name="pagerank", program=p, inputs={"w": w, "v": v},
        reference=_reference(src, dst, w, v, alpha, subset),
        description=f"PageRank on a random graph, n={n}, m={m}, alpha={alpha}: rank mass "
                    f"of {subset.size} nodes; reference: scipy sparse LU",
        solve_options={"method": "fixed_point"})


def _reference(src: Array, dst: Array, w: Array, v: Array, alpha: float,
               subset: Array) -> dict[str, Array]:
    """Gradients from the assembled P: r and lambda by one sparse LU of
    (I - alpha P^T) (solved with and without transpose), or for graphs above
    :data:`DIRECT_REFERENCE_NODES` nodes, where LU fill-in on a random graph
    grows like n^2, by the Neumann iteration x <- b + alpha P^T x (resp. P x)
    carried to rounding error."""
    n = v.size
    s = np.bincount(src, weights=w, minlength=n)
    p = sp.csr_matrix((w / s[src], (src, dst)), shape=(n, n))  # repeated edges add up
    pt = p.T.tocsr()
    target = np.zeros(n)
    target[subset] = 1.0
    if n <= DIRECT_REFERENCE_NODES:
        lu = spla.splu((sp.identity(n, format="csc") - alpha * pt).tocsc())
        r = lu.solve((1.0 - alpha) * v)
        lam = lu.solve(target, trans="T")  # (I - alpha P) lambda = 1_S
    else:
        r = _neumann(pt, alpha, (1.0 - alpha) * v)
        lam = _neumann(p, alpha, target)
    grad_w = alpha * r[src] / s[src] * (lam[dst] - (p @ lam)[src])
    return {"w": grad_w, "v": (1.0 - alpha) * lam}


def _neumann(a: sp.csr_matrix, alpha: float, b: Array, maxiter: int = 100_000) -> Array:
    """x = b + alpha A x for A (or A^T) row-stochastic: iterate to rounding error."""
    x = b.copy()
    for _ in range(maxiter):
        new = b + alpha * (a @ x)
        change = float(np.max(np.abs(new - x)))
        x = new
        if change <= 2 * np.finfo(float).eps * float(np.max(np.abs(x))):
            return x
    raise RuntimeError(f"the PageRank reference did not converge in {maxiter} iterations")
