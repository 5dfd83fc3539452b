"""Study ``digits``: an MLP on scikit-learn's bundled digits (8 x 8 images,
10 classes), trained three ways, with test accuracy and wall time each:

* stochastic gradient descent on the exact gradient (minibatches, momentum):
  every step a forward solve and one adjoint solve;
* the quadratic penalty and
* the augmented Lagrangian over (weights, every intermediate value z,
  multipliers lambda) on the whole training set, the network's equations
  relaxed and the cross-entropy (summed over samples) a loss on its logits.

Needs scikit-learn (``pip install scikit-learn``), for its bundled data set
only. The exact gradient is checked against hand-written backpropagation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.errors import LagradError
from lagrad.ir import ops
from lagrad.ir.program import Program
from lagrad.ir.trace import trace
from lagrad.optimize import augmented_lagrangian, gradient_descent, plot, quadratic_penalty

__all__ = ["load_digits_split", "init_params", "network", "cross_entropy", "accuracy",
           "numpy_gradient", "digits_study"]

Array = NDArray[np.float64]


def load_digits_split(train: int, seed: int = 0) -> tuple[Array, Array, Array, Array]:
    """(X_train, y_train, X_test, y_test), pixels scaled to [0, 1]; the test
    set is every sample not in the ``train`` first of a seeded permutation."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise LagradError("the digits study needs scikit-learn for its bundled data set: "
                          "pip install scikit-learn") from err
    data = load_digits()
    x, y = np.asarray(data.data, dtype=float) / 16.0, np.asarray(data.target)
    perm = np.random.default_rng(seed).permutation(len(y))
    return x[perm[:train]], y[perm[:train]], x[perm[train:]], y[perm[train:]]


def init_params(hidden: int, seed: int = 0) -> tuple[Array, Array, Array, Array]:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((64, hidden)) / 8.0, np.zeros(hidden),
            rng.standard_normal((hidden, 10)) / np.sqrt(hidden), np.zeros(10))


def network(x: Any, w1: Any, b1: Any, w2: Any, b2: Any) -> Any:
    """Logits of the tanh MLP."""
    return ops.tanh(x @ w1 + b1) @ w2 + b2


def cross_entropy(logits: Any, onehot: Array) -> Any:
    """Summed softmax cross-entropy."""
    return -ops.sum(onehot * (logits - ops.logsumexp(logits, axis=1, keepdims=True)))


def accuracy(params: tuple[Array, ...], x: Array, y: Array) -> float:
    h = np.tanh(x @ params[0] + params[1])
    return float(np.mean((h @ params[2] + params[3]).argmax(axis=1) == y))


def numpy_gradient(params: tuple[Array, ...], x: Array, onehot: Array) -> tuple[Array, ...]:
    """Hand-written backpropagation of the summed cross-entropy (the reference)."""
    w1, b1, w2, b2 = params
    h = np.tanh(x @ w1 + b1)
    logits = h @ w2 + b2
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    d2 = p - onehot
    d1 = (d2 @ w2.T) * (1 - h * h)
    return x.T @ d1, d1.sum(axis=0), h.T @ d2, d2.sum(axis=0)


def _sgd(params: tuple[Array, ...], x: Array, onehot: Array, batch: int, epochs: int
         ) -> Any:
    program = trace(lambda w1, b1, w2, b2, xb, yb: cross_entropy(network(xb, w1, b1, w2, b2),
                                                                yb) / batch,
                    *params, x[:batch], onehot[:batch])
    names = [v.name for v in program.inputs]
    per_epoch = x.shape[0] // batch
    rng = np.random.default_rng(1)
    orders = [rng.permutation(x.shape[0]) for _ in range(epochs)]

    def minibatch(k: int) -> dict[str, Array]:
        rows = orders[min(k // per_epoch, epochs - 1)][(k % per_epoch) * batch:][:batch]
        return {names[4]: x[rows], names[5]: onehot[rows]}
    return gradient_descent(program, params, fixed=minibatch, learning_rate=0.3, momentum=0.9,
                            maxiter=epochs * per_epoch, gtol=0.0)


def _relaxed(method: Callable[..., Any], params: tuple[Array, ...], x: Array, onehot: Array,
             outer: int, inner: int) -> Any:
    program: Program = trace(lambda w1, b1, w2, b2: network(x, w1, b1, w2, b2), *params)
    return method(program, params, loss=lambda logits: cross_entropy(logits, onehot),
                  penalty=1.0, maxiter=outer, inner_options={"maxiter": inner, "maxcor": 10})


def digits_study(write: Callable[[str], Any] = print, small: bool = False,
                 plot_dir: str | None = None) -> dict[str, Any]:
    """Train the MLP three ways; accuracy on the held-out digits and wall time.
    With ``plot_dir``, write ``digits_convergence.png``."""
    train, hidden, epochs, outer, inner = (200, 8, 10, 4, 100) if small else \
        (1000, 16, 30, 8, 300)
    x, y, xt, yt = load_digits_split(train)
    onehot = np.eye(10)[y]
    params = init_params(hidden)
    write(f"== digits: MLP 64-{hidden}-10 (tanh) on scikit-learn's digits, {train} training "
          f"and {len(yt)} test images")
    program = trace(lambda w1, b1, w2, b2: cross_entropy(network(x, w1, b1, w2, b2), onehot),
                    *params)
    ref = numpy_gradient(params, x, onehot)
    grads = program.solve(*params).grad()
    error = max(float(np.max(np.abs(g - r)) / np.max(np.abs(r))) for g, r in zip(grads, ref))
    write(f"  exact gradient vs hand-written backpropagation: {error:.1e} (max relative)")
    runs, rows = [], []
    for name, train_fn in (
            ("SGD, exact gradient", lambda: _sgd(params, x, onehot, 50, epochs)),
            ("quadratic penalty", lambda: _relaxed(quadratic_penalty, params, x, onehot,
                                                   outer, inner)),
            ("augmented Lagrangian", lambda: _relaxed(augmented_lagrangian, params, x, onehot,
                                                      outer, inner))):
        t0 = time.perf_counter()
        res = train_fn()
        seconds = time.perf_counter() - t0
        runs.append(res)
        rows.append({"method": name, "train_accuracy": accuracy(res.x, x, y),
                     "test_accuracy": accuracy(res.x, xt, yt), "seconds": seconds,
                     "method_seconds": res.history[-1].seconds, "evaluations": res.nfev})
    write(f"  {'method':<22} {'train acc':>9} {'test acc':>9} {'wall s':>7} {'evals':>6}")
    for r in rows:
        write(f"  {r['method']:<22} {r['train_accuracy']:9.3f} {r['test_accuracy']:9.3f} "
              f"{r['seconds']:7.2f} {r['evaluations']:>6}")
    write("  (wall s includes tracing and the per-iteration monitoring; evals: objective and "
          "gradient evaluations)")
    paths = []
    if plot_dir is not None:
        path = f"{plot_dir}/digits_convergence.png"
        plot(runs[1:], xaxis="seconds", path=path, labels=[r["method"] for r in rows[1:]],
             title="digits MLP: the relaxed methods over (x, z, lambda)")
        paths.append(path)
    return {"gradient_error": error, "rows": rows, "results": runs, "paths": paths}
