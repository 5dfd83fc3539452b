"""Custom rules (custom_vjp, custom_jvp, stop_gradient) and lagrad.linalg.

References are independent of the code under test: closed forms (digamma,
the RK4 step of a linear ODE as a matrix polynomial, A^-T c and -A^-T c x^T,
the implicit function theorem for fixed points), central finite differences
of plain numpy, and numpy's own linear algebra.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.special as sc

import lagrad
from lagrad.ir import linalg as L

H = 1e-6


def _fd_jacobian(f, x: np.ndarray) -> np.ndarray:
    """Central differences of a plain numpy function, (out.size, x.size)."""
    x = np.asarray(x, dtype=float)
    cols = []
    for k in range(x.size):
        e = np.zeros(x.size)
        e[k] = H
        plus = np.asarray(f(x + e.reshape(x.shape)), dtype=float)
        minus = np.asarray(f(x - e.reshape(x.shape)), dtype=float)
        cols.append(((plus - minus) / (2 * H)).ravel())
    return np.array(cols).T


# ------------------------------------------------------------ custom rules
# Module level, so that programs using them pickle.

@lagrad.custom_vjp
def gammaln(x):
    return sc.gammaln(x)


def gammaln_fwd(x):
    return sc.gammaln(x), x


def gammaln_bwd(x, g):
    return (g * sc.digamma(x),)


gammaln.defvjp(gammaln_fwd, gammaln_bwd)

M = np.array([[-0.5, 1.0, 0.0], [-1.0, -0.2, 0.3], [0.1, 0.0, -0.8]])


def rk4(y, h):
    """One RK4 step of y' = M y, in plain numpy (a black box to lagrad)."""
    k1 = M @ y
    k2 = M @ (y + h / 2 * k1)
    k3 = M @ (y + h / 2 * k2)
    k4 = M @ (y + h * k3)
    return y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


step = lagrad.custom_vjp(rk4)


def rk4_fwd(y, h):
    return rk4(y, h), (y, h)


def rk4_bwd(res, g):
    # reverse of the stages: y1 = y + h/6 (k1 + 2 k2 + 2 k3 + k4), k_i = M u_i
    y, h = res
    k1 = M @ y
    k2 = M @ (y + h / 2 * k1)
    k3 = M @ (y + h / 2 * k2)
    k4 = M @ (y + h * k3)
    gk4 = h / 6 * g
    gu4 = M.T @ gk4
    gk3 = h / 3 * g + h * gu4
    gu3 = M.T @ gk3
    gk2 = h / 3 * g + h / 2 * gu3
    gu2 = M.T @ gk2
    gk1 = h / 6 * g + h / 2 * gu2
    gu1 = M.T @ gk1
    gy = g + gu4 + gu3 + gu2 + gu1
    gh = (g @ (k1 + 2 * k2 + 2 * k3 + k4) / 6 + gu2 @ k1 / 2 + gu3 @ k2 / 2 + gu4 @ k3)
    return gy, gh


step.defvjp(rk4_fwd, rk4_bwd)


@lagrad.custom_jvp
def sin_times(x, y):
    return np.sin(x) * y


@sin_times.defjvp
def sin_times_jvp(primals, tangents):
    (x, y), (tx, ty) = primals, tangents
    return sin_times(x, y), np.cos(x) * tx * y + np.sin(x) * ty


def test_custom_vjp_gives_the_digamma_gradient():
    x = np.array([0.5, 2.0, 3.5])
    g = lagrad.grad(lambda x: lagrad.sum(gammaln(x) * x))(x)
    assert np.allclose(g, sc.digamma(x) * x + sc.gammaln(x), rtol=1e-13)
    assert lagrad.check_grad(lambda x: lagrad.sum(gammaln(x) ** 2), x) < 1e-6


def test_check_grad_catches_a_wrong_bwd():
    wrong = lagrad.custom_vjp(sc.gammaln)
    wrong.defvjp(gammaln_fwd, lambda x, g: (2 * g * sc.digamma(x),))
    with pytest.raises(lagrad.GradientCheckError):
        lagrad.check_grad(lambda x: lagrad.sum(wrong(x)), np.array([0.5, 2.0]))


