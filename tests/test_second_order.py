"""Second order: lagrad.hvp and lagrad.hessian (forward over reverse on the
multiplier system), against closed forms, finite differences of the gradient
and symmetry, also through fixed_point and root."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import lagrad

RTOL = 1e-8


def _fd_hvp(fn, x, v, h=1e-3):
    """H v by a fourth-order central difference of lagrad's gradient."""
    g = lagrad.grad(fn)
    return (-g(x + 2 * h * v) + 8 * g(x + h * v) - 8 * g(x - h * v) + g(x - 2 * h * v)) / (12 * h)


def _close(a, b, rtol=RTOL):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)


# ------------------------------------------------------------- closed forms

def test_polynomial_hessian_closed_form():
    def f(x):
        return x[0] ** 3 * x[1] + 2.0 * x[1] ** 2 * x[2] + x[2] ** 4

    x = np.array([1.5, -0.7, 2.0])
    a, b, c = x
    expected = np.array([[6 * a * b, 3 * a ** 2, 0.0],
                         [3 * a ** 2, 4 * c, 4 * b],
                         [0.0, 4 * b, 12 * c ** 2]])
    _close(lagrad.hessian(f)(x), expected)


def test_exp_sin_composition():
    def f(x):
        return lagrad.exp(lagrad.sin(x))

    x = 0.7
    s, c = np.sin(x), np.cos(x)
    _close(lagrad.hessian(f)(x), np.exp(s) * (c * c - s))


def test_hvp_shapes_and_structure():
    def f(x, y):
        return lagrad.sum(lagrad.sin(x) * y["w"]) + y["b"] ** 2

    x = np.array([0.1, 0.2])
    y = {"w": np.array([1.0, 2.0]), "b": 3.0}
    hx, hy = lagrad.hvp(f, (x, y), (np.ones(2), {"w": np.zeros(2), "b": 1.0}))
    _close(hx, -np.sin(x) * y["w"])
    _close(hy["w"], np.cos(x))
    _close(hy["b"], 2.0)
    # JAX's layout: a tree of trees, each leaf of shape s_i + s_j
    h = lagrad.hessian(f, argnums=(0, 1))(x, y)
    assert h[0][0].shape == (2, 2) and h[0][1]["w"].shape == (2, 2)
    assert np.shape(h[1]["b"][1]["b"]) == () and h[1]["w"][0].shape == (2, 2)


def test_hessian_of_matrix_argument_has_doubled_shape():
    a = np.arange(1.0, 7.0).reshape(2, 3) / 7

    def f(m):
        return lagrad.sum(lagrad.matmul(m, m.T) ** 2)

    h = lagrad.hessian(f)(a)
    assert h.shape == (2, 3, 2, 3)
    _close(h.reshape(6, 6), h.reshape(6, 6).T)


# ---------------------------------------------------- through cyclic blocks

def _newton_sqrt(a):
    return lagrad.fixed_point(lambda z, a: 0.5 * (z + a / z), 1.0, a)


@pytest.mark.parametrize("a", [2.0, 0.3, 9.0])
def test_sqrt_by_newton_fixed_point(a):
    _close(lagrad.grad(_newton_sqrt)(a), 0.5 / np.sqrt(a))
    _close(lagrad.hessian(_newton_sqrt)(a), -0.25 * a ** -1.5)


def _kepler(m, e):
    return lagrad.root(lambda big_e, m, e: big_e - e * lagrad.sin(big_e) - m, m, m, e)


def test_kepler_root_closed_form():
    m, e = 1.1, 0.3
    big_e = float(_kepler(m, e))
    d = 1 - e * np.cos(big_e)
    # E_M = 1 / d, E_MM = -e sin E / d^3
    _close(lagrad.hessian(_kepler)(m, e), -e * np.sin(big_e) / d ** 3)
    h = lagrad.hessian(_kepler, argnums=(0, 1))(m, e)
    # E_e = sin E / d, and E_Me = d/de (1 / d) = (cos E + e (-sin E) E_e) ... / d^2
    e_e = np.sin(big_e) / d
    e_me = (np.cos(big_e) - e * np.sin(big_e) * e_e) / d ** 2
    _close(h[0][1], e_me)
    _close(h[1][0], e_me)


