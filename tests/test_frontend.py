"""The JAX-style front end: pytrees in and out of every transform, has_aux,
keyword arguments, argnums, jacfwd/jacrev, integer inputs and float32.

References are hand-written derivatives in numpy and central differences
computed here, leaf by leaf, without lagrad.
"""

from __future__ import annotations

from collections import OrderedDict, namedtuple
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import lagrad
from lagrad import InputDtypeError, LagradError, ProgramError, tree

Params = namedtuple("Params", ["w", "b"])


def fd_grad(f: Callable[[np.ndarray], float], x: Any, eps: float = 1e-6) -> np.ndarray:
    """Central differences of a scalar function of one array, entry by entry."""
    x = np.asarray(x, dtype=float)
    g = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        e = np.zeros(x.shape)
        e[i] = eps
        g[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return g


def fd_jac(f: Callable[[np.ndarray], Any], x: Any, eps: float = 1e-6) -> np.ndarray:
    """Central differences of an array function: shape f(x).shape + x.shape."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(f(x))
    jac = np.zeros(y.shape + x.shape)
    for i in np.ndindex(x.shape):
        e = np.zeros(x.shape)
        e[i] = eps
        jac[(...,) + i] = (np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * eps)
    return jac


# ------------------------------------------------------------- a small MLP

def mlp_loss(params: dict[str, Any], x: np.ndarray, y: np.ndarray) -> Any:
    h = lagrad.tanh(x @ params["w1"] + params["b1"])
    out = h @ params["w2"]
    return ((out - y) ** 2).mean()


def mlp_backprop(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray
                 ) -> dict[str, np.ndarray]:
    """The same loss's gradient, by hand."""
    h = np.tanh(x @ params["w1"] + params["b1"])
    out = h @ params["w2"]
    d_out = 2 * (out - y) / out.size
    d_pre = (d_out @ params["w2"].T) * (1 - h ** 2)
    return {"w1": x.T @ d_pre, "b1": d_pre.sum(0), "w2": h.T @ d_out}


@pytest.fixture
def mlp() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    params = {"w1": rng.standard_normal((4, 3)), "b1": rng.standard_normal(3),
              "w2": rng.standard_normal((3, 2))}
    return params, rng.standard_normal((5, 4)), rng.standard_normal((5, 2))


def test_dict_params_give_a_dict_gradient(mlp: Any) -> None:
    params, x, y = mlp
    g = lagrad.grad(mlp_loss)(params, x, y)
    ref = mlp_backprop(params, x, y)
    assert type(g) is dict and set(g) == set(params)
    for k in params:
        assert g[k].shape == params[k].shape
        np.testing.assert_allclose(g[k], ref[k], rtol=1e-10, atol=1e-12)


def test_dict_gradient_matches_central_differences(mlp: Any) -> None:
    params, x, y = mlp
    g = lagrad.grad(mlp_loss)(params, x, y)

    def numeric(p: dict[str, Any]) -> float:
        h = np.tanh(x @ p["w1"] + p["b1"])
        return float((((h @ p["w2"]) - y) ** 2).mean())
    for k in params:
        ref = fd_grad(lambda v, k=k: numeric({**params, k: v}), params[k])
        np.testing.assert_allclose(g[k], ref, rtol=1e-6, atol=1e-8)


def test_the_callers_dict_is_not_changed(mlp: Any) -> None:
    params, x, y = mlp
    before = {k: v.copy() for k, v in params.items()}
    lagrad.value_and_grad(mlp_loss)(params, x, y)
    assert list(params) == ["w1", "b1", "w2"]
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])


def test_namedtuple_in_namedtuple_out() -> None:
    w, b = np.array([0.5, -1.0]), 0.3
    x = np.array([1.0, 2.0])
    g = lagrad.grad(lambda p: lagrad.sin(p.w @ x + p.b))(Params(w, b))
    assert type(g) is Params
    c = np.cos(w @ x + b)
    np.testing.assert_allclose(g.w, c * x, rtol=1e-12)
    assert g.b == pytest.approx(c, rel=1e-12)


