"""Every primitive's derivative rules against central finite differences.

For each primitive of ``lagrad.ir.primitives.ELEMENTWISE + STRUCTURAL`` and each
example case (random inputs in the primitive's domain, broadcasting shapes for
the binary elementwise ones) we check, for every argument k:

* ``pullback`` (VJP), ``pushforward`` (JVP) and ``local_jacobian`` each give
  the same matrix d ans / d arg_k as central finite differences of ``value``;
* the dot-product identity <J^T g, t> = <g, J t> between pullback and
  pushforward, and ``local_jacobian`` against both;
* ``local_jacobian`` is scipy.sparse, and diagonal (nnz <= size) for an
  elementwise primitive whose arguments all have the output's shape;
* the primitive, recorded in a program, differentiates end to end.

Then the composite operations (mean, softmax, stack, dot, logsumexp,
indexing, concatenate, transpose, reshape) through ``lagrad.jacobian`` and
``lagrad.grad`` against finite differences, and the tie conventions (JAX's).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import lagrad
from lagrad.ir import primitives as P

ALL = P.ELEMENTWISE + P.STRUCTURAL
BY_NAME = {p.name: p for p in ALL}

# Central differences with step H on arguments of size ~1 have error ~H^2 |f'''|
# plus rounding ~eps/H, both far below these tolerances.
H = 1e-6
RTOL, ATOL = 1e-6, 1e-8

Case = tuple[tuple[np.ndarray, ...], dict[str, Any]]
Maker = Callable[[np.random.Generator], Case]


# --------------------------------------------------------------- inputs

def _any(shape: tuple[int, ...]) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: rng.uniform(-1.5, 1.5, shape)


def _positive(shape: tuple[int, ...]) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: rng.uniform(0.5, 2.0, shape)


def _off_zero(shape: tuple[int, ...]) -> Callable[[np.random.Generator], np.ndarray]:
    # |x| in [0.3, 1.5], random sign: away from the kink of relu and abs
    def draw(rng: np.random.Generator) -> np.ndarray:
        return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.3, 1.5, shape)
    return draw


def _unary(draw: Callable[[tuple[int, ...]], Callable[..., np.ndarray]]) -> list[Maker]:
    return [(lambda rng, s=s: ((draw(s)(rng),), {})) for s in [(), (4,), (2, 3)]]


# Binary elementwise: equal shapes and the broadcasting cases of the issue.
BINARY_SHAPES = [((3,), (3,)), ((2, 3), (2, 3)), ((3,), (2, 3)), ((2, 3), (3,)),
                 ((2, 1), (1, 3)), ((), (4,)), ((4,), ()), ((), ())]


def _binary(draw_x: Callable[..., Any], draw_y: Callable[..., Any]) -> list[Maker]:
    return [(lambda rng, sx=sx, sy=sy: ((draw_x(sx)(rng), draw_y(sy)(rng)), {}))
            for sx, sy in BINARY_SHAPES]


def _max_min_cases() -> list[Maker]:
    cases = []
    for sx, sy in BINARY_SHAPES:
        def make(rng: np.random.Generator, sx: Any = sx, sy: Any = sy) -> Case:
            while True:  # redraw until no broadcast pair is near a tie
                x, y = rng.uniform(-1.0, 1.0, sx), rng.uniform(-1.0, 1.0, sy)
                if np.all(np.abs(np.subtract(x, y)) > 0.1):
                    return (x, y), {}
        cases.append(make)
    return cases


def _where_cases() -> list[Maker]:
    def make(sx: Any, sy: Any, sc: Any) -> Maker:
        def m(rng: np.random.Generator) -> Case:
            cond = rng.random(sc) < 0.5
            return (rng.normal(size=sx), rng.normal(size=sy)), {"condition": cond}
        return m
    return [make((2, 3), (2, 3), (2, 3)), make((3,), (2, 3), (2, 3)),
            make((2, 1), (1, 3), (3,)), make((), (4,), (4,)), make((3,), (3,), (2, 3))]


def _normal(arg_shape: tuple[int, ...], /, **params: Any) -> Maker:
    return lambda rng: ((rng.normal(size=arg_shape),), params)


def _normals(*shapes: tuple[int, ...], **params: Any) -> Maker:
    return lambda rng: (tuple(rng.normal(size=s) for s in shapes), params)


def _sparse_times(arg_shape: tuple[int, ...]) -> Maker:
    def make(rng: np.random.Generator) -> Case:
        matrix = sp.random(4, arg_shape[0], density=0.5, format="csr", random_state=rng)
        return (rng.normal(size=arg_shape),), {"matrix": matrix}
    return make


CASES: dict[str, list[Maker]] = {
    "identity": _unary(_any),
    "neg": _unary(_any),
    "exp": _unary(_any),
    "log": _unary(_positive),
    "sin": _unary(_any),
    "cos": _unary(_any),
    "tanh": _unary(_any),
    "sigmoid": _unary(_any),
    "relu": _unary(_off_zero),
    "sqrt": _unary(_positive),
    "abs": _unary(_off_zero),
    "add": _binary(_any, _any),
    "sub": _binary(_any, _any),
    "mul": _binary(_any, _any),
    "div": _binary(_any, _off_zero),
    "pow": _binary(_positive, _any),
    "maximum": _max_min_cases(),
    "minimum": _max_min_cases(),
    "where": _where_cases(),
    "weighted_sum": [lambda rng: ((rng.normal(size=(3,)), rng.normal(size=(3,)),
                                   rng.normal(size=())), {"weights": np.array([0.5, -2.0, 3.0])})],
    "reshape": [_normal((2, 3), shape=(3, 2)), _normal((6,), shape=(2, 1, 3)),
                _normal((), shape=(1,)), _normal((2, 3), shape=(6,))],
    "transpose": [_normal((2, 3), axes=(1, 0)), _normal((2, 3, 4), axes=(1, 2, 0)),
                  _normal((2, 3, 4), axes=(2, 0, 1))],
    "getitem": [
        _normal((5,), index=slice(1, 4)),
        _normal((4, 3), index=(slice(None, None, 2), slice(1, None))),
        _normal((5,), index=np.array([0, 3, 3, 1, 0])),             # repeated gather
        _normal((4, 3), index=(slice(None), np.array([2, 0, 2]))),
        _normal((4, 3), index=(np.array([0, 3, 3]), np.array([1, 1, 2]))),
        _normal((5,), index=np.array([True, False, True, True, False])),  # mask
        _normal((2, 3), index=np.array([[True, False, True], [False, False, True]])),
        _normal((5,), index=-1),                                    # negative
        _normal((4, 3), index=(-2, slice(None, None, -1))),
        _normal((5,), index=np.array([-1, -5, -1])),
        _normal((2, 3), index=(Ellipsis, None, 1)),
    ],
    "sum": [_normal((2, 3), axis=None, keepdims=False), _normal((2, 3), axis=(0,), keepdims=False),
            _normal((2, 3), axis=(1,), keepdims=True),
            _normal((2, 3, 4), axis=(0, 2), keepdims=False),
            _normal((2, 3, 4), axis=None, keepdims=True), _normal((), axis=None, keepdims=False),
            _normal((), axis=None, keepdims=True)],
    "logsumexp": [_normal((2, 3), axis=None, keepdims=False),
                  _normal((2, 3), axis=(0,), keepdims=False),
                  _normal((2, 3), axis=(1,), keepdims=True),
                  _normal((2, 3, 4), axis=(0, 2), keepdims=True),
                  _normal((5,), axis=(0,), keepdims=False),
                  _normal((), axis=None, keepdims=True), _normal((), axis=None, keepdims=False)],
    "concatenate": [_normals((2, 3), (2, 1), axis=1), _normals((2,), (3,), (1,), axis=0),
                    _normals((1, 2), (3, 2), axis=0), _normals((4,), axis=0)],
    "sparse_matmul": [_sparse_times((3,)), _sparse_times((3, 2)), _sparse_times((3, 1))],
    "matmul": [_normals((2, 3), (3, 4)), _normals((3,), (3, 4)), _normals((2, 3), (3,)),
               _normals((3,), (3,)), _normals((1, 1), (1, 5))],
}

PARAMS = [pytest.param(p.name, i, id=f"{p.name}-{i}")
          for p in ALL for i in range(len(CASES.get(p.name, [None])))]


def _case(name: str, i: int, seed: int = 0) -> tuple[P.Primitive, tuple[np.ndarray, ...],
                                                      dict[str, Any], np.ndarray]:
    prim = BY_NAME[name]
    assert name in CASES, f"primitive {name!r} has no test case: add one to CASES"
    rng = np.random.default_rng([seed, i, sum(map(ord, name))])
    args, params = CASES[name][i](rng)
    ans = np.asarray(prim.value(*args, **params), dtype=float)
    return prim, args, params, ans


def _fd_jacobian(prim: P.Primitive, args: tuple[np.ndarray, ...], params: dict[str, Any],
                 k: int) -> np.ndarray:
    """d value / d args[k], (ans.size, args[k].size), by central differences."""
    x = np.asarray(args[k], dtype=float)
    cols = []
    for q in range(x.size):
        e = np.zeros(x.size)
        e[q] = H
        e = e.reshape(x.shape)
        plus = list(args)
        minus = list(args)
        plus[k], minus[k] = x + e, x - e
        cols.append((np.ravel(prim.value(*plus, **params))
                     - np.ravel(prim.value(*minus, **params))) / (2 * H))
    return np.stack(cols, axis=1) if cols else np.zeros((0, 0))


def _unit(shape: tuple[int, ...], p: int) -> np.ndarray:
    e = np.zeros(math.prod(shape))
    e[p] = 1.0
    return e.reshape(shape)


# ---------------------------------------------------- registry is complete

def test_every_primitive_has_cases_and_is_listed_once() -> None:
    names = [p.name for p in ALL]
    assert len(names) == len(set(names))
    assert set(CASES) == set(names), "CASES and the primitive tuples disagree"
    assert all(p.elementwise for p in P.ELEMENTWISE)
    assert not any(p.elementwise for p in P.STRUCTURAL)


# ------------------------------------------------ derivative rules vs FD

@pytest.mark.parametrize(("name", "i"), PARAMS)
def test_value_has_declared_shape(name: str, i: int) -> None:
    prim, args, params, ans = _case(name, i)
    shape = prim.shape(*(np.shape(a) for a in args), **params)
    assert tuple(shape) == ans.shape
    assert np.all(np.isfinite(ans))


@pytest.mark.parametrize(("name", "i"), PARAMS)
def test_pullback_matches_finite_differences(name: str, i: int) -> None:
    prim, args, params, ans = _case(name, i)
    for k, a in enumerate(args):
        fd = _fd_jacobian(prim, args, params, k)
        # row p of J is the pullback of the unit cotangent e_p
        rows = []
        for p in range(ans.size):
            ct = prim.pullback(k, _unit(ans.shape, p), ans, args, params)
            assert np.shape(ct) == np.shape(a), f"{name}: cotangent of arg {k} has wrong shape"
            rows.append(np.ravel(ct))
        vjp = np.array(rows).reshape(ans.size, np.size(a))
        np.testing.assert_allclose(vjp, fd, rtol=RTOL, atol=ATOL, err_msg=f"{name} arg {k}")


@pytest.mark.parametrize(("name", "i"), PARAMS)
def test_pushforward_matches_finite_differences(name: str, i: int) -> None:
    prim, args, params, ans = _case(name, i)
    rng = np.random.default_rng(1)
    for k, a in enumerate(args):
        fd = _fd_jacobian(prim, args, params, k)
        cols = []
        for q in range(np.size(a)):
            ts: list[np.ndarray | None] = [None] * len(args)  # None: zero tangent
            ts[k] = _unit(np.shape(a), q)
            t_out = prim.pushforward(ts, ans, args, params)
            assert np.shape(t_out) == ans.shape
            cols.append(np.ravel(t_out))
        jvp = np.array(cols).T.reshape(ans.size, np.size(a))
        np.testing.assert_allclose(jvp, fd, rtol=RTOL, atol=ATOL, err_msg=f"{name} arg {k}")
    # all tangents at once: the JVP is linear in them, sum_k J_k t_k
    ts_all = [rng.normal(size=np.shape(a)) for a in args]
    expected = sum(_fd_jacobian(prim, args, params, k) @ np.ravel(t) for k, t in enumerate(ts_all))
    np.testing.assert_allclose(np.ravel(prim.pushforward(ts_all, ans, args, params)), expected,
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("name", "i"), PARAMS)
def test_local_jacobian_is_sparse_and_matches_finite_differences(name: str, i: int) -> None:
    prim, args, params, ans = _case(name, i)
    for k, a in enumerate(args):
        jac = prim.local_jacobian(k, ans, args, params)
        assert sp.issparse(jac), f"{name}: local_jacobian must be scipy.sparse"
        assert jac.shape == (ans.size, np.size(a))
        np.testing.assert_allclose(jac.toarray(), _fd_jacobian(prim, args, params, k),
                                   rtol=RTOL, atol=ATOL, err_msg=f"{name} arg {k}")
        if prim.elementwise:
            # one entry per output element at most: a diagonal or a broadcast
            # selection, never a dense block
            assert jac.nnz <= ans.size
            if np.shape(a) == ans.shape:
                dense = jac.toarray()
                assert np.count_nonzero(dense - np.diag(np.diag(dense))) == 0


@pytest.mark.parametrize(("name", "i"), PARAMS)
def test_local_entries_are_the_local_jacobian(name: str, i: int) -> None:
    """J's assembly reads each equation's entries (no sparse matrix per equation):
    they hold exactly local_jacobian's values, repeated positions adding up."""
    prim, args, params, ans = _case(name, i)
    for k, a in enumerate(args):
        rows, cols, vals = prim.local_entries(k, ans, args, params)
        assert len(rows) == len(cols) == len(vals)
        built = sp.csr_matrix((vals, (rows, cols)), shape=(ans.size, np.size(a))).toarray()
        np.testing.assert_array_equal(built, prim.local_jacobian(k, ans, args, params).toarray(),
                                      err_msg=f"{name} arg {k}")