def test_rk4_step_against_the_matrix_polynomial():
    y, h = np.array([1.0, -0.5, 0.25]), 0.3
    hm = h * M
    poly = np.eye(3) + hm + hm @ hm / 2 + hm @ hm @ hm / 6 + hm @ hm @ hm @ hm / 24
    for mode in ("reverse", "forward"):
        jac = lagrad.jacobian(lambda y: step(y, h), mode=mode)(y)
        assert np.allclose(jac, poly, rtol=1e-13, atol=1e-15)
    dh = lagrad.jacobian(lambda h: step(y, h))(h)
    assert np.allclose(dh, _fd_jacobian(lambda h: rk4(y, h), np.array(h)).ravel(), rtol=1e-7)
    # two steps with h traced too, through check_grad
    assert lagrad.check_grad(lambda y, h: lagrad.sum(step(step(y, h), h) ** 2), y, h) < 1e-6


def test_custom_jvp_reverse_is_derived_and_exact():
    x, y = np.array([0.3, -1.2, 2.0]), np.array([1.5, 0.5, -2.0])
    gx, gy = lagrad.grad(lambda x, y: lagrad.sum(sin_times(x, y)), argnums=(0, 1))(x, y)
    assert np.allclose(gx, np.cos(x) * y, rtol=1e-14) and np.allclose(gy, np.sin(x), rtol=1e-14)
    rev = lagrad.jacobian(lambda x: sin_times(x, y), mode="reverse")(x)
    fwd = lagrad.jacobian(lambda x: sin_times(x, y), mode="forward")(x)
    assert np.allclose(rev, fwd, rtol=1e-14)
    assert np.allclose(rev, _fd_jacobian(lambda x: np.sin(x) * y, x), rtol=1e-7)
    assert lagrad.check_grad(lambda x, y: lagrad.sum(sin_times(x, y) ** 2), x, y) < 1e-6


@pytest.mark.parametrize("method", ["newton", "fixed_point", None])
def test_custom_rules_inside_a_cyclic_block(method):
    # z = 0.3 gammaln(z + 2) + a: dz/da = 1 / (1 - 0.3 digamma(z + 2))
    def f(a):
        return lagrad.fixed_point(lambda z, a: 0.3 * gammaln(z + 2.0) + a, 0.0, a,
                                  method=method)
    a = 0.7
    z = float(f(a))
    assert abs(z - 0.3 * sc.gammaln(z + 2.0) - a) < 1e-10
    assert abs(float(lagrad.grad(f)(a)) - 1 / (1 - 0.3 * sc.digamma(z + 2.0))) < 1e-10
    # the same with a custom JVP rule: z = 0.4 sin(z) * b + a, dz/da = 1 / (1 - 0.4 b cos z)
    b = np.array([1.0, 0.5])

    def g(a):
        return lagrad.fixed_point(lambda z, a: 0.4 * sin_times(z, b) + a, np.zeros(2), a,
                                  method=method)
    av = np.array([0.2, -0.4])
    zv = np.asarray(g(av))
    assert np.allclose(lagrad.jacobian(g)(av), np.diag(1 / (1 - 0.4 * b * np.cos(zv))),
                       rtol=1e-10)