def test_nested_tuples_keep_their_nesting() -> None:
    a = np.array([1.0, 2.0])
    g = lagrad.grad(lambda t: (t[0][0] ** 3).sum())(((a,),))
    assert type(g) is tuple and len(g) == 1 and type(g[0]) is tuple and len(g[0]) == 1
    np.testing.assert_allclose(g[0][0], 3 * a ** 2)


def test_deep_mixed_nesting() -> None:
    arg = {"a": [1.0, (2.0, {"c": np.array([3.0, 4.0])})], "b": (5.0,)}

    def f(t: Any) -> Any:
        return t["a"][0] * t["a"][1][0] + (t["a"][1][1]["c"] ** 2).sum() * t["b"][0]
    g = lagrad.grad(f)(arg)
    assert tree.structure(g) == tree.structure(arg)
    assert type(g["a"]) is list and type(g["a"][1]) is tuple
    assert g["a"][0] == pytest.approx(2.0) and g["a"][1][0] == pytest.approx(1.0)
    np.testing.assert_allclose(g["a"][1][1]["c"], 2 * 5.0 * np.array([3.0, 4.0]))
    assert g["b"][0] == pytest.approx(9.0 + 16.0)


def test_flat_tuple_and_list_arguments_keep_their_old_gradients() -> None:
    f = lambda t: t[0] * t[1] ** 2  # noqa: E731
    g_tuple = lagrad.grad(f)((3.0, 2.0))
    g_list = lagrad.grad(f)([3.0, 2.0])
    assert type(g_tuple) is tuple and type(g_list) is list
    assert tuple(g_list) == g_tuple == (4.0, 12.0)


def test_none_leaves_carry_no_derivative() -> None:
    x = np.array([1.0, -2.0])
    g = lagrad.grad(lambda p: (p["x"] ** 2).sum())({"x": x, "frozen": None})
    assert g["frozen"] is None
    np.testing.assert_allclose(g["x"], 2 * x)
    assert lagrad.grad(lambda a, b: b * 2.0)(None, 2.0) is None


def test_ordered_dict_keeps_its_order() -> None:
    p = OrderedDict([("z", 1.0), ("a", 2.0)])
    g = lagrad.grad(lambda p: p["z"] * p["a"] ** 2)(p)
    assert type(g) is OrderedDict and list(g) == ["z", "a"]
    assert (g["z"], g["a"]) == (4.0, 4.0)


# ---------------------------------------------------------------- has_aux

def test_value_and_grad_has_aux_returns_traced_and_plain_aux() -> None:
    x = np.array([0.5, -1.0, 2.0])

    def f(x: Any) -> Any:
        h = lagrad.tanh(x)
        unused = lagrad.exp(x)  # not on the output's path: its value is still read
        return (h ** 2).sum(), {"h": h, "exp": unused, "label": "run 1", "none": None}
    (value, aux), g = lagrad.value_and_grad(f, has_aux=True)(x)
    assert value == pytest.approx(float((np.tanh(x) ** 2).sum()), rel=1e-14)
    np.testing.assert_allclose(aux["h"], np.tanh(x), rtol=1e-14)
    np.testing.assert_allclose(aux["exp"], np.exp(x), rtol=1e-14)
    assert aux["label"] == "run 1" and aux["none"] is None
    assert not any(isinstance(leaf, lagrad.Variable) for leaf in tree.leaves(aux))
    np.testing.assert_allclose(g, 2 * np.tanh(x) * (1 - np.tanh(x) ** 2), rtol=1e-12)


