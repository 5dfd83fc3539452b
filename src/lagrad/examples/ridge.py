"""Ridge regression weights as a root constraint; gradient of the validation loss."""

from __future__ import annotations

import numpy as np

from lagrad.ir import ops
from lagrad.ir.program import Program

from .base import Example

__all__ = ["ridge"]


def ridge(n_samples: int = 30, n_features: int = 5, seed: int = 0) -> Example:
    """Validation loss of ridge regression as a function of the penalty alpha.

    Parameters
    ----------
    n_samples : int
        Number of training samples (the validation set has as many).
    n_features : int
        Number of features, the size of the weights w.
    seed : int
        Seed of the data.

    Returns
    -------
    Example
        Input ``alpha`` (a scalar, 0.5). The weights are the unknown of the
        root constraint X^T (X w - y) + alpha w = 0; the output is
        0.5 ||X_val w - y_val||^2.

    Notes
    -----
    The root is linear in w, so Newton's method solves it in one step; the map
    w <- w - g(w) is not a contraction (the eigenvalues of X^T X are large),
    so fixed-point iteration does not apply. With H = X^T X + alpha I, the
    reference is the closed form

        d output / d alpha = -(X_val^T (X_val w - y_val))^T H^-1 w.

    Examples
    --------
    >>> from lagrad.examples import ridge
    >>> ex = ridge()
    >>> sol = ex.solve()
    >>> bool(ex.gradient_error(sol) < 1e-8)
    True
    >>> sol.diagnostics[max(sol.diagnostics)].iterations  # Newton, on a linear root
    1
    """
    rng = np.random.default_rng(seed)
    w_true = rng.standard_normal(n_features)
    x = rng.standard_normal((n_samples, n_features))
    y = x @ w_true + 0.5 * rng.standard_normal(n_samples)
    x_val = rng.standard_normal((n_samples, n_features))
    y_val = x_val @ w_true + 0.5 * rng.standard_normal(n_samples)
    alpha = 0.5

    p = Program("ridge")
    alpha_in = p.input("alpha")
    w = p.unknown("w", (n_features,))
    p.root(w, x.T @ (x @ w - y) + alpha_in * w)
    err = x_val @ w - y_val
    p.output(0.5 * ops.sum(err * err))

    h = x.T @ x + alpha * np.eye(n_features)
    w_ref = np.linalg.solve(h, x.T @ y)
    grad = -(x_val.T @ (x_val @ w_ref - y_val)) @ np.linalg.solve(h, w_ref)
    return Example(
        name="ridge", program=p, inputs={"alpha": np.array(alpha)},
        reference={"alpha": np.array(grad)},
        description=f"ridge weights (n={n_samples}, p={n_features}) from the root "
                    "X^T (X w - y) + alpha w = 0, output the validation loss; reference: "
                    "closed form")
