"""Second-order rules of prod (zero-safe), linalg.cholesky and custom rules
(custom_jvp / custom_vjp, by differentiating the user's rule), against closed
forms, finite differences of the gradient, autograd and symmetry."""

from __future__ import annotations

import itertools

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
import scipy.special

import lagrad

RTOL = 1e-8


def _close(a, b, rtol=RTOL):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)


def _fd_hessian(fn, x, h=1e-4):
    """Columns of the Hessian by fourth-order central differences of lagrad.grad."""
    g, n = lagrad.grad(fn), np.size(x)
    cols = []
    for e in np.eye(n):
        v = e.reshape(np.shape(x))
        d = (-g(x + 2 * h * v) + 8 * g(x + h * v) - 8 * g(x - h * v) + g(x - 2 * h * v))
        cols.append(np.ravel(d) / (12 * h))
    return np.array(cols).T.reshape(np.shape(x) + np.shape(x))


# -------------------------------------------------------------------- prod

def _prod_hessian(x):
    # d^2 prod(x) / dx_i dx_j = prod_{k not in {i, j}} x_k (i != j), 0 on the diagonal
    n = x.size
    return np.array([[0.0 if i == j else np.prod(np.delete(x, [i, j])) for j in range(n)]
                     for i in range(n)])


@pytest.mark.parametrize("x", [
    [1.5, -2.0, 0.7, 3.0],        # no zero
    [0.0, -2.0, 0.7, 3.0],        # one zero
    [1.5, 0.0, 0.7, 0.0],         # two zeros
    [0.0, 0.0, 0.7, 0.0],         # three zeros: the Hessian is zero
    [1e-12, 2.0, -3.0, 1e-9],     # tiny entries, no cancellation
], ids=["none", "one zero", "two zeros", "three zeros", "tiny"])
def test_prod_hessian_is_exact_with_zeros(x):
    x = np.array(x)
    h = lagrad.hessian(lambda x: lagrad.prod(x))(x)
    _close(h, _prod_hessian(x), rtol=1e-12)
    assert np.all(np.isfinite(h))
    for v in np.eye(x.size):
        _close(lagrad.hvp(lambda x: lagrad.prod(x), (x,), (v,)), _prod_hessian(x) @ v)


def test_prod_over_axes_against_autograd_and_finite_differences():
    x = np.array([[1.0, -0.3, 2.0], [3.0, 0.8, 0.5]])

    def f(x):
        return (lagrad.sum(lagrad.prod(x, axis=1, keepdims=True) ** 2)
                + lagrad.sum(lagrad.sin(lagrad.prod(x, axis=0))) + lagrad.prod(x) ** 2)

    def f_ag(x):
        return (anp.sum(anp.prod(x, axis=1, keepdims=True) ** 2)
                + anp.sum(anp.sin(anp.prod(x, axis=0))) + anp.prod(x) ** 2)

    h = lagrad.hessian(f)(x)
    _close(h, autograd.hessian(f_ag)(x))
    x3 = np.arange(1.0, 9.0).reshape(2, 2, 2) / 3  # several reduced axes, not adjacent
    _close(lagrad.hessian(lambda x: lagrad.sum(lagrad.prod(x, axis=(0, 2)) ** 2))(x3),
           autograd.hessian(lambda x: anp.sum(anp.prod(x, axis=(0, 2)) ** 2))(x3))
    # with zeros autograd divides by them; lagrad's gradient does not, so its
    # finite differences are the reference (one and two zeros in a row)
    xz = np.array([[0.0, -0.3, 2.0], [3.0, 0.0, 0.0]])
    h = lagrad.hessian(f)(xz)
    _close(h, _fd_hessian(f, xz), rtol=1e-7)
    _close(h.reshape(6, 6), h.reshape(6, 6).T)


# ---------------------------------------------------------------- cholesky

def _from_lower(a):
    return np.tril(a) + np.tril(a, -1).T


