"""Workload ``mlp``: tanh MLP 784-256-256-10, batch 128, mean softmax
cross-entropy; gradient with respect to every weight and bias. Floor: the
same forward pass and backpropagation written by hand in numpy."""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

import lagrad

from .core import Column, Context, format_table, relative_error, time_calls

__all__ = ["mlp", "SIZES", "make_mlp", "lagrad_loss", "numpy_loss", "numpy_gradient"]

Array = NDArray[np.float64]
SIZES = {"tiny": [((64, 32, 32, 10), 16)], "quick": [((784, 256, 256, 10), 128)],
         "full": [((784, 256, 256, 10), 128)]}


def make_mlp(sizes: tuple[int, ...], batch: int, seed: int = 0
             ) -> tuple[Array, Array, tuple[Array, ...]]:
    """Data (batch, n_in), one-hot labels (batch, n_out) and the parameters
    (W1, b1, W2, b2, ...), W scaled by 1/sqrt(fan-in)."""
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((batch, sizes[0]))
    labels = np.eye(sizes[-1])[rng.integers(sizes[-1], size=batch)]
    params: list[Array] = []
    for n_in, n_out in itertools.pairwise(sizes):
        params += [rng.standard_normal((n_in, n_out)) / np.sqrt(n_in),
                   0.1 * rng.standard_normal(n_out)]
    return data, labels, tuple(params)


def lagrad_loss(data: Array, labels: Array) -> Any:
    """The loss as a function of (W1, b1, W2, b2, ...) written with lagrad ops."""
    def loss(*params: Any) -> Any:
        h = data
        n_layers = len(params) // 2
        for k in range(n_layers):
            a = h @ params[2 * k] + params[2 * k + 1]
            h = lagrad.tanh(a) if k < n_layers - 1 else a
        log_probs = h - lagrad.logsumexp(h, axis=1, keepdims=True)
        return -lagrad.mean(lagrad.sum(labels * log_probs, axis=1))
    return loss


def numpy_loss(data: Array, labels: Array, params: tuple[Array, ...]
               ) -> tuple[float, list[Array], Array]:
    """Loss, hidden activations (input first) and logits, in numpy."""
    hs = [data]
    h = data
    n_layers = len(params) // 2
    for k in range(n_layers - 1):
        h = np.tanh(h @ params[2 * k] + params[2 * k + 1])
        hs.append(h)
    logits = h @ params[-2] + params[-1]
    m = logits.max(axis=1, keepdims=True)
    lse = m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    return float(-np.mean(np.sum(labels * (logits - lse), axis=1))), hs, logits


def numpy_gradient(data: Array, labels: Array, params: tuple[Array, ...]
                   ) -> tuple[float, tuple[Array, ...]]:
    """Loss and gradient by hand-written backpropagation."""
    loss, hs, logits = numpy_loss(data, labels, params)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    # d loss / d logits = (p sum(y) - y) / batch, row by row (p - y for one-hot y)
    delta = (p * labels.sum(axis=1, keepdims=True) - labels) / data.shape[0]
    grads: list[Array] = []
    n_layers = len(params) // 2
    for k in range(n_layers - 1, -1, -1):
        grads[:0] = [hs[k].T @ delta, delta.sum(axis=0)]
        if k:
            delta = (delta @ params[2 * k].T) * (1.0 - hs[k] ** 2)
    return loss, tuple(grads)


COLUMNS = [
    Column("layers", "layers"), Column("batch", "batch"), Column("parameters", "params"),
    Column("build_s", "trace ms", "{:.1f}", 1e3),
    Column("forward_s", "fwd ms", "{:.2f}", 1e3), Column("gradient_s", "grad ms", "{:.2f}", 1e3),
    Column("grad_over_forward", "grad/fwd", "{:.2f}"),
    Column("floor_forward_s", "floor fwd ms", "{:.2f}", 1e3),
    Column("floor_gradient_s", "floor grad ms", "{:.2f}", 1e3),
    Column("grad_over_floor", "grad/floor", "{:.2f}"), Column("error", "err", "{:.0e}"),
]


def _mlp_row(ctx: Context, sizes: tuple[int, ...], batch: int) -> dict[str, Any]:
    data, labels, params = make_mlp(sizes, batch)
    ctx.progress(f"mlp: {'-'.join(map(str, sizes))}, batch {batch}: tracing")
    t0 = time.perf_counter()
    program = lagrad.trace(lagrad_loss(data, labels), *params)
    build = time.perf_counter() - t0
    ctx.progress("mlp: timing lagrad and the numpy floor")
    t = time_calls({"forward": lambda: program.solve(*params),
                    "gradient": lambda: program.solve(*params).grad(),
                    "floor_forward": lambda: numpy_loss(data, labels, params)[0],
                    "floor_gradient": lambda: numpy_gradient(data, labels, params)},
                   ctx.repeats or 1, ctx.comparison_budget)
    row: dict[str, Any] = {"workload": "mlp", "layers": "-".join(map(str, sizes)),
                           "batch": batch, "parameters": int(sum(p.size for p in params)),
                           "build_s": build, "repeats": t["gradient"].repeats}
    row.update({f"{k}_s": v.median for k, v in t.items()})
    row["grad_over_forward"] = row["gradient_s"] / row["forward_s"]
    row["grad_over_floor"] = row["gradient_s"] / row["floor_gradient_s"]
    row["error"] = relative_error(t["gradient"].value, t["floor_gradient"].value[1])
    return row


def mlp(ctx: Context) -> list[dict[str, Any]]:
    """lagrad's gradient of a tanh MLP against hand-written numpy backprop."""
    rows = [_mlp_row(ctx, sizes, batch) for sizes, batch in ctx.pick(SIZES)]
    notes = ["grad = forward + gradient (default settings); floor: numpy forward and "
             "hand-written backprop; err: lagrad vs floor gradient",
             "targets: grad/fwd <= 3, grad/floor <= 1.1"]
    ctx.print(format_table("mlp: tanh MLP, mean softmax cross-entropy", COLUMNS, rows, notes))
    return rows