@pytest.mark.parametrize(("sa", "sb"), [((3, 4), (4, 2)), ((4,), (4, 2)), ((3, 4), (4,)),
                                        ((4,), (4,))])
def test_matmul_entries_match_the_dense_jacobian_and_skip_zeros(sa: tuple[int, ...],
                                                                  sb: tuple[int, ...]) -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=sa), rng.normal(size=sb)
    a.flat[1] = b.flat[2] = 0.0  # a zero of the other factor is no entry
    ans = np.matmul(a, b)
    m, n = (sa[0] if len(sa) == 2 else 1), (sb[1] if len(sb) == 2 else 1)
    for k, x in enumerate((a, b)):
        rows, cols, vals = P.matmul.local_entries(k, ans, (a, b), {})
        # d out[i, j] / d a[i, p] = b[p, j] for each i; d out[i, j] / d b[p, j] = a[i, p] for each j
        expected = m * np.count_nonzero(b) if k == 0 else n * np.count_nonzero(a)
        assert vals.size == expected and np.all(vals != 0.0)
        built = sp.csr_matrix((vals, (rows, cols)), shape=(ans.size, x.size)).toarray()
        np.testing.assert_allclose(built, _fd_jacobian(P.matmul, (a, b), {}, k), rtol=RTOL,
                                   atol=ATOL)


