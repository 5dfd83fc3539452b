"""A tanh MLP 784-256-10 with mean softmax cross-entropy, traced by lagrad,
against a hand-written numpy backprop (the independent reference)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import lagrad

BATCH, N_IN, N_HIDDEN, N_OUT = 32, 784, 256, 10
RTOL = 1e-10


def make_data(seed: int = 0, batch: int = BATCH, n_in: int = N_IN, n_hidden: int = N_HIDDEN,
              n_out: int = N_OUT) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """Inputs X, one-hot labels Y (from integer classes) and (W1, b1, W2, b2)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, n_in))
    labels = rng.integers(0, n_out, batch)
    Y = np.eye(n_out)[labels]
    params = (rng.standard_normal((n_in, n_hidden)) / np.sqrt(n_in),
              0.1 * rng.standard_normal(n_hidden),
              rng.standard_normal((n_hidden, n_out)) / np.sqrt(n_hidden),
              0.1 * rng.standard_normal(n_out))
    return X, Y, params


def loss_lse(X: Any, Y: np.ndarray, W1: Any, b1: Any, W2: Any, b2: Any) -> Any:
    """Mean cross-entropy as logsumexp(logits) - <y, logits>."""
    h = lagrad.tanh(X @ W1 + b1)
    logits = h @ W2 + b2
    return lagrad.mean(lagrad.logsumexp(logits, axis=1) - lagrad.sum(Y * logits, axis=1))


def loss_softmax(X: Any, Y: np.ndarray, W1: Any, b1: Any, W2: Any, b2: Any) -> Any:
    """The same loss as -mean(sum(y * log softmax(logits)))."""
    h = lagrad.tanh(X @ W1 + b1)
    logits = h @ W2 + b2
    return -lagrad.sum(Y * lagrad.log(lagrad.softmax(logits, axis=-1))) / X.shape[0]


def loss_params(params: tuple[Any, ...], X: np.ndarray, Y: np.ndarray) -> Any:
    """The loss with the parameters in one tuple argument (a pytree of arrays)."""
    return loss_lse(X, Y, *params)


def numpy_loss_and_grads(X: np.ndarray, Y: np.ndarray, W1: np.ndarray, b1: np.ndarray,
                         W2: np.ndarray, b2: np.ndarray) -> tuple[float, tuple[np.ndarray, ...]]:
    """Hand-written forward pass and backprop."""
    a = X @ W1 + b1
    h = np.tanh(a)
    logits = h @ W2 + b2
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    batch = X.shape[0]
    loss = -float(np.sum(Y * log_p)) / batch
    d_logits = (np.exp(log_p) - Y) / batch  # d loss / d logits
    dW2 = h.T @ d_logits
    db2 = d_logits.sum(axis=0)
    d_a = (d_logits @ W2.T) * (1.0 - h ** 2)
    dW1 = X.T @ d_a
    db1 = d_a.sum(axis=0)
    return loss, (dW1, db1, dW2, db2)


def assert_grads_equal(got: tuple[Any, ...], expected: tuple[np.ndarray, ...]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert isinstance(g, np.ndarray) and g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=RTOL, atol=1e-14 * float(np.max(np.abs(e))))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    return make_data()


@pytest.fixture(scope="module")
def reference(data: Any) -> tuple[float, tuple[np.ndarray, ...]]:
    X, Y, params = data
    return numpy_loss_and_grads(X, Y, *params)


