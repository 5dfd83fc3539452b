"""Policy evaluation of a Markov decision process: the Bellman equation V = r + gamma P V."""

from __future__ import annotations

import numpy as np

from lagrad.ir import ops
from lagrad.ir.program import Program

from .base import Example

__all__ = ["mdp"]


def mdp(n_states: int = 8, gamma: float = 0.9, seed: int = 0) -> Example:
    """Expected discounted return mu^T V with V = r + gamma P V.

    Parameters
    ----------
    n_states : int
        Number of states S.
    gamma : float
        Discount factor, 0 < gamma < 1 (the Bellman map contracts by gamma).
    seed : int
        Seed of r, P and the initial distribution mu.

    Returns
    -------
    Example
        Inputs ``r`` (S,), the rewards, and ``P`` (S, S), a dense row-stochastic
        transition matrix; mu is a constant distribution.

    Notes
    -----
    The reference is the closed form

        V = (I - gamma P)^-1 r,   lambda = (I - gamma P)^-T mu,
        d output / d r = lambda,   d output / d P = gamma outer(lambda, V).

    Examples
    --------
    >>> from lagrad.examples import mdp
    >>> ex = mdp()
    >>> sol = ex.solve()
    >>> bool(ex.gradient_error(sol) < 1e-8)
    True
    >>> sol.adjoint_diagnostics[0].method  # the Bellman map contracts; few states
    'reduced_lu'
    """
    rng = np.random.default_rng(seed)
    s = n_states
    r = rng.standard_normal(s)
    p_mat = rng.uniform(0.0, 1.0, (s, s))
    p_mat /= p_mat.sum(axis=1, keepdims=True)
    mu = rng.uniform(0.5, 1.5, s)
    mu /= mu.sum()

    p = Program("mdp")
    r_in = p.input("r", (s,))
    p_in = p.input("P", (s, s))
    v = p.unknown("V", (s,))
    p.define(v, r_in + gamma * (p_in @ v))
    p.output(ops.dot(mu, v))

    a = np.eye(s) - gamma * p_mat
    v_ref = np.linalg.solve(a, r)
    lam = np.linalg.solve(a.T, mu)
    return Example(
        name="mdp", program=p, inputs={"r": r, "P": p_mat},
        reference={"r": lam, "P": gamma * np.outer(lam, v_ref)},
        description=f"policy evaluation V = r + gamma P V (S={s}, gamma={gamma}), output "
                    "mu^T V; reference: numpy.linalg.solve")