@pytest.mark.parametrize(("name", "i"), PARAMS)
def test_vjp_jvp_and_local_jacobian_agree(name: str, i: int) -> None:
    prim, args, params, ans = _case(name, i)
    rng = np.random.default_rng(2)
    for k, a in enumerate(args):
        g = rng.normal(size=ans.shape)
        t = rng.normal(size=np.shape(a))
        ts: list[np.ndarray | None] = [None] * len(args)
        ts[k] = t
        jt = np.ravel(prim.pushforward(ts, ans, args, params))
        jtg = np.ravel(prim.pullback(k, g, ans, args, params))
        # dot-product identity <J^T g, t> = <g, J t>, exact up to rounding
        lhs, rhs = float(jtg @ np.ravel(t)), float(np.ravel(g) @ jt)
        assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)
        jac = prim.local_jacobian(k, ans, args, params)
        np.testing.assert_allclose(jac @ np.ravel(t), jt, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(jac.T @ np.ravel(g), jtg, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("name", "i"), PARAMS)
def test_primitive_in_a_program_differentiates_end_to_end(name: str, i: int) -> None:
    prim, args, params, ans = _case(name, i)

    def f(*xs: Any) -> Any:
        return prim(*xs, **params)

    p = lagrad.trace(f, *args)
    assert [eq.primitive for eq in p.equations] == [prim]
    sol = p.solve(*args)
    np.testing.assert_allclose(sol.output, ans, rtol=1e-15, atol=0)
    for k in range(len(args)):
        fd = _fd_jacobian(prim, args, params, k).reshape(ans.shape + np.shape(args[k]))
        for mode in ("reverse", "forward"):
            jac = lagrad.jacobian(f, argnums=k, mode=mode)(*args)
            np.testing.assert_allclose(jac, fd, rtol=RTOL, atol=ATOL, err_msg=f"{mode} arg {k}")


SMOOTH_BINARY = ["add", "sub", "mul", "div", "pow"]


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(SMOOTH_BINARY),
       shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
       seed=st.integers(0, 2**32 - 1))