def test_fwd_and_bwd_run_once_per_sweep():
    calls = {"fwd": 0, "bwd": 0}

    def fwd(x, y):
        calls["fwd"] += 1
        return x * y, (x, y)

    def bwd(res, g):
        calls["bwd"] += 1
        return g * res[1], g * res[0]

    prod = lagrad.custom_vjp(lambda x, y: x * y)
    prod.defvjp(fwd, bwd)
    gx, gy = lagrad.grad(lambda x, y: lagrad.sum(prod(x, y)), argnums=(0, 1))(
        np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    assert np.array_equal(gx, [3.0, 4.0]) and np.array_equal(gy, [1.0, 2.0])
    assert calls == {"fwd": 1, "bwd": 1}


def test_custom_rule_errors_name_the_problem():
    bare = lagrad.custom_vjp(np.sin)
    with pytest.raises(lagrad.ProgramError, match="has no rule.*defvjp"):
        lagrad.grad(lambda x: bare(x))(1.0)
    two = lagrad.custom_vjp(lambda x, y: x * y)
    two.defvjp(lambda x, y: (x * y, (x, y)), lambda res, g: (g * res[1],))
    with pytest.raises(lagrad.ProgramError, match="returned 1 cotangents for 2 arguments"):
        lagrad.grad(lambda x: two(x, 2.0))(1.0)
    shaped = lagrad.custom_vjp(lambda x: x * 2)
    shaped.defvjp(lambda x: (2 * x, None), lambda res, g: (np.ones(5),))
    with pytest.raises(lagrad.ProgramError, match="argument 0 has shape \\(5,\\)"):
        lagrad.grad(lambda x: lagrad.sum(shaped(x)))(np.ones(2))
    pairless = lagrad.custom_vjp(lambda x: x * 2)
    pairless.defvjp(lambda x: 2 * x, lambda res, g: (g,))
    with pytest.raises(lagrad.ProgramError, match="fwd must return a pair"):
        lagrad.grad(lambda x: pairless(x))(1.0)


def test_the_shape_probe_and_out_shape():
    def needs_positive(x):
        if np.any(x != 3.0):
            raise ValueError("only defined at 3")
        return x

    probed = lagrad.custom_jvp(needs_positive)
    probed.defjvp(lambda p, t: (p[0], t[0]))
    with pytest.raises(lagrad.ProgramError, match="arrays of ones.*out_shape"):
        lagrad.trace(lambda x: probed(x), np.full(2, 3.0))
    given = lagrad.custom_jvp(needs_positive, out_shape=lambda s: s)
    given.defjvp(lambda p, t: (p[0], t[0]))
    assert np.array_equal(lagrad.jacobian(lambda x: given(x))(np.full(2, 3.0)), np.eye(2))
    pair = lagrad.custom_jvp(lambda x: (x, x))
    pair.defjvp(lambda p, t: (p, t))
    with pytest.raises(lagrad.ProgramError, match="one array output"):
        lagrad.trace(lambda x: pair(x), np.ones(2))
    grows = lagrad.custom_jvp(lambda x: np.ones(3) if x.shape == (2,) and x[0] != 1 else x)
    grows.defjvp(lambda p, t: (p[0], t[0]))
    with pytest.raises(lagrad.ProgramError, match="must depend only on the argument shapes"):
        lagrad.grad(lambda x: lagrad.sum(grows(x)))(np.array([2.0, 2.0]))


def test_on_numbers_the_function_is_called():
    assert gammaln(3.0) == sc.gammaln(3.0)
    assert np.array_equal(step(np.ones(3), 0.1), rk4(np.ones(3), 0.1))


def test_programs_with_custom_rules_pickle():
    program = lagrad.trace(lambda y, h: lagrad.sum(step(y, h) * gammaln(y + 1.0)),
                           np.ones(3), 0.1)
    again = pickle.loads(pickle.dumps(program))
    y = np.array([0.5, 1.0, 1.5])
    assert np.allclose(again.solve(y, 0.2).grad()[0], program.solve(y, 0.2).grad()[0],
                       rtol=1e-15)


def test_stop_gradient():
    assert float(lagrad.grad(lambda x: x * lagrad.stop_gradient(x))(3.0)) == 3.0
    # scalar equations of one level run as a Batch: the zero derivative holds there too
    def f(a, b, c, d):
        return sum(v * lagrad.stop_gradient(v ** 2) for v in (a, b, c, d))
    grads = lagrad.grad(f, argnums=(0, 1, 2, 3))(1.0, 2.0, 3.0, 4.0)
    assert np.allclose(grads, [1.0, 4.0, 9.0, 16.0])
    _, tangent = lagrad.jvp(lambda x: lagrad.stop_gradient(x) * x, (np.ones(2),),
                            (np.array([1.0, 2.0]),))
    assert np.array_equal(tangent, [1.0, 2.0])


# -------------------------------------------------------------- linalg

@pytest.fixture
def system(rng):
    n = 5
    A = rng.normal(size=(n, n)) + n * np.eye(n)
    return A, rng.normal(size=n), rng.normal(size=n)


def test_solve_gradients_are_the_closed_forms(system):
    A, b, c = system
    gA, gb = lagrad.grad(lambda A, b: lagrad.linalg.solve(A, b) @ c, argnums=(0, 1))(A, b)
    x, lam = np.linalg.solve(A, b), np.linalg.solve(A.T, c)
    assert np.allclose(gb, lam, rtol=1e-12)  # dL/db = A^-T c
    assert np.allclose(gA, -np.outer(lam, x), rtol=1e-12)  # dL/dA = -A^-T c x^T


def test_solve_with_a_matrix_right_hand_side(system, rng):
    A, _, _ = system
    B, C = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    gA, gB = lagrad.grad(lambda A, B: lagrad.sum(np.linalg.solve(A, B) * C),
                         argnums=(0, 1))(A, B)
    X, Lam = np.linalg.solve(A, B), np.linalg.solve(A.T, C)
    assert np.allclose(gB, Lam, rtol=1e-12) and np.allclose(gA, -Lam @ X.T, rtol=1e-12)


def _spd(A):
    return A @ A.T + np.eye(len(A))


LINALG_FUNCTIONS = {
    "solve": (lambda A, b: np.sin(lagrad.linalg.solve(A, b)), lambda A, b: np.sin(
        np.linalg.solve(A, b))),
    "inv": (lambda A, b: lagrad.linalg.inv(A) @ b, lambda A, b: np.linalg.inv(A) @ b),
    "det": (lambda A, b: lagrad.linalg.det(A) * b, lambda A, b: np.linalg.det(A) * b),
    "slogdet": (lambda A, b: lagrad.linalg.slogdet(A)[1] * b,
                lambda A, b: np.linalg.slogdet(A)[1] * b),
    "cholesky": (lambda A, b: lagrad.linalg.cholesky(_spd(A)) @ b,
                 lambda A, b: np.linalg.cholesky(_spd(A)) @ b),
    "svdvals": (lambda A, b: lagrad.linalg.svdvals(A) * b, lambda A, b: np.linalg.svdvals(A) * b),
    "pinv": (lambda A, b: lagrad.linalg.pinv(A) @ b, lambda A, b: np.linalg.pinv(A) @ b),
    "qr": (lambda A, b: lagrad.linalg.qr(A)[0] @ b + lagrad.linalg.qr(A)[1] @ b,
           lambda A, b: np.linalg.qr(A)[0] @ b + np.linalg.qr(A)[1] @ b),
    "eigh": (lambda A, b: lagrad.linalg.eigh(A)[1] ** 2 @ b,
             lambda A, b: np.linalg.eigh(A)[1] ** 2 @ b),
    "eigvalsh": (lambda A, b: lagrad.linalg.eigvalsh(A) * b,
                 lambda A, b: np.linalg.eigvalsh(A) * b),
    "solve_triangular": (lambda A, b: lagrad.linalg.solve_triangular(A, b, lower=True),
                         lambda A, b: sla.solve_triangular(A, b, lower=True)),
    "expm": (lambda A, b: lagrad.linalg.expm(0.3 * A) @ b,
             lambda A, b: sla.expm(0.3 * A) @ b),
    "spsolve": (lambda A, b: lagrad.linalg.spsolve(
        (A.ravel(), np.repeat(np.arange(5), 5), np.tile(np.arange(5), 5)), b, shape=(5, 5)),
        lambda A, b: np.linalg.solve(A, b)),
}


@pytest.mark.parametrize("name", sorted(LINALG_FUNCTIONS))
def test_linalg_against_finite_differences_and_modes(name, system):
    A, b, _ = system
    ours, reference = LINALG_FUNCTIONS[name]
    for argnum, x in enumerate((A, b)):
        def ref(v, argnum=argnum):
            return reference(v, b) if argnum == 0 else reference(A, v)
        fd = _fd_jacobian(ref, x)
        for mode in ("reverse", "forward"):
            jac = lagrad.jacobian(ours, argnums=argnum, mode=mode)(A, b)
            assert np.allclose(jac.reshape(fd.shape), fd, rtol=1e-6, atol=1e-8), (argnum, mode)
    assert lagrad.check_grad(lambda A, b: lagrad.sum(ours(A, b) ** 2), A, b) < 1e-6


@pytest.mark.parametrize("prim", L.LINALG, ids=lambda p: p.name)
def test_local_jacobian_agrees_with_pullback_and_pushforward(prim, system, rng):
    """The three rules give one matrix (Newton and direct block solvers use
    local_jacobian, the sweeps the other two)."""
    A, b, _ = system
    if prim is L.spsolve_p:
        pattern = L.CSRPattern.from_coo(np.repeat(np.arange(5), 5), np.tile(np.arange(5), 5),
                                        (5, 5))
        args, params = (A.ravel(), rng.normal(size=(5, 2))), {"pattern": pattern}
    elif prim is L.solve_p:
        args, params = (A, rng.normal(size=(5, 2))), {}
    elif prim is L.solve_triangular_p:
        args, params = (A, rng.normal(size=(5, 2))), {"lower": True, "trans": True,
                                                      "unit": False}
    else:
        args, params = ((_spd(A),) if prim is L.cholesky_p else (A,)), {}
    ans = prim.value(*args, **params)
    for k, arg in enumerate(args):
        jac = prim.local_jacobian(k, ans, args, params).toarray()
        rows = np.array([np.ravel(prim.pullback(k, e.reshape(np.shape(ans)), ans, args, params))
                         for e in np.eye(np.size(ans))])
        ts = [None] * len(args)
        cols = []
        for e in np.eye(np.size(arg)):
            ts[k] = e.reshape(np.shape(arg))
            cols.append(np.ravel(prim.pushforward(ts, ans, args, params)))
        assert np.allclose(jac, rows, atol=1e-12) and np.allclose(jac, np.array(cols).T,
                                                                  atol=1e-12)


def test_spsolve_with_a_constant_scipy_matrix(rng):
    A = sp.random(30, 30, density=0.1, random_state=1, format="csr") + 4 * sp.identity(30)
    c = rng.normal(size=30)
    gb = lagrad.grad(lambda b: lagrad.linalg.spsolve(A, b) @ c)(np.ones(30))
    assert np.allclose(gb, np.linalg.solve(A.toarray().T, c), rtol=1e-12)


def test_spsolve_values_gradient_is_the_closed_form(rng):
    # A = coo((d, (row, col))) with shuffled, repeated entries: dL/dd_e = -lam[row_e] x[col_e]
    n = 6
    row = np.concatenate([np.arange(n), rng.integers(0, n, 10), [2]])
    col = np.concatenate([np.arange(n), rng.integers(0, n, 10), [2]])
    order = rng.permutation(row.size)
    row, col = row[order], col[order]
    d = np.where(row == col, 5.0, 0.0) + rng.normal(size=row.size)
    b, c = rng.normal(size=n), rng.normal(size=n)
    gd = lagrad.grad(lambda d: lagrad.linalg.spsolve((d, row, col), b, shape=(n, n)) @ c)(d)
    A = sp.coo_matrix((d, (row, col)), shape=(n, n)).toarray()
    x, lam = np.linalg.solve(A, b), np.linalg.solve(A.T, c)
    assert np.allclose(gd, -lam[row] * x[col], rtol=1e-12)


def test_one_factorization_and_one_transposed_solve(system, monkeypatch):
    A, b, c = system
    L.factor_memo.clear()
    factor_calls, solve_calls = [], []
    lu_factor, lu_solve = sla.lu_factor, sla.lu_solve
    monkeypatch.setattr(sla, "lu_factor", lambda *a, **k: factor_calls.append(1) or
                        lu_factor(*a, **k))
    monkeypatch.setattr(sla, "lu_solve", lambda *a, **k: solve_calls.append(k.get("trans", 0))
                        or lu_solve(*a, **k))
    A2 = A + 0.125  # values no test factorized before
    lagrad.grad(lambda A, b: lagrad.linalg.solve(A, b) @ c, argnums=(0, 1))(A2, b)
    assert len(factor_calls) == 1
    assert sorted(solve_calls) == [0, 1]  # the forward solve and ONE transposed solve


def test_linalg_inside_a_cyclic_block(system):
    # z = A^-1 (b - 0.3 sin z), that is A z + 0.3 sin z = b: with D = diag(cos z),
    # lam = (A + 0.3 D)^-T c gives dL/db = lam and dL/dA = -lam z^T
    A, b, c = system

    def loss(A, b, method):
        z = lagrad.fixed_point(lambda z, A, b: lagrad.linalg.solve(A, b - 0.3 * lagrad.sin(z)),
                               np.zeros(len(b)), A, b, method=method)
        return z @ c

    for method in ("newton", "fixed_point"):
        gA, gb = lagrad.grad(loss, argnums=(0, 1))(A, b, method)
        z = np.zeros(len(b))
        for _ in range(200):
            z = np.linalg.solve(A, b - 0.3 * np.sin(z))
        lam = np.linalg.solve((A + 0.3 * np.diag(np.cos(z))).T, c)
        assert np.allclose(gb, lam, rtol=1e-9) and np.allclose(gA, -np.outer(lam, z), rtol=1e-9)


def test_np_linalg_routes_to_lagrad_linalg():
    program = lagrad.trace(lambda A, b: np.linalg.solve(A, b).sum() + np.linalg.det(A)
                           + np.linalg.slogdet(A)[1] + np.linalg.inv(A).sum()
                           + np.linalg.cholesky(A).sum(), np.eye(2), np.ones(2))
    names = {eq.primitive.name for eq in program.equations}
    assert {"solve", "det", "logabsdet", "sign_det", "cholesky"} <= names


def test_singular_matrix_raises_naming_the_equation():
    A = np.array([[1.0, 2.0], [2.0, 4.0]])
    with pytest.raises(lagrad.SingularSystemError, match="singular.*in equation `v2 = solve") \
            as info:
        lagrad.grad(lambda A, b: lagrad.linalg.solve(A, b).sum(), argnums=(0, 1))(A, np.ones(2))
    assert info.value.equation.startswith("v2 = solve(A, b)")
    sparse = (np.array([1.0, 2.0]), np.array([0, 0]), np.array([0, 1]))  # row 1 is empty
    with pytest.raises(lagrad.SingularSystemError, match="spsolve.*singular"):
        lagrad.grad(lambda b: lagrad.linalg.spsolve(sparse, b, shape=(2, 2)).sum())(np.ones(2))
    with pytest.raises(lagrad.SolveError, match="not positive definite"):
        lagrad.grad(lambda A: lagrad.linalg.cholesky(A).sum())(-np.eye(2))


def test_singular_matrix_inside_a_cyclic_block_names_the_equation():
    # A(z) = [[z0, 1], [1, z0]] starts singular at z = (1, 1)
    def f(a):
        def g(z, a):
            A = lagrad.stack([lagrad.stack([z[0], 1.0 + 0 * z[0]]),
                              lagrad.stack([1.0 + 0 * z[0], z[0]])])
            return 0.1 * lagrad.linalg.solve(A, a)
        return lagrad.fixed_point(g, np.ones(2), a).sum()
    with pytest.raises(lagrad.SingularSystemError, match="in equation `v\\d+ = solve"):
        lagrad.grad(f)(np.ones(2))


@pytest.mark.parametrize("call, match", [
    (lambda A, b: lagrad.linalg.solve(A[:, :1], b), "A 'v\\d+' has shape \\(2, 1\\)"),
    (lambda A, b: lagrad.linalg.solve(A, lagrad.concatenate([b, b])), "b 'v\\d+' has shape"),
    (lambda A, b: lagrad.linalg.det(b), "A 'b' has shape \\(2,\\)"),
    (lambda A, b: lagrad.linalg.spsolve((b, [0, 1], [0, 1]), b), "needs shape"),
    (lambda A, b: lagrad.linalg.spsolve((b, [0, 1], [0, 1]), b, shape=(2, 3)), "square"),
    (lambda A, b: lagrad.linalg.spsolve((b, [0, 2], [0, 1]), b, shape=(2, 2)), "out of range"),
    (lambda A, b: lagrad.linalg.spsolve(A, b), "give a scipy.sparse matrix"),
])
def test_wrong_shapes_raise_program_error(call, match):
    with pytest.raises(lagrad.ProgramError, match=match):
        lagrad.trace(lambda A, b: lagrad.sum(call(A, b)), np.eye(2), np.ones(2))


def _logdet_loss(A):
    return lagrad.linalg.slogdet(A)[1]


def test_programs_with_linalg_pickle(system):
    A, _, _ = system
    program = lagrad.trace(_logdet_loss, A)
    again = pickle.loads(pickle.dumps(program))
    assert np.allclose(again.solve(A).grad(), np.linalg.inv(A).T, rtol=1e-12)


def test_keyword_arguments_become_positions():
    scaled = lagrad.custom_vjp(lambda x, scale=2.0: scale * x)
    scaled.defvjp(lambda x, scale=2.0: (scale * x, (x, scale)),
                  lambda res, g: (res[1] * g, np.sum(g * res[0])))
    assert float(lagrad.grad(lambda x: scaled(x))(1.0)) == 2.0  # the default is an argument
    gx, gs = lagrad.grad(lambda x, s: scaled(x, scale=s), argnums=(0, 1))(1.5, 3.0)
    assert (float(gx), float(gs)) == (3.0, 1.5)
    with pytest.raises(lagrad.ProgramError, match="unexpected keyword"):
        lagrad.grad(lambda x: scaled(x, shift=1.0))(1.0)


def test_dir_of_linalg_lists_its_public_names_only():
    names = dir(lagrad.linalg)
    assert names == sorted(lagrad.linalg.__all__)
    assert {"solve", "norm", "eigvalsh", "eigh", "svdvals", "pinv", "qr"} <= set(names)
    assert not {"np", "ops", "math", "Any"} & set(names)
    assert all(hasattr(lagrad.linalg, n) for n in names)


def test_vmap_of_dense_linalg_is_each_instances(rng):
    """solve, inv, det, slogdet and cholesky record one equation per instance
    under vmap; the batched value and gradient are each instance's."""
    mats = rng.normal(size=(4, 3, 3)) + 3.0 * np.eye(3)
    rhs = rng.normal(size=3)

    def f(a):
        return (lagrad.sum(lagrad.linalg.solve(a, rhs) ** 2) + lagrad.linalg.det(a)
                + lagrad.linalg.slogdet(a)[1] + lagrad.sum(lagrad.linalg.inv(a))
                + lagrad.sum(lagrad.linalg.cholesky(a @ a.T)))
    np.testing.assert_allclose(lagrad.vmap(f)(mats), [f(a) for a in mats], rtol=1e-14)
    np.testing.assert_allclose(lagrad.vmap(lagrad.grad(f))(mats),
                               np.stack([lagrad.grad(f)(a) for a in mats]), rtol=1e-13,
                               atol=1e-14)
    many = rng.normal(size=(5, 3))
    np.testing.assert_allclose(lagrad.vmap(lambda b: lagrad.linalg.solve(mats[0], b))(many),
                               np.linalg.solve(mats[0], many.T).T, rtol=1e-13)