def test_grad_has_aux_returns_grad_then_aux(mlp: Any) -> None:
    params, x, y = mlp

    def loss(p: Any, x: Any, y: Any) -> Any:
        pred = lagrad.tanh(x @ p["w1"] + p["b1"]) @ p["w2"]
        return ((pred - y) ** 2).mean(), pred
    g, pred = lagrad.grad(loss, has_aux=True)(params, x, y)
    ref = mlp_backprop(params, x, y)
    for k in params:
        np.testing.assert_allclose(g[k], ref[k], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(pred, np.tanh(x @ params["w1"] + params["b1"]) @ params["w2"])


@pytest.mark.parametrize("result", [lambda x: x, lambda x: (x, x, x), lambda x: [x]])
def test_has_aux_needs_a_pair(result: Callable[[Any], Any]) -> None:
    with pytest.raises(ProgramError, match=r"must return a pair \(output, aux\)"):
        lagrad.grad(result, has_aux=True)(1.0)


def test_has_aux_in_jvp_vjp_and_jacobian() -> None:
    x = np.array([0.3, 0.7])

    def f(x: Any) -> Any:
        y = lagrad.sin(x)
        return y * 2.0, {"y": y}
    value, tangent, aux = lagrad.jvp(f, (x,), (np.ones(2),), has_aux=True)
    np.testing.assert_allclose(tangent, 2 * np.cos(x))
    np.testing.assert_allclose(aux["y"], np.sin(x))
    value, pullback, aux = lagrad.vjp(f, x, has_aux=True)
    np.testing.assert_allclose(pullback(np.ones(2))[0], 2 * np.cos(x))
    np.testing.assert_allclose(aux["y"], np.sin(x))
    for jac_fn in (lagrad.jacobian, lagrad.jacfwd, lagrad.jacrev):
        jac, aux = jac_fn(f, has_aux=True)(x)
        np.testing.assert_allclose(jac, np.diag(2 * np.cos(x)))
        np.testing.assert_allclose(aux["y"], np.sin(x))


# ------------------------------------------------------- keyword arguments

def test_keyword_arguments_pass_through_undifferentiated() -> None:
    x = np.array([1.0, 2.0])
    data = np.array([3.0, -1.0])

    def f(x: Any, *, data: Any, scale: float = 1.0) -> Any:
        return scale * (x * data).sum() ** 2
    s = float((x * data).sum())
    np.testing.assert_allclose(lagrad.grad(f)(x, data=data, scale=3.0), 3 * 2 * s * data)
    v, g = lagrad.value_and_grad(f)(x, data=data)
    assert v == pytest.approx(s ** 2)
    np.testing.assert_allclose(g, 2 * s * data)
    np.testing.assert_allclose(lagrad.jacobian(lambda x, *, data: x * data)(x, data=data),
                               np.diag(data))


def test_keyword_arguments_with_argnums() -> None:
    g = lagrad.grad(lambda a, b, *, c: a * b * c, argnums=1)(2.0, 3.0, c=5.0)
    assert g == pytest.approx(10.0)


# ---------------------------------------------------------------- argnums

def f3(a: Any, b: Any, c: Any) -> Any:
    return (a * b).sum() + lagrad.sin(c).sum() * b[0]


A, B, C = np.array([1.0, 2.0]), np.array([0.5, -1.5]), np.array([0.2, 0.4, 0.6])
GRADS = {0: B, 1: A + np.array([np.sin(C).sum(), 0.0]), 2: np.cos(C) * B[0]}


@pytest.mark.parametrize("argnums", [0, 1, 2, -1, -3, (0,), (2, 0), (-1, 1), [0, 1, 2]])
@pytest.mark.parametrize("transform", ["grad", "value_and_grad", "jacobian", "jacfwd",
                                       "jacrev"])
def test_argnums_everywhere(argnums: Any, transform: str) -> None:
    result = getattr(lagrad, transform)(f3, argnums=argnums)(A, B, C)
    if transform == "value_and_grad":
        value, result = result
        assert value == pytest.approx((A * B).sum() + np.sin(C).sum() * B[0])
    nums = [argnums] if isinstance(argnums, int) else list(argnums)
    expected = [GRADS[n % 3] for n in nums]
    got = [result] if isinstance(argnums, int) else list(result)
    if not isinstance(argnums, int):
        assert type(result) is tuple
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-12)