def test_vector_fixed_point_against_finite_differences(rng):
    a = 0.3 * rng.standard_normal((3, 3))

    def f(x):
        z = lagrad.fixed_point(lambda z, x: lagrad.tanh(lagrad.matmul(a, z) + x), np.zeros(3), x)
        return lagrad.sum(z ** 3) + lagrad.logsumexp(z * x)

    x = rng.standard_normal(3)
    h = lagrad.hessian(f)(x)
    _close(h, h.T)
    for v in np.eye(3):
        _close(lagrad.hvp(f, (x,), (v,)), _fd_hvp(f, x, v), rtol=1e-7)


def test_quadratic_through_a_linear_fixed_point(rng):
    # z = B z + x with a contraction B is the linear solve z = (I - B)^-1 x, so
    # f = z^T Q z / 2 has Hessian (I - B)^-T Q (I - B)^-1
    b = 0.2 * rng.standard_normal((3, 3))
    q = rng.standard_normal((3, 3))
    q = q + q.T

    def f(x):
        z = lagrad.fixed_point(lambda z, x: lagrad.matmul(b, z) + x, np.zeros(3), x)
        return 0.5 * lagrad.sum(z * lagrad.matmul(q, z))

    inv = np.linalg.inv(np.eye(3) - b)
    _close(lagrad.hessian(f)(rng.standard_normal(3)), inv.T @ q @ inv)


# ------------------------------------------- every rule against the gradient

X = np.array([0.3, 0.8, 1.7, 0.55])
M = np.array([[0.5, -0.2, 0.1, 0.3], [0.0, 0.4, -0.6, 0.2]])
FUNCTIONS = {
    "mul": lambda x: lagrad.sum(x * x[::-1] * x),
    "div": lambda x: lagrad.sum(x[:2] / x[2:]),
    "pow": lambda x: lagrad.sum(x ** x[::-1]) + lagrad.sum(x ** 2.5),
    "exp log sqrt": lambda x: lagrad.sum(lagrad.exp(x) * lagrad.log(x) + lagrad.sqrt(x)),
    "trig": lambda x: lagrad.sum(lagrad.sin(x) * lagrad.cos(x[::-1]) + lagrad.arctan(x)),
    "tanh sigmoid": lambda x: lagrad.sum(lagrad.tanh(x) * lagrad.sigmoid(x[::-1])),
    "hyperbolic": lambda x: lagrad.sum(lagrad.sinh(x) * lagrad.cosh(x) + lagrad.square(x)),
    "log1p expm1": lambda x: lagrad.sum(lagrad.log1p(x) * lagrad.expm1(x)),
    "logaddexp": lambda x: lagrad.sum(lagrad.logaddexp(x, 2 * x[::-1])),
    "logsumexp": lambda x: lagrad.logsumexp(x * x[::-1]),
    "matmul": lambda x: lagrad.sum(lagrad.sin(lagrad.matmul(M, x)) * lagrad.matmul(M, x)),
    "matmul bilinear": lambda x: lagrad.sum(
        lagrad.matmul(lagrad.reshape(x, (2, 2)), lagrad.reshape(x[::-1], (2, 2))) ** 2),
    "einsum": lambda x: lagrad.einsum("i,i,i->", x, x, lagrad.exp(x)),
    "batched matmul": lambda x: lagrad.sum(lagrad.matmul(
        lagrad.reshape(x, (1, 2, 2)), lagrad.reshape(x * x, (1, 2, 2))) ** 2),
    "cumsum max": lambda x: lagrad.sum(lagrad.cumsum(x, axis=0) ** 2) * lagrad.max(x),
    "structural": lambda x: lagrad.sum(lagrad.concatenate([x, x ** 2])[1:] ** 3),
}


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_hvp_matches_finite_differences_of_the_gradient(name, rng):
    fn = FUNCTIONS[name]
    v = rng.standard_normal(X.size)
    _close(lagrad.hvp(fn, (X,), (v,)), _fd_hvp(fn, X, v), rtol=1e-7)
    h = lagrad.hessian(fn)(X)
    _close(h, h.T)
    _close(h @ v, lagrad.hvp(fn, (X,), (v,)))


def test_scalar_batches_use_second_partials():
    # many scalar equations of one primitive and level run as a Batch step
    def f(a, b, c, d):
        return lagrad.sin(a) * lagrad.sin(b) + lagrad.sin(c) * lagrad.exp(d)

    x = (0.1, 0.2, 0.3, 0.4)
    h = lagrad.hessian(f, argnums=(0, 1, 2, 3))(*x)
    full = np.array([[float(h[i][j]) for j in range(4)] for i in range(4)])
    s, c = np.sin(x), np.cos(x)
    expected = np.array([[-s[0] * s[1], c[0] * c[1], 0, 0],
                         [c[0] * c[1], -s[0] * s[1], 0, 0],
                         [0, 0, -s[2] * np.exp(x[3]), c[2] * np.exp(x[3])],
                         [0, 0, c[2] * np.exp(x[3]), s[2] * np.exp(x[3])]])
    _close(full, expected)