def test_binary_broadcasting_any_shapes(name: str, shapes: Any, seed: int) -> None:
    """Any pair of numpy-broadcastable shapes: local Jacobian vs finite
    differences, and pullback/pushforward vs the local Jacobian."""
    prim = BY_NAME[name]
    rng = np.random.default_rng(seed)
    args = (rng.uniform(0.5, 2.0, shapes.input_shapes[0]),
            rng.choice([-1.0, 1.0], shapes.input_shapes[1])
            * rng.uniform(0.3, 1.5, shapes.input_shapes[1]))
    ans = np.asarray(prim.value(*args), dtype=float)
    assert ans.shape == shapes.result_shape == prim.shape(*shapes.input_shapes)
    for k in (0, 1):
        jac = prim.local_jacobian(k, ans, args, {})
        assert jac.nnz <= ans.size
        np.testing.assert_allclose(jac.toarray(), _fd_jacobian(prim, args, {}, k),
                                   rtol=RTOL, atol=ATOL)
        g = rng.normal(size=ans.shape)
        t = rng.normal(size=np.shape(args[k]))
        ts: list[Any] = [None, None]
        ts[k] = t
        np.testing.assert_allclose(np.ravel(prim.pullback(k, g, ans, args, {})),
                                   jac.T @ np.ravel(g), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(np.ravel(prim.pushforward(ts, ans, args, {})),
                                   jac @ np.ravel(t), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------- ties (as JAX)

@pytest.mark.parametrize("shape", [(), (3,)])
def test_maximum_minimum_ties_split_evenly(shape: tuple[int, ...]) -> None:
    x = np.full(shape, 0.7)
    g = np.full(shape, 2.0)
    for prim in (P.maximum, P.minimum):
        ans = prim.value(x, x)
        for k in (0, 1):
            np.testing.assert_array_equal(prim.pullback(k, g, ans, (x, x), {}), 0.5 * g)
            ts: list[Any] = [None, None]
            ts[k] = g
            np.testing.assert_array_equal(prim.pushforward(ts, ans, (x, x), {}), 0.5 * g)
            np.testing.assert_array_equal(prim.local_jacobian(k, ans, (x, x), {}).toarray(),
                                          0.5 * np.eye(x.size))


def test_ties_through_grad_follow_jax() -> None:
    assert float(lagrad.grad(lambda x: lagrad.maximum(x, 1.0))(1.0)) == 0.5
    assert float(lagrad.grad(lambda x: lagrad.minimum(1.0, x))(1.0)) == 0.5
    assert float(lagrad.grad(lambda x: lagrad.maximum(x, x))(1.0)) == 1.0
    gx, gy = lagrad.grad(lambda x, y: lagrad.maximum(x, y), argnums=(0, 1))(2.0, 2.0)
    assert (float(gx), float(gy)) == (0.5, 0.5)
    assert float(lagrad.grad(lagrad.relu)(0.0)) == 0.0
    assert float(lagrad.grad(lagrad.abs)(0.0)) == 0.0
    np.testing.assert_array_equal(
        lagrad.grad(lambda x: lagrad.relu(x).sum())(np.array([-1.0, 0.0, 2.0])), [0, 0, 1])
    np.testing.assert_array_equal(
        lagrad.grad(lambda x: lagrad.abs(x).sum())(np.array([-1.0, 0.0, 2.0])), [-1, 0, 1])


def test_kinks_in_pullback_and_local_jacobian() -> None:
    x = np.array([-1.0, 0.0, 2.0])
    for prim, expected in ((P.relu, [0.0, 0.0, 1.0]), (P.absolute, [-1.0, 0.0, 1.0])):
        ans = prim.value(x)
        np.testing.assert_array_equal(prim.pullback(0, np.ones(3), ans, (x,), {}), expected)
        np.testing.assert_array_equal(prim.pushforward([np.ones(3)], ans, (x,), {}), expected)
        np.testing.assert_array_equal(prim.local_jacobian(0, ans, (x,), {}).diagonal(), expected)


# ------------------------------------------- composite ops through the API

def _fd_of(fn: Callable[..., Any], x: np.ndarray) -> np.ndarray:
    """Central-difference Jacobian of fn (evaluated on numbers) at x,
    shape fn(x).shape + x.shape."""
    y = np.asarray(fn(x))
    cols = []
    for q in range(x.size):
        e = _unit(x.shape, q) * H
        cols.append((np.asarray(fn(x + e)) - np.asarray(fn(x - e))).ravel() / (2 * H))
    return np.stack(cols, axis=-1).reshape(y.shape + x.shape)


MASK = np.array([[True, False, True, False], [False, True, True, True], [True, True, False, False]])
A34 = np.linspace(-1.0, 1.0, 12).reshape(3, 4)
SPARSE = sp.csr_matrix(np.array([[1.0, 0.0, 0.0, 2.0], [0.0, 0.0, -3.0, 0.0],
                                 [0.5, 0.0, 0.0, 0.0]]))
COMPOSITES: dict[str, tuple[Callable[[Any], Any], tuple[int, ...]]] = {
    "mean": (lambda x: lagrad.mean(x), (3, 4)),
    "mean_axis0": (lambda x: lagrad.mean(x, axis=0), (3, 4)),
    "mean_axis1_keepdims": (lambda x: lagrad.mean(x, axis=1, keepdims=True), (3, 4)),
    "mean_axes_neg": (lambda x: lagrad.mean(x, axis=(0, -1)), (2, 3, 4)),
    "softmax": (lambda x: lagrad.softmax(x), (3, 4)),
    "softmax_axis0": (lambda x: lagrad.softmax(x, axis=0), (3, 4)),
    "softmax_1d": (lambda x: lagrad.softmax(x), (5,)),
    "stack": (lambda x: lagrad.stack([x, lagrad.sin(x), 2.0 * x]), (4,)),
    "stack_axis1": (lambda x: lagrad.stack([x, x * x], axis=1), (2, 3)),
    "stack_axis_neg": (lambda x: lagrad.stack([x, lagrad.exp(x)], axis=-1), (2, 3)),
    "dot_vec": (lambda x: lagrad.dot(x, x[::-1]), (4,)),
    "dot_mat_vec": (lambda x: lagrad.dot(A34, x), (4,)),
    "dot_vec_mat": (lambda x: lagrad.dot(x, A34), (3,)),
    "dot_scalar": (lambda x: lagrad.dot(3.0, x), (3,)),
    "matmul_self": (lambda x: lagrad.matmul(x, x.T), (3, 2)),
    "logsumexp": (lambda x: lagrad.logsumexp(x), (3, 4)),
    "logsumexp_axis1": (lambda x: lagrad.logsumexp(x, axis=1), (3, 4)),
    "logsumexp_axis0_keepdims": (lambda x: lagrad.logsumexp(x, axis=0, keepdims=True), (3, 4)),
    "logsumexp_axis_neg": (lambda x: lagrad.logsumexp(x, axis=-1), (2, 3, 4)),
    "getitem_slices": (lambda x: x[1:3, ::2], (3, 4)),
    "getitem_step_neg": (lambda x: x[::-2], (5,)),
    "getitem_gather_repeats": (lambda x: x[np.array([0, 2, 2, 1, 2])], (4,)),
    "getitem_gather_list": (lambda x: x[[3, 3, 0]], (4,)),
    "getitem_gather_2d": (lambda x: x[np.array([2, 0, 2]), np.array([1, 1, 3])], (3, 4)),
    "getitem_gather_cols": (lambda x: x[:, [0, 0, 3]], (3, 4)),
    "getitem_mask": (lambda x: x[MASK], (3, 4)),
    "getitem_mask_rows": (lambda x: x[np.array([True, False, True])], (3, 4)),
    "getitem_negative": (lambda x: x[-1], (3, 4)),
    "getitem_negative_2d": (lambda x: x[-1, -2], (3, 4)),
    "getitem_negative_array": (lambda x: x[np.array([-1, -4, -1])], (4,)),
    "concatenate_axis1": (lambda x: lagrad.concatenate([x, lagrad.exp(x), A34[:, :1]], axis=1),
                          (3, 4)),
    "concatenate_axis0": (lambda x: lagrad.concatenate([x, x[:2] * 3.0]), (3, 4)),
    "transpose_axes": (lambda x: lagrad.transpose(x, (1, 2, 0)), (2, 3, 4)),
    "transpose_default": (lambda x: lagrad.transpose(x), (2, 3, 4)),
    "transpose_T": (lambda x: x.T * A34, (4, 3)),
    "reshape_minus1": (lambda x: lagrad.reshape(x, (-1,)), (3, 4)),
    "reshape_minus1_mid": (lambda x: lagrad.reshape(x * x, (2, -1, 3)), (3, 4)),
    "where_const": (lambda x: lagrad.where(MASK, x, -x), (3, 4)),
    "sum_axis": (lambda x: lagrad.sum(x * x, axis=1), (3, 4)),
    "sigmoid_tanh": (lambda x: lagrad.sigmoid(x) * lagrad.tanh(x), (3,)),
    "softmax_0d": (lambda x: lagrad.softmax(x * x), ()),
    "mean_0d_axis": (lambda x: lagrad.mean(lagrad.exp(x), axis=-1, keepdims=True), ()),
    "sparse_matmul": (lambda x: lagrad.matmul(SPARSE, lagrad.sin(x)), (4,)),
    "sparse_dot_matrix": (lambda x: lagrad.dot(SPARSE, x), (4, 2)),
}


@pytest.mark.parametrize("name", sorted(COMPOSITES))
@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_composite_jacobian_matches_finite_differences(name: str, mode: str) -> None:
    fn, shape = COMPOSITES[name]
    x = np.random.default_rng(sum(map(ord, name))).normal(size=shape)
    jac = lagrad.jacobian(fn, mode=mode)(x)
    fd = _fd_of(fn, x)
    assert jac.shape == fd.shape
    np.testing.assert_allclose(jac, fd, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_composite_grad_of_weighted_sum_matches_finite_differences(name: str) -> None:
    fn, shape = COMPOSITES[name]
    rng = np.random.default_rng(sum(map(ord, name)) + 1)
    x = rng.normal(size=shape)
    w = rng.normal(size=np.shape(fn(x)))

    def scalar(x: Any) -> Any:
        return lagrad.sum(fn(x) * w)

    g = lagrad.grad(scalar)(x)
    assert np.shape(g) == shape
    np.testing.assert_allclose(g, _fd_of(scalar, x), rtol=RTOL, atol=ATOL)


def test_softmax_rows_sum_to_one_and_jacobian_rows_to_zero() -> None:
    x = np.random.default_rng(5).normal(size=(3, 4))
    s = lagrad.softmax(x)
    np.testing.assert_allclose(s.sum(axis=-1), 1.0, rtol=1e-14)
    jac = lagrad.jacobian(lagrad.softmax)(x)
    np.testing.assert_allclose(jac.sum(axis=1), 0.0, atol=1e-14)  # sum_i ds_i/dx = 0


def test_gather_with_repeated_indices_accumulates() -> None:
    # d/dx sum(x[[0, 2, 2, 2]]) counts index 2 three times
    g = lagrad.grad(lambda x: lagrad.sum(x[np.array([0, 2, 2, 2])]))(np.zeros(4))
    np.testing.assert_array_equal(g, [1.0, 0.0, 3.0, 0.0])


@pytest.mark.parametrize("prim", [p for p in P.ELEMENTWISE if p.constant_partials is not None],
                         ids=lambda p: p.name)
def test_constant_partials_agree_with_partials(prim) -> None:  # type: ignore[no-untyped-def]
    """The shortcut for add/sub/neg/identity must equal the partials rule."""
    rng = np.random.default_rng(3)
    args = [rng.standard_normal(4) for _ in prim.constant_partials]
    ans = prim.value(*args)
    for k, c in enumerate(prim.constant_partials):
        np.testing.assert_array_equal(np.broadcast_to(prim.partials(k, ans, *args), (4,)),
                                      np.full(4, c))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([(), (1,), (3,), (2, 3), (2, 1), (4,)]), min_size=1,
                max_size=3))
def test_broadcast_shape_is_numpys(shapes: list[tuple[int, ...]]) -> None:
    """The shape rule's shortcuts (equal shapes; scalars beside one shape) agree
    with numpy, incompatible shapes included."""
    try:
        expected: Any = tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        expected = ValueError
    if expected is ValueError:
        with pytest.raises(ValueError):
            P.broadcast_shape(*shapes)
    else:
        assert P.broadcast_shape(*shapes) == expected