def test_argnums_positionally_as_in_jax() -> None:
    assert lagrad.grad(lambda a, b: a * b ** 2, 1)(3.0, 2.0) == pytest.approx(12.0)
    np.testing.assert_allclose(lagrad.jacfwd(f3, 2)(A, B, C), np.cos(C) * B[0])


# ---------------------------------------------- jvp, vjp, jacobian on trees

def tree_fn(p: dict[str, Any], q: tuple[Any, Any]) -> Any:
    """dict and tuple in; a dict with a tuple, a scalar and None out."""
    u = p["u"] * q[0]
    return {"prod": (u, lagrad.exp(p["s"]) * q[1]), "total": u.sum() + p["s"], "none": None}


def tree_fn_np(p: dict[str, Any], q: tuple[Any, Any]) -> dict[str, Any]:
    u = p["u"] * q[0]
    return {"prod": (u, np.exp(p["s"]) * q[1]), "total": u.sum() + p["s"], "none": None}


P0 = {"u": np.array([1.0, -2.0, 0.5]), "s": 0.3}
Q0 = (np.array([0.7, 1.1, -0.4]), 2.0)
TP = {"u": np.array([0.1, 0.2, -0.3]), "s": -0.5}
TQ = (np.array([1.0, 0.0, 2.0]), 0.25)


def _along(h: float) -> dict[str, Any]:
    return tree_fn_np({"u": P0["u"] + h * TP["u"], "s": P0["s"] + h * TP["s"]},
                      (Q0[0] + h * TQ[0], Q0[1] + h * TQ[1]))


def test_jvp_on_trees_matches_hand_derivative_and_differences() -> None:
    value, tangent = lagrad.jvp(tree_fn, (P0, Q0), (TP, TQ))
    assert tree.structure(value) == tree.structure(tree_fn_np(P0, Q0))
    assert tree.structure(tangent) == tree.structure(value) and tangent["none"] is None
    du = TP["u"] * Q0[0] + P0["u"] * TQ[0]
    np.testing.assert_allclose(tangent["prod"][0], du)
    assert tangent["prod"][1] == pytest.approx(np.exp(P0["s"]) * (TP["s"] * Q0[1] + TQ[1]))
    assert tangent["total"] == pytest.approx(du.sum() + TP["s"])
    eps = 1e-6
    plus, minus = _along(eps), _along(-eps)
    for got, hi, lo in zip(tree.leaves(tangent), tree.leaves(plus), tree.leaves(minus)):
        np.testing.assert_allclose(got, (np.asarray(hi) - lo) / (2 * eps), rtol=1e-7)


def test_vjp_on_trees_is_the_transpose_of_jvp() -> None:
    value, pullback = lagrad.vjp(tree_fn, P0, Q0)
    ct = {"prod": (np.array([1.0, -1.0, 3.0]), 0.5), "total": 2.0, "none": None}
    cp, cq = pullback(ct)
    assert type(cp) is dict and set(cp) == {"u", "s"} and type(cq) is tuple
    # <ct, J t> == <J^T ct, t> with J t from the hand derivative above
    du = TP["u"] * Q0[0] + P0["u"] * TQ[0]
    jt = [du, np.exp(P0["s"]) * (TP["s"] * Q0[1] + TQ[1]), du.sum() + TP["s"]]
    lhs = sum(float(np.sum(np.asarray(a) * b))
              for a, b in zip([ct["prod"][0], ct["prod"][1], ct["total"]], jt))
    rhs = (cp["u"] @ TP["u"] + cp["s"] * TP["s"] + cq[0] @ TQ[0] + cq[1] * TQ[1])
    assert lhs == pytest.approx(rhs, rel=1e-12)
    # and by hand: d total / d u = q0, d prod0 / d u = diag(q0)
    np.testing.assert_allclose(cp["u"], ct["prod"][0] * Q0[0] + 2.0 * Q0[0])