def _cube_value(x):
    return x ** 3


def _cube_partials(k, ans, x):
    return 3 * x ** 2


def test_missing_second_order_rule_names_the_primitive():
    # every built-in primitive has one; a Primitive of one's own may not
    cube = lagrad.Primitive("my_cube", _cube_value, lambda s: s, partials=_cube_partials)
    assert float(lagrad.grad(lambda x: cube(x))(2.0)) == 12.0
    with pytest.raises(lagrad.MissingDerivativeError, match="'my_cube'.*`second`"):
        lagrad.hessian(lambda x: lagrad.sum(cube(x)))(np.array([1.0, 2.0]))
    assert issubclass(lagrad.MissingDerivativeError, NotImplementedError)


def test_a_quadratic_through_a_linear_solve():
    """f(b) = x^T Q x with A x = b: the Hessian is 2 A^-T Q A^-1; with respect
    to A it matches finite differences of the gradient (linalg.solve's
    second-order rule)."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=(3, 3)) + 3 * np.eye(3)
    q = rng.normal(size=(3, 3))
    q = q @ q.T
    b = rng.normal(size=3)

    def f(b: np.ndarray) -> object:
        x = lagrad.linalg.solve(a, b)
        return x @ (q @ x)
    a_inv = np.linalg.inv(a)
    np.testing.assert_allclose(lagrad.hessian(f)(b), 2 * a_inv.T @ q @ a_inv, rtol=1e-10)
    for rhs in (b, rng.normal(size=(3, 2))):
        g = lambda m, rhs=rhs: lagrad.sum(lagrad.linalg.solve(m, rhs) ** 2)  # noqa: E731
        hess, grad = lagrad.hessian(g)(a), lagrad.grad(g)
        eps = 1e-6
        for i, j in [(0, 0), (1, 2), (2, 1)]:
            e = np.zeros((3, 3))
            e[i, j] = eps
            fd = (grad(a + e) - grad(a - e)) / (2 * eps)
            np.testing.assert_allclose(hess[:, :, i, j], fd, rtol=1e-6, atol=1e-9)


def _hessian_matches_fd(f, x: np.ndarray) -> None:
    """lagrad.hessian against central differences of lagrad.grad."""
    hess, grad, eps = lagrad.hessian(f)(x), lagrad.grad(f), 1e-6
    n = x.size
    fd = np.empty((n, n))
    for i in range(n):
        e = np.zeros(n)
        e[i] = eps
        plus, minus = grad((x.ravel() + e).reshape(x.shape)), grad((x.ravel() - e).reshape(x.shape))
        fd[:, i] = ((plus - minus) / (2 * eps)).ravel()
    np.testing.assert_allclose(np.reshape(hess, (n, n)), fd, rtol=1e-6, atol=1e-8)


def test_determinants_sparse_solves_and_sparse_products_have_second_order_rules():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(3, 3)) + 3 * np.eye(3)
    _hessian_matches_fd(lambda m: lagrad.linalg.det(m), a)
    _hessian_matches_fd(lambda m: lagrad.linalg.slogdet(m)[1], a)
    _hessian_matches_fd(lambda m: lagrad.linalg.slogdet(m)[0] * lagrad.sum(m * m), a)
    m = (sp.random(5, 5, density=0.5, random_state=2, format="coo") + 3 * sp.eye(5)).tocoo()
    row, col, data = m.row, m.col, m.data
    b, x = rng.normal(size=5), rng.normal(size=5)
    _hessian_matches_fd(lambda d: lagrad.sum(
        lagrad.linalg.spsolve((d, row, col), b, shape=(5, 5)) ** 2), data)
    _hessian_matches_fd(lambda v: lagrad.sum(
        lagrad.linalg.spsolve((data, row, col), v, shape=(5, 5)) ** 3), b)
    k = data.size
    _hessian_matches_fd(lambda v: lagrad.sum(
        lagrad.coo_matvec(v[:k], row, col, v[k:], shape=(5, 5)) ** 2),
        np.concatenate([data, x]))