def test_cholesky_log_determinant_closed_form():
    """2 sum log diag chol(A) = log det S with S read from A's lower triangle:
    its second derivative along lower-triangular V, W is -tr(S^-1 V_s S^-1 W_s)
    with V_s the symmetric matrix V stands for; the upper triangle is not read."""
    rng = np.random.default_rng(4)
    b = rng.normal(size=(4, 4))
    a = b @ b.T + 4 * np.eye(4) + np.triu(rng.normal(size=(4, 4)), 1)  # junk above
    diag = (np.arange(4), np.arange(4))

    def logdet(m):
        return 2.0 * lagrad.sum(lagrad.log(lagrad.linalg.cholesky(m)[diag]))

    s_inv = np.linalg.inv(_from_lower(a))
    h = lagrad.hessian(logdet)(a)
    lower = list(zip(*np.tril_indices(4)))
    for (p, q), (r, c) in itertools.product(lower, lower):
        v, w = np.zeros((4, 4)), np.zeros((4, 4))
        v[p, q], w[r, c] = 1.0, 1.0
        want = -np.trace(s_inv @ _from_lower(v) @ s_inv @ _from_lower(w))
        assert h[p, q, r, c] == pytest.approx(want, rel=RTOL, abs=RTOL)
    upper = np.triu(np.ones((4, 4)), 1).astype(bool)
    assert not h[upper].any() and not h[:, :, upper].any()


def test_cholesky_hessian_against_finite_differences_and_symmetry():
    rng = np.random.default_rng(5)
    b = rng.normal(size=(3, 3))
    a = b @ b.T + 3 * np.eye(3)

    def f(m):
        factor = lagrad.linalg.cholesky(m)
        return lagrad.sum(factor ** 3) + lagrad.sum(lagrad.sin(factor))

    h = lagrad.hessian(f)(a)
    _close(h, _fd_hessian(f, a), rtol=1e-7)
    _close(h.reshape(9, 9), h.reshape(9, 9).T)


# ------------------------------------------------------------ custom rules

@lagrad.custom_jvp
def softplus(x):
    return np.logaddexp(0.0, x)


@softplus.defjvp
def _softplus_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return softplus(x), t * lagrad.sigmoid(x)


@lagrad.custom_jvp
def scaled_sin(x, y):
    return x * np.sin(y)


@scaled_sin.defjvp
def _scaled_sin_jvp(primals, tangents):
    (x, y), (tx, ty) = primals, tangents
    return scaled_sin(x, y), tx * lagrad.sin(y) + x * lagrad.cos(y) * ty


@lagrad.custom_vjp
def cube(x):
    return x ** 3


def _cube_fwd(x):
    return x ** 3, x


def _cube_bwd(x, g):
    return (3 * x ** 2 * g,)


cube.defvjp(_cube_fwd, _cube_bwd)


@lagrad.custom_vjp
def weighted_exp(x, w):
    return w * np.exp(x)


def _wexp_fwd(x, w):
    return w * np.exp(x), (x, w)


def _wexp_bwd(res, g):
    x, w = res
    return g * w * lagrad.exp(x), None  # w's cotangent left out on purpose: zero


weighted_exp.defvjp(_wexp_fwd, _wexp_bwd)


def test_custom_jvp_second_order_from_its_rule():
    x = np.array([-1.0, 0.3, 2.0])
    s = scipy.special.expit(x)
    _close(lagrad.hessian(lambda x: lagrad.sum(softplus(x)))(x), np.diag(s * (1 - s)))
    assert lagrad.grad(lagrad.grad(softplus))(0.3) == pytest.approx(
        scipy.special.expit(0.3) * (1 - scipy.special.expit(0.3)), rel=RTOL)
    x, y = 1.3, 0.4
    h = lagrad.hessian(lambda x, y: scaled_sin(x, y) ** 2, argnums=(0, 1))(x, y)
    # f = x^2 sin^2 y
    want = [[2 * np.sin(y) ** 2, 2 * x * np.sin(2 * y)],
            [2 * x * np.sin(2 * y), 2 * x ** 2 * np.cos(2 * y)]]
    _close(np.array([[float(h[i][j]) for j in range(2)] for i in range(2)]), want)