@pytest.mark.parametrize("jac_fn", [lagrad.jacobian, lagrad.jacfwd, lagrad.jacrev])
def test_jacobian_of_a_tree_function_has_nested_structure(jac_fn: Callable[..., Any]) -> None:
    jac = jac_fn(tree_fn, argnums=(0, 1))(P0, Q0)
    assert jac["none"] is None
    out = tree_fn_np(P0, Q0)
    # jac[out leaf][argnum][input leaf] has shape out.shape + in.shape
    for out_key, y in [(("prod", 0), out["prod"][0]), (("prod", 1), out["prod"][1]),
                       (("total",), out["total"])]:
        node = jac[out_key[0]] if len(out_key) == 1 else jac[out_key[0]][out_key[1]]
        assert type(node) is tuple and type(node[0]) is dict and type(node[1]) is tuple
        for (path, block), leaf in zip(tree.flatten_with_path(node)[0],
                                       tree.leaves((P0, Q0))):
            assert np.shape(block) == np.shape(y) + np.shape(leaf), path

    # against central differences, input leaf by input leaf
    def column(k: int) -> Callable[[np.ndarray], np.ndarray]:
        leaves, treedef = tree.flatten((P0, Q0))

        def f(v: np.ndarray) -> np.ndarray:
            args = tree.unflatten(treedef, [v if i == k else x for i, x in enumerate(leaves)])
            o = tree_fn_np(*args)
            return np.concatenate([np.ravel(o["prod"][0]), np.ravel(o["prod"][1]),
                                   np.ravel(o["total"])])
        return f
    flat_leaves = tree.leaves((P0, Q0))
    for k, x in enumerate(flat_leaves):
        ref = fd_jac(column(k), x).reshape(5, -1)
        blocks = [tree.leaves(jac["prod"][0])[k], tree.leaves(jac["prod"][1])[k],
                  tree.leaves(jac["total"])[k]]
        got = np.concatenate([np.reshape(b, (-1, np.size(x))) for b in blocks])
        np.testing.assert_allclose(got, ref, rtol=1e-7, atol=1e-9)


def test_jacfwd_equals_jacrev_equals_jacobian() -> None:
    rng = np.random.default_rng(1)
    W = rng.standard_normal((3, 4))
    x = {"a": rng.standard_normal(4), "b": [rng.standard_normal(3)]}

    def f(x: Any) -> Any:
        return (lagrad.tanh(W @ x["a"]) * x["b"][0], (x["a"] ** 2).sum())
    fwd, rev, auto = (t(f)(x) for t in (lagrad.jacfwd, lagrad.jacrev, lagrad.jacobian))
    for a, b, c in zip(tree.leaves(fwd), tree.leaves(rev), tree.leaves(auto)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-14)
    t = np.tanh(W @ x["a"])
    np.testing.assert_allclose(fwd[0]["a"], (1 - t ** 2)[:, None] * W * x["b"][0][:, None])
    np.testing.assert_allclose(fwd[0]["b"][0], np.diag(t))
    np.testing.assert_allclose(fwd[1]["a"], 2 * x["a"])


def test_jacrev_of_a_scalar_function_is_its_gradient() -> None:
    """One seed: jacrev runs the gradient's own sweep; rows of the right shape
    for every input layout, float32 inputs included, and the same error."""
    rng = np.random.default_rng(2)
    W = rng.standard_normal((4, 4))

    def f(x: Any, y: Any) -> Any:
        return lagrad.sum(lagrad.tanh(W @ x) * y) + lagrad.sum(x ** 3)
    x, y = rng.standard_normal(4), rng.standard_normal((2, 2)).astype(np.float32)
    jac = lagrad.jacrev(f, argnums=(0, 1))(x, y.ravel())
    grad = lagrad.grad(f, argnums=(0, 1))(x, y.ravel())
    np.testing.assert_array_equal(jac[0], grad[0])
    np.testing.assert_array_equal(jac[1].astype(np.float32), grad[1])  # grad: y's dtype
    t = np.tanh(W @ x)
    np.testing.assert_allclose(jac[0], W.T @ ((1 - t ** 2) * y.ravel()) + 3 * x ** 2)
    np.testing.assert_allclose(jac[1], t)
    with pytest.raises(lagrad.NonFiniteError, match="sqrt"):
        lagrad.jacrev(lambda x: lagrad.sum(lagrad.sqrt(x)))(np.array([0.0, 1.0]))


