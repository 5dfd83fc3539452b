"""Study ``edelman``: the three networks of Edelman, Akyurek and Wang,
"Backpropagation through back substitution with a backslash".

Each network is traced into a program; its multiplier system (I - J)^T lambda
= e_n is upper triangular in program order (J is strictly lower triangular: a
variable depends only on earlier ones), so back substitution solves it, and
the gradient read off the multipliers is checked against central finite
differences of the forward solve:

* the scalar chain  x_i = tanh(w_i x_{i-1} + b_i): a bidiagonal J;
* the matrix network  X_i = tanh(W_i X_{i-1} + b_i): a block bidiagonal J;
* the densely connected network  x_i = tanh(sum_{j<i} W_ij x_j + b_i): every
  layer reads every earlier one, a full block lower triangular J.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from lagrad.ir import ops
from lagrad.ir.program import Program
from lagrad.ir.trace import trace
from lagrad.study.plot_spy import spy_system

__all__ = ["NetworkCase", "scalar_chain", "matrix_network", "dense_network", "edelman_study"]

Array = NDArray[np.float64]


@dataclass(frozen=True)
class NetworkCase:
    """A traced network, its parameters and what to report about it."""

    name: str
    program: Program
    params: tuple[Array, ...]


def _loss(x: Any, y: Array) -> Any:
    r = x - y
    return 0.5 * ops.sum(r * r)


def scalar_chain(n: int = 6, seed: int = 0) -> NetworkCase:
    """x_0 = 0.3; x_i = tanh(w_i x_{i-1} + b_i), i = 1..n; loss (x_n - 0.5)^2 / 2."""
    rng = np.random.default_rng(seed)
    w, b = rng.standard_normal(n), 0.1 * rng.standard_normal(n)

    def net(w: Any, b: Any) -> Any:
        x = 0.3
        for i in range(n):
            x = ops.tanh(w[i] * x + b[i])
        return _loss(x, np.array(0.5))
    return NetworkCase("scalar chain", trace(net, w, b), (w, b))


def matrix_network(width: int = 3, layers: int = 3, seed: int = 1) -> NetworkCase:
    """X_i = tanh(W_i X_{i-1} + b_i) on a batch of 2 columns; squared loss."""
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((width, 2))
    y = rng.standard_normal((width, 2))
    params = tuple(p for _ in range(layers)
                   for p in (rng.standard_normal((width, width)) / np.sqrt(width),
                             0.1 * rng.standard_normal((width, 1))))

    def net(*p: Any) -> Any:
        x = x0
        for i in range(layers):
            x = ops.tanh(p[2 * i] @ x + p[2 * i + 1])
        return _loss(x, y)
    return NetworkCase("matrix network", trace(net, *params), params)


def dense_network(width: int = 2, layers: int = 3, seed: int = 2) -> NetworkCase:
    """x_i = tanh(sum_{j<i} W_ij x_j + b_i), x_0 given; squared loss on x_layers."""
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(width)
    y = rng.standard_normal(width)
    params = tuple(rng.standard_normal((width, width)) / np.sqrt(width * (i + 1))
                   for i in range(layers) for _ in range(i + 1))
    params += tuple(0.1 * rng.standard_normal(width) for _ in range(layers))

    def net(*p: Any) -> Any:
        xs: list[Any] = [x0]
        k = 0
        for i in range(layers):
            a = p[len(p) - layers + i]
            for j in range(i + 1):
                a = a + p[k] @ xs[j]
                k += 1
            xs.append(ops.tanh(a))
        return _loss(xs[-1], y)
    return NetworkCase("densely connected network", trace(net, *params), params)


def finite_difference_gradient(program: Program, params: tuple[Array, ...],
                               eps: float = 1e-6) -> list[Array]:
    """Central differences of the forward solve, one entry at a time."""
    out = []
    for k, p in enumerate(params):
        g = np.zeros(p.size)
        for i in range(p.size):
            shifted = []
            for sign in (1.0, -1.0):
                q = p.ravel().copy()
                q[i] += sign * eps
                args = list(params)
                args[k] = q.reshape(p.shape)
                shifted.append(float(program.solve(*args).output))
            g[i] = (shifted[0] - shifted[1]) / (2 * eps)
        out.append(g.reshape(p.shape))
    return out


def analyse(case: NetworkCase) -> dict[str, Any]:
    """Triangularity of the multiplier system and the gradient error against
    finite differences."""
    sol = case.program.solve(*case.params)
    system = sol.adjoint_system()
    jac = system.jacobian
    lam, info = system.solve("backsub")
    grads = sol.grad()
    grads = grads if isinstance(grads, tuple) else (grads,)
    fd = finite_difference_gradient(case.program, case.params)
    error = max(float(np.max(np.abs(g - f)) / max(np.max(np.abs(f)), 1e-12))
                for g, f in zip(grads, fd))
    return {"name": case.name, "variables": len(case.program.variables), "size": jac.shape[0],
            "nnz": int(system.matrix.nnz), "strictly_lower": sp.triu(jac).nnz == 0,
            "upper_triangular": sp.tril(system.matrix, -1).nnz == 0,
            "backsub_residual": info.residual, "fd_error": error, "system": system}


CASES: tuple[Callable[[], NetworkCase], ...] = (scalar_chain, matrix_network, dense_network)


def edelman_study(write: Callable[[str], Any] = print, small: bool = False,
                  plot_dir: str | None = None) -> dict[str, Any]:
    """The three networks: structure of the multiplier system and gradient
    against finite differences. With ``plot_dir``, write ``edelman_*.png``
    (sparsity of each (I - J)^T; needs the plot extra)."""
    write("== edelman: the three networks of 'Backpropagation through back substitution "
          "with a backslash'")
    write(f"  {'network':<26} {'vars':>5} {'n':>5} {'nnz':>5} {'J strictly lower':>17} "
          f"{'(I-J)^T upper':>14} {'backsub res':>11} {'vs FD':>9}")
    rows = []
    for make in CASES:
        row = analyse(make())
        rows.append(row)
        write(f"  {row['name']:<26} {row['variables']:>5} {row['size']:>5} {row['nnz']:>5} "
              f"{'yes' if row['strictly_lower'] else 'NO':>17} "
              f"{'yes' if row['upper_triangular'] else 'NO':>14} "
              f"{row['backsub_residual']:11.1e} {row['fd_error']:9.1e}")
    write("  (the multipliers solve an upper triangular system: back substitution is "
          "backpropagation)")
    paths = []
    if plot_dir is not None:
        for row in rows:
            path = f"{plot_dir}/edelman_{row['name'].split()[0]}.png"
            spy_system(row["system"], path, title=f"{row['name']}: (I - J)^T")
            paths.append(path)
    return {"rows": rows, "paths": paths}