def test_reference_backprop_matches_finite_differences(data: Any) -> None:
    """The numpy backprop is itself checked, on a few entries of each gradient."""
    X, Y, params = data
    _, grads = numpy_loss_and_grads(X, Y, *params)
    rng = np.random.default_rng(1)
    eps = 1e-6
    for k, (p, g) in enumerate(zip(params, grads)):
        for _ in range(3):
            pos = tuple(int(rng.integers(n)) for n in p.shape)
            e = np.zeros_like(p)
            e[pos] = eps
            plus = list(params)
            minus = list(params)
            plus[k], minus[k] = p + e, p - e
            fd = (numpy_loss_and_grads(X, Y, *plus)[0]
                  - numpy_loss_and_grads(X, Y, *minus)[0]) / (2 * eps)
            assert fd == pytest.approx(g[pos], rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("loss", [loss_lse, loss_softmax], ids=["logsumexp", "softmax"])
def test_grad_with_argnums_tuple_matches_numpy_backprop(loss: Any, data: Any,
                                                        reference: Any) -> None:
    X, Y, params = data
    grads = lagrad.grad(loss, argnums=(2, 3, 4, 5))(X, Y, *params)
    assert isinstance(grads, tuple)
    assert_grads_equal(grads, reference[1])


@pytest.mark.parametrize("loss", [loss_lse, loss_softmax], ids=["logsumexp", "softmax"])
def test_value_and_grad_matches_numpy_backprop(loss: Any, data: Any, reference: Any) -> None:
    X, Y, params = data
    value, grads = lagrad.value_and_grad(loss, argnums=(2, 3, 4, 5))(X, Y, *params)
    assert float(value) == pytest.approx(reference[0], rel=1e-13)
    assert_grads_equal(grads, reference[1])


def test_grad_of_one_weight_and_of_a_parameter_tuple(data: Any, reference: Any) -> None:
    X, Y, params = data
    dW2 = lagrad.grad(loss_lse, argnums=4)(X, Y, *params)
    assert_grads_equal((dW2,), (reference[1][2],))
    grads = lagrad.grad(loss_params)(params, X, Y)  # a tuple argument gives a tuple
    assert isinstance(grads, tuple)
    assert_grads_equal(grads, reference[1])


def test_traced_program_solution_matches_numpy_backprop(data: Any, reference: Any) -> None:
    """The same through the program API: trace once, solve, read the gradient
    off the multipliers (X and Y enter as inputs too: their gradients exist)."""
    X, Y, params = data
    program = lagrad.trace(lambda X, W1, b1, W2, b2: loss_lse(X, Y, W1, b1, W2, b2), X, *params)
    assert [v.name for v in program.inputs] == ["X", "W1", "b1", "W2", "b2"]
    sol = program.solve(X, *params)
    assert float(sol.output) == pytest.approx(reference[0], rel=1e-13)
    dX, *grads = sol.grad()
    assert dX.shape == X.shape
    assert_grads_equal(tuple(grads), reference[1])
    lam = sol.multipliers()
    np.testing.assert_array_equal(lam["W1"], grads[0])
    primal, dual = sol.kkt_residuals()
    assert primal <= 1e-12 and dual <= 1e-12


def test_small_mlp_all_solvers_agree_with_backprop() -> None:
    """On a small MLP the assembled system can be solved directly too."""
    X, Y, params = make_data(seed=3, batch=5, n_in=7, n_hidden=6, n_out=4)
    _, expected = numpy_loss_and_grads(X, Y, *params)
    program = lagrad.trace(lambda W1, b1, W2, b2: loss_lse(X, Y, W1, b1, W2, b2), *params)
    sol = program.solve(*params)
    for method in ("backsub", "spsolve", "dense"):
        assert_grads_equal(sol.grad(method=method), expected)
    tangent = sol.tangent(tuple(np.ones_like(p) for p in params))
    slope = sum(float(np.sum(g)) for g in expected)
    assert float(tangent[program.output_variable]) == pytest.approx(slope, rel=1e-10)


def test_wrong_reference_is_detected(data: Any, reference: Any) -> None:
    """The comparison would catch a backprop mistake of 1e-8 relative."""
    X, Y, params = data
    grads = lagrad.grad(loss_lse, argnums=(2, 3, 4, 5))(X, Y, *params)
    wrong = (reference[1][0], reference[1][1] * (1 + 1e-8), *reference[1][2:])
    with pytest.raises(AssertionError):
        assert_grads_equal(grads, wrong)