def test_outputs_with_constants_and_empty_outputs() -> None:
    x = np.array([1.0, 2.0])
    jac = lagrad.jacobian(lambda x: (x * 3.0, 7.0, None))(x)
    np.testing.assert_allclose(jac[0], 3 * np.eye(2))
    np.testing.assert_array_equal(jac[1], np.zeros(2))
    assert jac[2] is None
    assert lagrad.jacobian(lambda x: ())(x) == ()
    value, tangent = lagrad.jvp(lambda x: {"c": 1.0, "x": x}, (x,), (np.ones(2),))
    assert value["c"] == 1.0 and tangent["c"] == 0.0


def test_tangent_of_a_leaf_primal_may_be_a_list() -> None:
    _, t = lagrad.jvp(lambda x: x * 2.0, (np.ones(2),), ([1.0, 3.0],))
    np.testing.assert_allclose(t, [2.0, 6.0])


# ------------------------------------------------------------------ dtypes

F32 = np.float32


def test_float32_in_float32_out_everywhere() -> None:
    x = np.array([0.5, -1.0], dtype=F32)
    f = lambda x: (lagrad.sin(x) * x).sum()  # noqa: E731
    ref = np.sin(x.astype(float)) + x.astype(float) * np.cos(x.astype(float))
    g = lagrad.grad(f)(x)
    assert g.dtype == F32
    np.testing.assert_allclose(g, ref, rtol=1e-6)
    v, g = lagrad.value_and_grad(f)(x)
    assert v.dtype == F32 and g.dtype == F32
    y, t = lagrad.jvp(lambda x: x ** 2, (x,), (np.ones(2, F32),))
    assert y.dtype == F32 and t.dtype == F32
    y, pullback = lagrad.vjp(lambda x: x ** 2, x)
    assert y.dtype == F32 and pullback(np.ones(2, F32))[0].dtype == F32
    for jac_fn in (lagrad.jacobian, lagrad.jacfwd, lagrad.jacrev):
        jac = jac_fn(lambda x: x ** 2)(x)
        assert jac.dtype == F32
        np.testing.assert_allclose(jac, np.diag(2 * x), rtol=1e-6)


def test_float32_scalars_and_trees() -> None:
    g = lagrad.grad(lambda p: p["a"] * p["b"] ** 2)({"a": F32(2.0), "b": np.float64(3.0)})
    assert type(g["a"]) is F32 and type(g["b"]) is np.float64
    assert (g["a"], g["b"]) == (9.0, 12.0)


def test_the_computation_stays_float64() -> None:
    # in float32 arithmetic x + 1e-10 == x, so the value would be 0; computed in
    # float64 it is 1 (to float64's rounding of 1 + 1e-10), returned as float32
    x = np.array([1.0, 2.0], dtype=F32)
    v, g = lagrad.value_and_grad(lambda x, c: (((x + c) - x) * 1e10).sum())(x, 1e-10)
    assert F32(1.0) + F32(1e-10) - F32(1.0) == 0.0
    assert v.dtype == F32 and v == pytest.approx(2.0, rel=1e-5)
    assert g.dtype == F32