def test_custom_vjp_second_order_from_fwd_and_bwd():
    x = np.array([0.5, -1.5, 2.0])
    _close(lagrad.hessian(lambda x: lagrad.sum(cube(x) * x))(x), np.diag(12 * x ** 2))
    assert lagrad.grad(lagrad.grad(lambda x: cube(x)))(1.5) == pytest.approx(9.0, rel=RTOL)
    w = np.array([2.0, 0.5, 1.0])
    f = lambda x: lagrad.sum(weighted_exp(x, w) ** 2)  # noqa: E731
    _close(lagrad.hessian(f)(x), np.diag(4 * w ** 2 * np.exp(2 * x)))


def test_custom_rules_in_larger_programs_match_finite_differences():
    def f(x):
        return lagrad.sum(softplus(x * x[::-1]) * cube(lagrad.sin(x))) + scaled_sin(x[0], x[2])

    x = np.array([0.3, -0.8, 1.1])
    h = lagrad.hessian(f)(x)
    _close(h, h.T)
    _close(h, _fd_hessian(f, x), rtol=1e-7)


@lagrad.custom_jvp
def reciprocal(z):
    return 1.0 / z


@reciprocal.defjvp
def _reciprocal_jvp(primals, tangents):
    (z,), (t,) = primals, tangents
    return reciprocal(z), -t / (z * z)


def test_custom_rule_inside_a_fixed_point():
    """sqrt(a) by Newton's map z = (z + a / z) / 2 with 1/z a custom rule."""
    def sqrt(a):
        return lagrad.fixed_point(lambda z, a: 0.5 * (z + a * reciprocal(z)), 1.0, a)

    for a in (0.5, 4.0):
        assert lagrad.hessian(sqrt)(a) == pytest.approx(-0.25 * a ** -1.5, rel=RTOL)


@lagrad.custom_jvp
def digamma(x):
    return scipy.special.digamma(x)


@digamma.defjvp
def _digamma_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return digamma(x), t * scipy.special.polygamma(1, x)


@lagrad.custom_jvp
def gammaln(x):
    return scipy.special.gammaln(x)


@gammaln.defjvp
def _gammaln_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return gammaln(x), t * digamma(x)  # a traced call: digamma's own rule differentiates it


@lagrad.custom_jvp
def i0_opaque(x):
    return scipy.special.i0(x)  # (lagrad records gammaln and digamma itself; not i0 and i1)


@i0_opaque.defjvp
def _i0_opaque_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return i0_opaque(x), t * scipy.special.i1(x)  # numpy lagrad cannot trace


def test_black_box_inside_a_rule_is_a_custom_rule_of_its_own():
    x = np.array([0.7, 2.5, 6.0])
    h = lagrad.hessian(lambda x: lagrad.sum(gammaln(x)))(x)
    _close(h, np.diag(scipy.special.polygamma(1, x)))


def test_untraceable_rule_raises_missing_derivative_saying_what_to_do():
    x = np.array([0.7, 2.5])
    # first order is fine: the rule runs on numbers
    _close(lagrad.grad(lambda x: lagrad.sum(i0_opaque(x)))(x), scipy.special.i1(x))
    with pytest.raises(lagrad.MissingDerivativeError,
                       match="custom_jvp function 'i0_opaque'.*could not trace.*custom_jvp"):
        lagrad.hessian(lambda x: lagrad.sum(i0_opaque(x)))(x)

    @lagrad.custom_vjp
    def opaque(x):
        return scipy.special.i0(x)

    opaque.defvjp(lambda x: (scipy.special.i0(x), x),
                  lambda x, g: (g * scipy.special.i1(x),))
    with pytest.raises(lagrad.MissingDerivativeError, match="'opaque'.*fwd and bwd"):
        lagrad.hvp(lambda x: lagrad.sum(opaque(x)), (x,), (np.ones(2),))


def test_third_derivatives_say_nesting_goes_to_depth_two():
    f = lambda x: lagrad.sin(x) * x ** 3  # noqa: E731
    with pytest.raises(lagrad.MissingDerivativeError, match="depth 2"):
        lagrad.grad(lagrad.grad(lagrad.grad(f)))(0.3)
    with pytest.raises(lagrad.MissingDerivativeError, match="depth 2"):
        lagrad.hessian(lambda x: lagrad.grad(f)(x) * x)(0.3)
