"""numpy coverage on traced values (issue 14, item 4).

Two independent references for every new operation:

* central finite differences of the numpy value, and
* autograd's Jacobian of the same function written with ``autograd.numpy``
  (autograd is a test-only dependency: a second AD library, written without
  lagrad's multiplier equations).

The primitives of :mod:`lagrad.ir.numpy_prims` are checked rule by rule
(pullback, pushforward and local Jacobian against finite differences, and the
dot-product identity between them), then the user-facing operations through
numpy dispatch and ``lagrad.<name>``, in reverse and forward mode. Then
comparisons as constant masks, ``np.where`` re-evaluated at new inputs,
``scipy.sparse @ traced`` and the errors of unsupported arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import autograd
import autograd.numpy as anp
import autograd.scipy.special as aspecial
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.special
from numpy_checks import fd_jacobian as _fd

import lagrad
from lagrad import ProgramError
from lagrad.ir import numpy_prims as N

RTOL, ATOL = 1e-6, 1e-8


def _rng(*salt: int) -> np.random.Generator:
    return np.random.default_rng([20250114, *salt])


# ------------------------------------------------- the primitives' rules

def _normals(*shapes: tuple[int, ...], **params: Any) -> Callable[..., Any]:
    return lambda rng: (tuple(rng.normal(size=s) for s in shapes), params)


def _spread(shape: tuple[int, ...], **params: Any) -> Callable[..., Any]:
    # distinct entries far apart: no ties for max/min within a finite-difference step
    def make(rng: np.random.Generator) -> Any:
        x = rng.permutation(math.prod(shape)).reshape(shape) * 0.1 + rng.uniform(0, 0.01, shape)
        return (x,), params
    return make


def _mask_case(sx: tuple[int, ...], sy: tuple[int, ...]) -> Callable[..., Any]:
    def make(rng: np.random.Generator) -> Any:
        x = rng.normal(size=sx)
        return (x, x + rng.choice([-0.5, 0.5], sy)), {}  # never within H of a tie
    return make


def _select_case(rng: np.random.Generator) -> Any:
    c = rng.choice([0.0, 1.0, -2.0], (2, 3))  # nonzero is true, as numpy reads it
    return (c, rng.normal(size=(2, 3)), rng.normal(size=(3,))), {}


UNARY = [_normals(()), _normals((4,)), _normals((2, 3))]
CASES: dict[str, list[Callable[..., Any]]] = {
    "square": UNARY, "expm1": UNARY, "arctan": UNARY, "sinh": UNARY, "cosh": UNARY,
    "log1p": [lambda rng, s=s: ((rng.uniform(-0.5, 2.0, s),), {}) for s in [(), (4,), (2, 3)]],
    "sign": [lambda rng: ((rng.choice([-1.0, 1.0], (5,)) * rng.uniform(0.1, 1, 5),), {})],
    "logaddexp": [_normals((3,), (3,)), _normals((2, 3), (3,)), _normals((), (2, 1))],
    "arctan2": [_normals((3,), (3,)), _normals((2, 3), (3,)), _normals((), (2, 1))],
    "hypot": [_normals((3,), (3,)), _normals((2, 3), (3,)), _normals((), (2, 1))],
    "greater": [_mask_case((3,), (3,)), _mask_case((2, 3), (3,))],
    "greater_equal": [_mask_case((3,), (3,))], "less": [_mask_case((2, 3), (2, 3))],
    "less_equal": [_mask_case((3,), ())], "equal": [_mask_case((3,), (3,))],
    "not_equal": [_mask_case((3,), (3,))],
    "select": [_select_case],
    "max": [_spread((2, 3, 4), axis=(0, 2), keepdims=False), _spread((5,), axis=None,
            keepdims=True), _spread((2, 3), axis=(1,), keepdims=True)],
    "min": [_spread((2, 3, 4), axis=(1,), keepdims=False), _spread((3, 2), axis=None,
            keepdims=False)],
    "prod": [_normals((2, 3), axis=(1,), keepdims=True), _normals((4,), axis=None,
             keepdims=False), _normals((2, 3, 2), axis=(0, 2), keepdims=False),
             _normals((), axis=None, keepdims=False)],
    "cumsum": [_normals((4,), axis=0), _normals((2, 3, 2), axis=1), _normals((3, 2), axis=0)],
    "sort": [_spread((5,), axis=0), _spread((2, 3, 4), axis=1), _spread((3, 4), axis=0)],
    "cumprod": [_normals((4,), axis=0), _normals((2, 3, 2), axis=1), _normals((3, 2), axis=0),
                lambda rng: ((np.array([1.5, 0.0, -2.0, 0.0, 3.0]),), {"axis": 0})],
    "einsum": [_normals((2, 3), (3, 4), subscripts="ij,jk->ik"),
               _normals((2, 3), (3, 4), subscripts="ij,jk->k"),
               _normals((2, 3), (2, 3), subscripts="ij,ij->"),
               _normals((3,), (4,), subscripts="i,j->ij"),
               _normals((2, 3, 4), (4, 3), subscripts="bij,jk->bki"),
               _normals((2, 3), subscripts="ij->ji"),
               _normals((2,), (2, 3), (3,), subscripts="i,ij,j->")],
    "batched_matmul": [_normals((2, 3, 4), (2, 4, 2)), _normals((2, 1, 3, 4), (3, 4, 2)),
                       _normals((4,), (3, 4, 2)), _normals((2, 3, 4), (4,)),
                       _normals((2, 3, 4), (4, 5))],
}
PRIMS = N.ELEMENTWISE + N.STRUCTURAL
BY_NAME = {p.name: p for p in PRIMS}
PARAMS = [pytest.param(n, i, id=f"{n}-{i}") for n in sorted(CASES) for i in range(len(CASES[n]))]


def test_every_new_primitive_has_cases() -> None:
    assert set(CASES) == set(BY_NAME)
    assert all(p.elementwise for p in N.ELEMENTWISE)
    assert not any(p.elementwise for p in N.STRUCTURAL)


@pytest.mark.parametrize(("name", "i"), PARAMS)
def test_primitive_rules_match_finite_differences(name: str, i: int) -> None:
    prim = BY_NAME[name]
    args, params = CASES[name][i](_rng(i, sum(map(ord, name))))
    ans = np.asarray(prim.value(*args, **params), dtype=float)
    assert tuple(prim.shape(*(np.shape(a) for a in args), **params)) == ans.shape
    rng = _rng(99)
    for k, a in enumerate(args):
        fd = _fd(lambda *xs: prim.value(*xs, **params), args, k)
        vjp = np.array([np.ravel(prim.pullback(k, np.eye(ans.size)[p].reshape(ans.shape), ans,
                                               args, params)) for p in range(ans.size)])
        jvp = []
        for q in range(np.size(a)):
            ts: list[Any] = [None] * len(args)
            ts[k] = np.eye(np.size(a))[q].reshape(np.shape(a))
            jvp.append(np.ravel(prim.pushforward(ts, ans, args, params)))
        jac = prim.local_jacobian(k, ans, args, params)
        assert sp.issparse(jac) and jac.shape == (ans.size, np.size(a))
        for got, what in ((vjp.reshape(fd.shape), "vjp"), (np.array(jvp).T.reshape(fd.shape),
                                                            "jvp"), (jac.toarray(), "jacobian")):
            np.testing.assert_allclose(got, fd, rtol=RTOL, atol=ATOL, err_msg=f"{name} {what}")
        g, t = rng.normal(size=ans.shape), rng.normal(size=np.shape(a))
        ts = [None] * len(args)
        ts[k] = t
        lhs = float(np.ravel(prim.pullback(k, g, ans, args, params)) @ np.ravel(t))
        rhs = float(np.ravel(g) @ np.ravel(prim.pushforward(ts, ans, args, params)))
        assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)


# ----------------------------------- the operations vs autograd and FD
# name -> (function of (xp, *args) for xp in (np, anp), args); lagrad runs the
# np version on traced values (numpy dispatch), autograd the anp version.

X = _rng(1).normal(size=(2, 3))
X3 = _rng(2).normal(size=(2, 3, 4))
V = _rng(3).uniform(0.2, 2.0, 4)
W = _rng(4).normal(size=(3, 4))
SPREAD = (_rng(5).permutation(12).reshape(3, 4) - 5.5) * 0.3


def _expit(xp: Any, x: Any) -> Any:
    return aspecial.expit(x) if xp is anp else scipy.special.expit(x)


OPS: dict[str, tuple[Callable[..., Any], tuple[np.ndarray, ...]]] = {
    "square": (lambda xp, x: xp.square(x), (X,)),
    "log1p": (lambda xp, x: xp.log1p(x), (V,)),
    "expm1": (lambda xp, x: xp.expm1(x), (X,)),
    "arctan": (lambda xp, x: xp.arctan(x), (X,)),
    "sinh": (lambda xp, x: xp.sinh(x), (X,)),
    "cosh": (lambda xp, x: xp.cosh(x), (X,)),
    "sign": (lambda xp, x: xp.sign(x) * x, (X,)),
    "logaddexp": (lambda xp, x, y: xp.logaddexp(x, y), (X, X[0] * 2)),
    "expit": (_expit, (X,)),
    "max": (lambda xp, x: xp.max(x), (SPREAD,)),
    "max_axis": (lambda xp, x: xp.max(x, axis=0), (SPREAD,)),
    "max_keepdims": (lambda xp, x: xp.max(x, axis=-1, keepdims=True), (SPREAD,)),
    "max_tuple_axis": (lambda xp, x: xp.max(x, axis=(0, 1)), (SPREAD,)),
    "min": (lambda xp, x: xp.min(x, axis=1), (SPREAD,)),
    "min_keepdims": (lambda xp, x: xp.min(x, axis=0, keepdims=True), (SPREAD,)),
    "prod": (lambda xp, x: xp.prod(x), (V,)),
    "prod_axis": (lambda xp, x: xp.prod(x, axis=1, keepdims=True), (X,)),
    "cumsum": (lambda xp, x: xp.cumsum(x), (X,)),
    "cumsum_axis": (lambda xp, x: xp.cumsum(x, axis=1), (X3,)),
    "cumsum_neg_axis": (lambda xp, x: xp.cumsum(x, axis=-3), (X3,)),
    "var": (lambda xp, x: xp.var(x), (X,)),
    "var_axis": (lambda xp, x: xp.var(x, axis=1, keepdims=True), (X,)),
    "var_ddof": (lambda xp, x: xp.var(x, axis=0, ddof=1), (X,)),
    "std": (lambda xp, x: xp.std(x), (X,)),
    "std_axis": (lambda xp, x: xp.std(x, axis=(0, 2)), (X3,)),
    "einsum_matmul": (lambda xp, a, b: xp.einsum("ij,jk->ik", a, b), (X, W)),
    "einsum_implicit": (lambda xp, a, b: xp.einsum("ij,jk", a, b), (X, W)),
    "einsum_inner": (lambda xp, a, b: xp.einsum("ij,ij->", a, b), (X, X * 2)),
    "einsum_batch": (lambda xp, a, b: xp.einsum("bij,jk->bik", a, b), (X3, W.T)),
    "einsum_lonely": (lambda xp, a, b: xp.einsum("ij,jk->k", a, b), (X, W)),
    "outer": (lambda xp, a, b: xp.outer(a, b), (V, X[0])),
    "tensordot": (lambda xp, a, b: xp.tensordot(a, b, axes=1), (X, W)),
    "tensordot_pairs": (lambda xp, a, b: xp.tensordot(a, b, axes=([1, 2], [0, 1])),
                        (X3, _rng(6).normal(size=(3, 4, 2)))),
    "tensordot_2": (lambda xp, a, b: xp.tensordot(a, b), (X3, _rng(7).normal(size=(3, 4)))),
    "clip": (lambda xp, x: xp.clip(x, -0.5, 0.7), (X + 0.013,)),
    "matmul_3d": (lambda xp, a, b: xp.matmul(a, b), (X3, _rng(8).normal(size=(2, 4, 3)))),
    "matmul_broadcast": (lambda xp, a, b: a @ b, (X3, _rng(9).normal(size=(4, 2)))),
    "matmul_4d": (lambda xp, a, b: a @ b, (_rng(10).normal(size=(2, 1, 2, 3)),
                                            _rng(11).normal(size=(3, 3, 2)))),
    "matmul_vec_stack": (lambda xp, a, b: a @ b, (V[:3], X3)),
    "where_mask": (lambda xp, x: xp.where(x > 0, x, 0.0), (X,)),
    "where_mask_two": (lambda xp, x, y: xp.where(x < y, x * y, y), (X, X[::-1] * 1.3)),
    "mask_times": (lambda xp, x: (x >= 0.1) * x + (x != 0.2) * x * x, (X,)),
}


def _autograd_jacobian(fn: Callable[..., Any], args: tuple[np.ndarray, ...], k: int) -> Any:
    out = np.asarray(fn(anp, *args))
    jac = autograd.jacobian(lambda *xs: fn(anp, *xs), k)(*args)
    return np.reshape(jac, (out.size, np.size(args[k])))


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_value_and_jacobian_match_numpy_autograd_and_fd(name: str) -> None:
    fn, args = OPS[name]
    expected = np.asarray(fn(np, *args))
    program = lagrad.trace(lambda *xs: fn(np, *xs), *args)
    np.testing.assert_allclose(program.solve(*args).output, expected, rtol=1e-13, atol=1e-14)
    for k in range(len(args)):
        fd = _fd(lambda *xs: fn(np, *xs), args, k)
        ag = _autograd_jacobian(fn, args, k)
        np.testing.assert_allclose(ag, fd, rtol=1e-5, atol=1e-7, err_msg="autograd vs FD")
        for mode in ("reverse", "forward"):
            jac = lagrad.jacobian(lambda *xs: fn(np, *xs), argnums=k, mode=mode)(*args)
            jac = np.reshape(jac, fd.shape)
            np.testing.assert_allclose(jac, ag, rtol=1e-10, atol=1e-12, err_msg=f"{mode}")
            np.testing.assert_allclose(jac, fd, rtol=RTOL, atol=ATOL, err_msg=f"{mode} vs FD")


LAGRAD_NAMES = ["square", "log1p", "expm1", "arctan", "sinh", "cosh", "sign", "logaddexp",
                "expit", "max", "min", "prod", "cumsum", "var", "std", "einsum", "outer",
                "tensordot", "clip"]


def test_the_lagrad_functions_compute_on_numbers_and_trace() -> None:
    x = _rng(12).normal(size=(2, 3))
    calls: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
        name: (getattr(lagrad, name), getattr(np, name)) for name in LAGRAD_NAMES
        if name not in ("expit", "logaddexp", "einsum", "outer", "tensordot", "clip", "log1p")}
    calls.update({
        "expit": (lagrad.expit, scipy.special.expit),
        "log1p": (lambda v: lagrad.log1p(v * v), lambda v: np.log1p(v * v)),
        "logaddexp": (lambda v: lagrad.logaddexp(v, 2.0 * v), lambda v: np.logaddexp(v, 2 * v)),
        "einsum": (lambda v: lagrad.einsum("ij->j", v), lambda v: np.einsum("ij->j", v)),
        "outer": (lambda v: lagrad.outer(v, v[0]), lambda v: np.outer(v, v[0])),
        "tensordot": (lambda v: lagrad.tensordot(v, v.T, axes=1),
                      lambda v: np.tensordot(v, v.T, axes=1)),
        "clip": (lambda v: lagrad.clip(v, -0.3, 0.3), lambda v: np.clip(v, -0.3, 0.3))})
    assert set(calls) == set(LAGRAD_NAMES)
    for name, (op, ref) in calls.items():
        assert name in lagrad.__all__
        on_numbers = op(x)
        assert not isinstance(on_numbers, lagrad.Variable)
        np.testing.assert_allclose(on_numbers, ref(x), rtol=1e-14, err_msg=name)
        p = lagrad.trace(op, x)
        assert p.equations, name
        np.testing.assert_allclose(p.solve(x).output, ref(x), rtol=1e-14, err_msg=name)


def test_variable_methods() -> None:
    x = SPREAD
    methods = {"max": {}, "min": {"axis": 1}, "prod": {"axis": 0, "keepdims": True},
               "cumsum": {"axis": 1}, "var": {"ddof": 1}, "std": {"axis": 0},
               "clip": {"min": -0.5, "max": 0.5}}
    for name, kwargs in methods.items():
        p = lagrad.trace(lambda v, name=name, kw=kwargs: getattr(v, name)(**kw), x)
        np.testing.assert_allclose(p.solve(x).output, getattr(x, name)(**kwargs), rtol=1e-13,
                                   err_msg=name)
    p = lagrad.trace(lambda v: np.ravel(v.ravel()), x)
    np.testing.assert_array_equal(p.solve(x).output, x.ravel())


# ------------------------------------- axis and keepdims edge cases

@pytest.mark.parametrize("op", ["max", "min", "prod", "var", "std", "sum", "mean"])
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2), (2, 0), ()])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_take_every_axis_form(op: str, axis: Any, keepdims: bool) -> None:
    x = _rng(13).permutation(24).reshape(2, 3, 4) * 0.25 - 2.0
    p = lagrad.trace(lambda v: getattr(np, op)(v, axis=axis, keepdims=keepdims), x)
    expected = getattr(np, op)(x, axis=axis, keepdims=keepdims)
    assert p.output_variable.shape == np.shape(expected)
    np.testing.assert_allclose(p.solve(x).output, expected, rtol=1e-13)


@pytest.mark.parametrize("op", ["max", "min", "prod", "sum"])
@pytest.mark.parametrize("axis", [None, 0, -1])
def test_reductions_of_a_0d_value(op: str, axis: Any) -> None:
    p = lagrad.trace(lambda v: getattr(lagrad, op)(v, axis=axis, keepdims=True), 1.5)
    assert p.output_variable.shape == ()
    assert float(lagrad.grad(lambda v: getattr(lagrad, op)(v, axis=axis))(1.5)) == 1.0


def test_max_min_ties_share_the_derivative_as_jax_and_autograd() -> None:
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    for ours, theirs in ((lagrad.max, anp.max), (lagrad.min, anp.min)):
        for axis in (None, 1):
            got = lagrad.grad(lambda v, f=ours, a=axis: f(v, axis=a).sum())(x)
            ref = autograd.grad(lambda v, f=theirs, a=axis: f(v, axis=a).sum())(x)
            np.testing.assert_allclose(got, ref, rtol=1e-15)
    np.testing.assert_allclose(lagrad.grad(lagrad.max)(x[0]), [0.0, 0.5, 0.5])
    np.testing.assert_allclose(lagrad.grad(lambda v: lagrad.min(v, axis=1).sum())(x),
                               [[1.0, 0, 0], [1 / 3, 1 / 3, 1 / 3]])


def test_prod_is_exact_at_zeros() -> None:
    # autograd's ans / x rule gives nan here; the product of the others does not
    x = np.array([[2.0, 0.0, 5.0], [0.0, 0.0, 3.0]])
    g = lagrad.grad(lambda v: lagrad.prod(v, axis=1).sum())(x)
    np.testing.assert_allclose(g, [[0.0, 10.0, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(g.ravel(), _fd(lambda v: np.prod(v, axis=1).sum(), (x,), 0)[0],
                               atol=1e-8)


def test_sign_has_derivative_zero_also_at_zero() -> None:
    g = lagrad.grad(lambda v: (np.sign(v) * 3.0).sum())(np.array([-1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(g, [0.0, 0.0, 0.0])


def test_matmul_2d_stays_on_the_blas_primitive() -> None:
    p = lagrad.trace(lambda a, b: a @ b, X, W)
    assert [eq.primitive.name for eq in p.equations] == ["matmul"]
    p = lagrad.trace(lambda a, b: a @ b, X3, W.T)
    assert [eq.primitive.name for eq in p.equations] == ["batched_matmul"]


# ---------------------------------------------- comparisons as masks

@pytest.mark.parametrize(("symbol", "ref"), [
    (lambda x, c: x > c, np.greater), (lambda x, c: x >= c, np.greater_equal),
    (lambda x, c: x < c, np.less), (lambda x, c: x <= c, np.less_equal),
    (lambda x, c: x == c, np.equal), (lambda x, c: x != c, np.not_equal),
    (lambda x, c: c < x, np.greater), (lambda x, c: np.asarray(c) == x, np.equal)])
def test_comparisons_record_masks_of_the_current_values(symbol: Any, ref: Any) -> None:
    x = np.array([-1.0, 0.0, 0.5, 2.0])
    c = np.array([0.0, 0.0, 1.0, 2.0])
    p = lagrad.trace(lambda v: symbol(v, c), x)
    (eq,) = p.equations
    assert eq.primitive in N.MASKS
    for at in (x, -x, x[::-1].copy()):
        np.testing.assert_array_equal(p.solve(at).output, ref(at, c).astype(float))
    # derivative zero, in both modes
    for mode in ("reverse", "forward"):
        np.testing.assert_array_equal(lagrad.jacobian(lambda v: symbol(v, c), mode=mode)(x),
                                      np.zeros((4, 4)))


def test_np_where_with_a_traced_condition_is_re_evaluated_at_new_inputs() -> None:
    def f(x: Any) -> Any:
        return np.where(x > 0, x * x, 0.0).sum()

    x = np.array([-1.0, 2.0, 3.0])
    program = lagrad.trace(f, x)
    for at in (x, -x, np.array([1.0, -2.0, 0.5])):
        sol = program.solve(at)
        assert float(sol.output) == pytest.approx(float(np.where(at > 0, at * at, 0).sum()))
        np.testing.assert_allclose(sol.grad(), np.where(at > 0, 2 * at, 0.0))
        np.testing.assert_allclose(sol.grad(), autograd.grad(
            lambda v: anp.where(v > 0, v * v, 0.0).sum())(at))


def test_where_derivative_flows_only_through_the_branches() -> None:
    x, y = np.array([1.0, -2.0, 3.0]), np.array([0.5, 0.5, 0.5])
    gx, gy = lagrad.grad(lambda a, b: lagrad.where(a > b, a * b, a + b).sum(),
                         argnums=(0, 1))(x, y)
    np.testing.assert_allclose(gx, [0.5, 1.0, 0.5])
    np.testing.assert_allclose(gy, [1.0, 1.0, 3.0])
    # a float condition counts as true where nonzero, as numpy reads it
    p = lagrad.trace(lambda c, a: lagrad.where(c, a, -a), x, y)
    np.testing.assert_array_equal(p.solve(np.array([0.0, 2.0, -1.0]), y).output,
                                  np.where([0.0, 2.0, -1.0], y, -y))


def test_masks_have_no_truth_value() -> None:
    with pytest.raises(ProgramError, match=r"truth value.*greater\(x, 0\.0\).*'x'"):
        lagrad.grad(lambda x: x if x > 0 else -x)(1.0)
    with pytest.raises(ProgramError, match="truth value"):
        lagrad.trace(lambda x: bool(x == x), 1.0)


def test_variables_hash_and_compare_by_identity_in_containers() -> None:
    p = lagrad.Program()
    a, b = p.input("a"), p.input("b")
    assert lagrad.Variable.__hash__ is object.__hash__
    table = {a: 1, b: 2}
    assert table[a] == 1 and table[b] == 2 and len({a, b, a}) == 2
    assert a in [a, b]  # identity first: no comparison recorded
    assert p.equations == []


# ------------------------------------------------- scipy.sparse @ traced

@pytest.mark.parametrize("kind", [sp.csr_matrix, sp.csr_array, sp.csc_array])
@pytest.mark.parametrize("shape", [(3,), (3, 2)])
def test_sparse_constant_times_traced_value(kind: Any, shape: tuple[int, ...]) -> None:
    dense = np.array([[1.0, 0.0, 2.0], [0.0, -1.0, 0.0], [3.0, 0.0, 0.5], [0.0, 0.0, 4.0]])
    A = kind(dense)
    x = _rng(14).normal(size=shape)
    w = _rng(15).normal(size=(4,) + shape[1:])

    def f(v: Any) -> Any:
        return ((A @ v) * w).sum()

    p = lagrad.trace(f, x)
    assert [eq.primitive.name for eq in p.equations][0] == "sparse_matmul"
    assert float(p.solve(x).output) == pytest.approx(float(((dense @ x) * w).sum()))
    np.testing.assert_allclose(lagrad.grad(f)(x), dense.T @ w, rtol=1e-14)
    # and on the right: x^T A^T
    g = lagrad.grad(lambda v: ((v.T @ A.T) * w.T).sum())(x)
    np.testing.assert_allclose(g, dense.T @ w, rtol=1e-14)


def test_arrays_still_cannot_be_made_from_traced_values() -> None:
    with pytest.raises(ProgramError, match="cannot be converted to a numpy array"):
        lagrad.trace(lambda v: np.asarray(v), np.ones(3))


# ------------------------------------------ unsupported arguments

@pytest.mark.parametrize(("call", "match"), [
    (lambda v: lagrad.max(v, axis=2), "max: axis 2 is out of bounds"),
    (lambda v: lagrad.min(v, axis=(0, 0)), "min: repeated axis"),
    (lambda v: lagrad.prod(v, axis="a"), "prod: axis 'a' is not an axis"),
    (lambda v: lagrad.cumsum(v, axis=3), "cumsum: axis 3 is out of bounds"),
    (lambda v: lagrad.var(v, ddof=6), "var: ddof=6"),
    (lambda v: lagrad.std(v, axis=1, ddof=3), "std: ddof=3"),
    (lambda v: lagrad.max(v[:, :0], axis=1), "max.*no entries"),
    (lambda v: lagrad.einsum("ii->i", v), "einsum.*label 'i' repeats on axes of sizes 2 and 3"),
    (lambda v: lagrad.einsum("...j->j", v), "einsum.*ellipsis"),
    (lambda v: lagrad.einsum("ij,jk->ik", v, v), "einsum.*axis 'j' has sizes 3 and 2"),
    (lambda v: lagrad.einsum("ijk->i", v), "einsum.*names 3 axes"),
    (lambda v: lagrad.einsum(v, [0, 1]), "einsum: give the subscripts as a string"),
    (lambda v: lagrad.tensordot(v, v, axes=1), "tensordot: shapes"),
    (lambda v: lagrad.tensordot(v, v, axes=3), "tensordot: axes=3"),
    (lambda v: np.max(v, initial=0.0), "numpy.max: unsupported arguments"),
    (lambda v: np.cumsum(v, dtype=np.float32), "numpy.cumsum: unsupported arguments"),
    (lambda v: v.reshape(2, 3, 1) @ np.ones((3, 1, 2)), "matmul.*do not broadcast"),
    (lambda v: np.square(v, out=np.empty((2, 3))), "square"),
])
def test_unsupported_arguments_raise_lagrad_errors_naming_the_op(call: Any, match: str) -> None:
    p = lagrad.Program()
    v = p.input("v", (2, 3))
    with pytest.raises(ProgramError, match=match):
        call(v)