def test_float64_and_python_floats_stay_float64() -> None:
    assert lagrad.grad(lambda x: x * x)(2.0).dtype == np.float64
    assert lagrad.grad(lambda x: (x * x).sum())(np.ones(2)).dtype == np.float64
    # mixed: the gradient follows its input, the value the promotion of the arrays
    v, (gx, gw) = lagrad.value_and_grad(lambda x, w: (x * w).sum(), argnums=(0, 1))(
        np.ones(2, F32), np.ones(2))
    assert gx.dtype == F32 and gw.dtype == np.float64 and v.dtype == np.float64


# ------------------------------------------------------- int/bool and errors

@pytest.mark.parametrize("bad", [2, True, np.arange(3), np.array([True, False]),
                                 np.int32(1)])
def test_integer_and_boolean_inputs_raise_a_type_error(bad: Any) -> None:
    for call in (lambda: lagrad.grad(lambda x: (x * 1.0).sum())(bad),
                 lambda: lagrad.jacobian(lambda x: x * 1.0)(bad),
                 lambda: lagrad.jvp(lambda x: x * 1.0, (bad,), (np.ones(np.shape(bad)),)),
                 lambda: lagrad.vjp(lambda x: x * 1.0, bad)):
        with pytest.raises(InputDtypeError, match="lagrad differentiates floating-point"):
            call()
    assert issubclass(InputDtypeError, TypeError) and issubclass(InputDtypeError, LagradError)


def test_integer_leaf_is_named_by_its_path() -> None:
    with pytest.raises(InputDtypeError, match=r"argument params\['n'\] has dtype int64"):
        lagrad.grad(lambda params: params["w"] * 1.0)({"w": 1.0, "n": np.int64(3)})


def test_integer_arguments_outside_argnums_are_fine() -> None:
    labels = np.array([0, 2, 1])
    g = lagrad.grad(lambda x, i: x[i].sum())(np.array([1.0, 2.0, 3.0]), labels)
    np.testing.assert_allclose(g, np.ones(3))


@pytest.mark.parametrize(("arg", "path"), [
    ({"w1": "abc"}, r"params\['w1'\]"),
    ([[1.0, "x"]], r"params\[0\]\[1\]"),
    (Params(np.ones(2), object()), r"params\.b"),
    ({"w": {"deep": [1.0, 2j]}}, r"params\['w'\]\['deep'\]\[1\]"),
])
def test_non_array_leaves_name_their_path(arg: Any, path: str) -> None:
    def f(params: Any) -> Any:
        return 0.0
    with pytest.raises(ProgramError, match=f"argument {path} must be real numbers"):
        lagrad.grad(f)(arg)


def test_ragged_leaf_is_a_program_error() -> None:
    ragged = np.empty(2, dtype=object)
    ragged[:] = [[1.0], [1.0, 2.0]]
    with pytest.raises(ProgramError, match=r"argument x\[0\] must be"):
        lagrad.grad(lambda x: 0.0)((ragged,))


def test_tangent_and_cotangent_structures_are_checked() -> None:
    with pytest.raises(ProgramError, match=r"tangents\[0\] has structure \[\*, \*\], "
                                           r"expected \(\*, \*\)"):
        lagrad.jvp(lambda t: t[0] * t[1], ((1.0, 2.0),), ([1.0, 0.0],))
    with pytest.raises(ProgramError, match=r"tangent for \"p\['u'\]\" has shape \(2,\)"):
        lagrad.jvp(lambda p: p["u"], ({"u": np.ones(3)},), ({"u": np.ones(2)},))
    _, pullback = lagrad.vjp(lambda x: {"a": x, "b": x.sum()}, np.ones(2))
    with pytest.raises(ProgramError, match=r"cotangent has structure \{'a': \*\}"):
        pullback({"a": np.ones(2)})
    with pytest.raises(ProgramError, match=r"cotangent\['b'\] has shape \(2,\), "
                                           r"the output\['b'\] has shape \(\)"):
        pullback({"a": np.ones(2), "b": np.ones(2)})


def test_grad_still_needs_a_scalar_output() -> None:
    with pytest.raises(ProgramError, match="returned a tuple"):
        lagrad.grad(lambda x: (x, x))(1.0)
    with pytest.raises(ProgramError, match="needs a scalar output"):
        lagrad.grad(lambda x: x)(np.ones(2))


# ------------------------------------------------------ check_grad, taylor_test

def test_check_grad_on_trees() -> None:
    params = {"w": np.array([0.3, -0.2]), "b": [0.1, None]}
    x = (np.array([1.0, 2.0]),)
    err = lagrad.check_grad(
        lambda p, x: {"y": lagrad.tanh(p["w"] * x[0] + p["b"][0]), "s": p["w"].sum()},
        params, x)
    assert err < 1e-6


def test_check_grad_on_trees_fails_on_a_wrong_rule() -> None:
    @lagrad.custom_vjp
    def wrong(x: Any) -> Any:
        return np.sin(x)

    def fwd(x: Any) -> tuple[Any, Any]:
        return np.sin(x), x

    def bwd(x: Any, g: Any) -> tuple[Any]:
        return (g * 2 * np.cos(x),)  # twice the true derivative
    wrong.defvjp(fwd, bwd)
    with pytest.raises(lagrad.GradientCheckError):
        lagrad.check_grad(lambda p: wrong(p["x"]).sum(), {"x": np.array([0.3, 0.5])})


def test_taylor_test_on_trees() -> None:
    orders = lagrad.taylor_test(lambda p: (lagrad.exp(p["a"]) * p["b"][0]).sum(),
                                {"a": np.ones(2), "b": [2.0]},
                                {"a": np.array([1.0, -1.0]), "b": [0.5]}, verbose=False)
    assert abs(orders[-1] - 2) < 0.1


def test_trace_names_inputs_by_path() -> None:
    p = lagrad.trace(lambda params, x: (params["w"] @ x.w + params["b"][0]).sum(),
                     {"w": np.ones((2, 3)), "b": [np.zeros(2)]}, Params(np.ones(3), None))
    assert [v.name for v in p.inputs] == ["params['b'][0]", "params['w']", "x.w"]
    assert [v.shape for v in p.inputs] == [(2,), (2, 3), (3,)]


# ------------------------------------------------------------- tree module

def test_tree_flatten_orders_dict_keys_and_keeps_paths() -> None:
    pairs, treedef = tree.flatten_with_path({"b": (1.0, None), "a": [2.0, {"z": 3.0}]})
    assert pairs == [("['a'][0]", 2.0), ("['a'][1]['z']", 3.0), ("['b'][0]", 1.0)]
    assert treedef == tree.structure({"a": [0, {"z": 0}], "b": (0, None)})
    assert hash(treedef) == hash(tree.structure({"a": [0, {"z": 0}], "b": (0, None)}))
    assert treedef != tree.structure({"a": (0, {"z": 0}), "b": (0, None)})
    assert tree.unflatten(treedef, [1, 2, 3]) == {"a": [1, {"z": 2}], "b": (3, None)}


def test_tree_roundtrip_of_every_container() -> None:
    t = [Params(1.0, (2.0,)), OrderedDict(y=3.0, x=None), {1: 4.0, "k": 5.0}, ()]
    leaves, treedef = tree.flatten(t)
    assert leaves == [1.0, 2.0, 3.0, 4.0, 5.0]  # mixed keys keep the dict's own order
    back = tree.unflatten(treedef, leaves)
    assert back == t and type(back[0]) is Params and type(back[1]) is OrderedDict


def test_tree_errors_are_lagrad_errors() -> None:
    with pytest.raises(ProgramError, match="unflatten: 1 leaves for a structure with 2"):
        tree.unflatten(tree.structure((0, 0)), [1])
    with pytest.raises(ProgramError, match=r"tree 1\['b'\] has structure"):
        tree.map(lambda a, b: a + b, {"b": (1.0,)}, {"b": [1.0]})
