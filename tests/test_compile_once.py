"""lagrad.jit (compile once, run many) and solver options from the transforms."""

from __future__ import annotations

import numpy as np
import pytest

import lagrad
from lagrad.options import BACKWARD_MODES, BLOCK_LINEAR_METHODS
from lagrad.solve.blocksolve import BLOCK_METHODS


class Counted:
    """A loss that counts how often Python runs it (each run is one trace)."""

    def __init__(self) -> None:
        self.runs = 0

    def __call__(self, w: object, x: np.ndarray, scale: float = 1.0) -> object:
        self.runs += 1
        return scale * (lagrad.tanh(x @ w) ** 2).sum()


def reference(w: np.ndarray, x: np.ndarray, scale: float = 1.0) -> tuple[float, np.ndarray]:
    """Value and gradient by hand: d/dw sum tanh(xw)^2 = x^T (2 t (1 - t^2))."""
    t = np.tanh(x @ w)
    return scale * float((t ** 2).sum()), scale * x.T @ (2 * t * (1 - t ** 2))


def test_a_training_loop_traces_once_and_matches_the_reference(rng):
    loss = Counted()
    step = lagrad.jit(lagrad.value_and_grad(loss))
    x = rng.standard_normal((5, 3))
    w = rng.standard_normal(3)
    for _ in range(5):
        v, g = step(w, x)
        v_ref, g_ref = reference(w, x)
        assert v == pytest.approx(v_ref, rel=1e-12)
        np.testing.assert_allclose(g, g_ref, rtol=1e-12)
        w = w - 0.1 * g
    assert loss.runs == 1 and step.cache.traces == 1


def test_new_shapes_dtypes_or_structure_retrace_identical_calls_do_not(rng):
    loss = Counted()
    step = lagrad.jit(lagrad.grad(loss))
    x = rng.standard_normal((4, 3))
    step(np.ones(3), x)
    step(np.zeros(3), x)
    assert loss.runs == 1
    step(np.ones(3, dtype=np.float32), x)  # dtype
    assert loss.runs == 2
    step(np.ones(3), x[:2])  # a constant's shape
    assert loss.runs == 3
    g = lagrad.jit(lagrad.grad(lambda p, x: (p["a"] * x).sum()
                               + sum(v for k, v in p.items() if k != "a")))
    g({"a": np.ones(2), "b": 1.0}, np.ones(2))
    g({"a": np.ones(2), "b": 2.0}, np.ones(2))
    assert g.cache.traces == 1
    g({"a": np.ones(2), "c": 1.0}, np.ones(2))  # structure
    g({"a": np.ones(3), "b": 1.0}, np.ones(3))  # shape
    assert g.cache.traces == 3


def test_constants_are_part_of_the_key(rng):
    """Keyword arguments (and positional ones that are not float arrays) are
    baked in: a new value (also an array changed in place) must retrace, not
    reuse."""
    loss = Counted()
    step = lagrad.jit(lagrad.value_and_grad(loss))
    w, x = rng.standard_normal(3), rng.standard_normal((4, 3))
    scale = np.array(2.0)
    step(w, x, scale=scale)
    scale[...] = 3.0  # in place: same object, new value
    v, g = step(w, x, scale=scale)
    np.testing.assert_allclose(g, reference(w, x, 3.0)[1], rtol=1e-12)
    assert loss.runs == 2
    v, g = step(w, x, scale=4.0)
    np.testing.assert_allclose(g, reference(w, x, 4.0)[1], rtol=1e-12)
    assert loss.runs == 3
    step(w, x, scale=np.array(3.0))  # equal values: no retrace
    assert loss.runs == 3


def test_data_arrays_are_read_at_each_call_not_retraced(rng):
    """A float array outside argnums is an input of the jitted program
    without a gradient: new batches (or an array changed in place) reuse it."""
    loss = Counted()
    step = lagrad.jit(lagrad.value_and_grad(loss))
    w = rng.standard_normal(3)
    x = rng.standard_normal((4, 3))
    for batch in (x, rng.standard_normal((4, 3)), rng.standard_normal((4, 3)), x):
        v, g = step(w, batch)
        v_ref, g_ref = reference(w, batch)
        assert v == pytest.approx(v_ref, rel=1e-12)
        np.testing.assert_allclose(g, g_ref, rtol=1e-12)
    x[0, 0] += 1.0
    np.testing.assert_allclose(step(w, x)[1], reference(w, x)[1], rtol=1e-12)
    assert step.cache.traces == 1 and loss.runs == 1
    step(w, rng.standard_normal((5, 3)))  # a new shape retraces
    assert step.cache.traces == 2
    # grad, several argnums and pytrees of parameters too
    g = lagrad.jit(lagrad.grad(lambda p, x, y: lagrad.sum((x @ p[0] + p[1] - y) ** 2)))
    p = (np.ones(3), np.zeros(1))
    for _ in range(3):
        x, y = rng.standard_normal((4, 3)), rng.standard_normal(4)
        got = g(p, x, y)
        r = 2 * (x @ p[0] + p[1] - y)
        np.testing.assert_allclose(got[0], x.T @ r, rtol=1e-12)
        np.testing.assert_allclose(got[1], [r.sum()], rtol=1e-12)
    assert g.cache.traces == 1


def test_data_arrays_are_inputs_with_has_aux_options_and_info(rng):
    def loss(w, x):
        r = x @ w
        return lagrad.sum(r ** 2), {"r": r, "x": x}

    w = rng.standard_normal(3)
    for transform in (lagrad.value_and_grad(loss, has_aux=True, return_info=True),
                      lagrad.value_and_grad(loss, has_aux=True,
                                            solve_options={"adjoint_method": "splu"})):
        step = lagrad.jit(transform)
        for k in range(3):
            x = rng.standard_normal((4, 3))
            got = step(w, x)
            ((v, aux), g) = got[0] if isinstance(got[1], lagrad.DerivativeInfo) else got
            np.testing.assert_allclose(g, 2 * x.T @ (x @ w), rtol=1e-12)
            np.testing.assert_allclose(aux["r"], x @ w, rtol=1e-14)
            np.testing.assert_array_equal(aux["x"], x)
            if isinstance(got[1], lagrad.DerivativeInfo):
                assert got[1].traced == (k == 0)
        assert step.cache.traces == 1


def test_data_that_python_reads_stays_a_constant(rng):
    """Python control flow on a data array cannot be traced: it is baked in
    as before (keyed by value), with results that follow the data."""
    def f(w, x):
        return (w ** 2).sum() if float(np.asarray(x).sum()) > 0 else (w ** 3).sum()
    g = lagrad.jit(lagrad.grad(f))
    w = np.array([1.0, 2.0])
    np.testing.assert_allclose(g(w, np.ones(2)), 2 * w)
    np.testing.assert_allclose(g(w, -np.ones(2)), 3 * w ** 2)
    np.testing.assert_allclose(g(w, np.ones(2)), 2 * w)
    assert g.cache.traces == 2
    labels = np.array([0, 2])  # integers: a constant (an index), keyed by value
    h = lagrad.jit(lagrad.grad(lambda w, i: w[i].sum()))
    np.testing.assert_allclose(h(np.ones(3), labels), [1.0, 0.0, 1.0])
    np.testing.assert_allclose(h(np.ones(3), labels[::-1].copy()), [1.0, 0.0, 1.0])
    assert h.cache.traces == 2


def test_a_derivative_through_data_that_is_not_finite_is_not_asked_for():
    """d/dx sqrt(x) is infinite at x = 0; x is data, so its multiplier is
    nobody's business: the call gives what the uncached transform gives."""
    f = lambda w, x: lagrad.sum(w * lagrad.sqrt(x))  # noqa: E731
    step = lagrad.jit(lagrad.value_and_grad(f))
    for x in ([0.0, 1.0], [1.0, 4.0], [0.0, 9.0], [4.0, 9.0], [4.0, 16.0]):
        x = np.array(x)
        v, g = step(np.full(2, 2.0), x)
        v_ref, g_ref = lagrad.value_and_grad(f)(np.full(2, 2.0), x)
        assert v == v_ref
        np.testing.assert_array_equal(g, np.sqrt(x))


def test_python_control_flow_on_a_constant_is_keyed():
    def f(x, mode):
        return (x ** 2).sum() if mode == "square" else (x ** 3).sum()
    g = lagrad.jit(lagrad.grad(f))
    x = np.array([1.0, 2.0])
    np.testing.assert_allclose(g(x, "square"), 2 * x)
    np.testing.assert_allclose(g(x, "cube"), 3 * x ** 2)
    np.testing.assert_allclose(g(x, "square"), 2 * x)
    assert g.cache.traces == 2


def test_closures_are_baked_in_as_under_jax_jit():
    scale = np.array(2.0)
    g = lagrad.jit(lagrad.grad(lambda x: (scale * x ** 2).sum()))
    x = np.array([1.0, 3.0])
    np.testing.assert_allclose(g(x), 4 * x)
    scale[...] = 5.0  # the program holds a copy: the change is not seen
    np.testing.assert_allclose(g(x), 4 * x)
    g.cache.clear()  # a new trace reads the closure anew
    np.testing.assert_allclose(g(x), 10 * x)
    # without jit every call traces, so the closure is read each time
    np.testing.assert_allclose(lagrad.grad(lambda x: (scale * x ** 2).sum())(x), 10 * x)


def test_unhashable_constants_retrace_every_call():
    loss = Counted()
    g = lagrad.jit(lagrad.grad(lambda w, cfg: loss(w, cfg["x"]) * cfg["k"][0]))
    cfg = {"x": np.ones((2, 2)), "k": [1.0]}
    g(np.ones(2), cfg)
    g(np.ones(2), cfg)
    assert g.cache.traces == 1  # lists of floats and arrays are keyed by value

    class Box:  # unhashable: no __hash__ with __eq__
        __hash__ = None  # type: ignore[assignment]

        def __init__(self, c: float) -> None:
            self.c = c
    h = lagrad.jit(lagrad.grad(lambda w, box: box.c * (w ** 2).sum()))
    box = Box(2.0)
    np.testing.assert_allclose(h(np.ones(2), box), 4.0)
    box.c = 3.0
    np.testing.assert_allclose(h(np.ones(2), box), 6.0)
    assert h.cache.traces == 2


def test_jit_of_a_plain_function_and_transforms_of_it_share_one_cache(rng):
    loss = Counted()
    f = lagrad.jit(loss, static_argnums=1)
    x = rng.standard_normal((4, 3))
    w = rng.standard_normal(3)
    assert f(w, x) == pytest.approx(reference(w, x)[0], rel=1e-12)
    assert f(w + 1, x) == pytest.approx(reference(w + 1, x)[0], rel=1e-12)
    v, g = lagrad.value_and_grad(f)(w, x)
    np.testing.assert_allclose(g, reference(w, x)[1], rtol=1e-12)
    lagrad.value_and_grad(f)(w - 1, x)
    y, t = lagrad.jvp(f, (w, x), (np.ones(3), np.zeros((4, 3))))
    # f (plain), grad (argnums 0) and jvp (all arguments) are three keys
    assert f.cache.traces == 3 and loss.runs == 3
    np.testing.assert_allclose(t, reference(w, x)[1].sum(), rtol=1e-12)


def test_jitted_results_equal_uncached_results(rng):
    def f(p, x):
        h = lagrad.tanh(x @ p["w"] + p["b"])
        return {"s": h.sum(), "q": (h ** 2).mean(axis=0)}
    p = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    x = rng.standard_normal((4, 3))
    jac = lagrad.jit(lagrad.jacobian(f))
    for _ in range(2):
        got, want = jac(p, x), lagrad.jacobian(f)(p, x)
        for k in ("s", "q"):
            for leaf in ("w", "b"):
                np.testing.assert_allclose(got[k][leaf], want[k][leaf], rtol=1e-12)
        p = lagrad.tree.map(lambda a: a + 0.5, p)
    assert jac.cache.traces == 1


def test_cache_keeps_at_most_max_traces():
    g = lagrad.jit(lagrad.grad(lambda x, c: c * x), max_traces=2)
    for c in (1.0, 2.0, 3.0, 1.0):
        assert float(g(1.0, c)) == c
    assert len(g.cache) == 2 and g.cache.traces == 4


# ------------------------------------------------------------------ options

def _cyclic(a, adjoint_method=None):
    z = lagrad.fixed_point(lambda z, a: 0.5 * lagrad.cos(z) + a, 0.0, a,
                           adjoint_method=adjoint_method)
    return z * z


def _cyclic_reference(a: float) -> float:
    z = 0.0
    for _ in range(200):
        z = 0.5 * np.cos(z) + a
    return 2 * z / (1 + 0.5 * np.sin(z))  # d z^2/da by the implicit function theorem


def test_adjoint_method_reaches_the_solver_and_shows_in_the_info():
    g, info = lagrad.grad(_cyclic, solve_options={"adjoint_method": "gmres",
                                                  "adjoint_tol": 1e-12},
                          return_info=True)(1.0)
    assert float(g) == pytest.approx(_cyclic_reference(1.0), rel=1e-10)
    assert info.adjoint is not None and info.adjoint.method == "gmres"
    assert [b.method for b in info.adjoint.blocks] == ["gmres"]
    assert len(info.forward) == 1 and info.traced
    (v, g2), info2 = lagrad.value_and_grad(_cyclic, return_info=True)(1.0)
    assert [b.method for b in info2.adjoint.blocks] != ["gmres"]  # the default chose


def test_forward_options_reach_the_block_solve():
    _, info = lagrad.grad(_cyclic, solve_options={"method": "fixed_point", "tol": 1e-10},
                          return_info=True)(1.0)
    (result,) = info.forward.values()
    assert result.method == "fixed_point"
    with pytest.raises(lagrad.ConvergenceError):
        lagrad.grad(_cyclic, solve_options={"method": "fixed_point", "maxiter": 2})(1.0)


def test_a_blocks_declared_adjoint_method_is_used_by_the_default_sweep():
    def two_blocks(a):
        z1 = lagrad.fixed_point(lambda z, a: 0.5 * lagrad.cos(z) + a, 0.0, a,
                                adjoint_method="gmres")
        z2 = lagrad.fixed_point(lambda z, a: 0.3 * lagrad.sin(z) + a, 0.0, z1)
        return z2
    g, info = lagrad.grad(two_blocks, return_info=True)(1.0)
    methods = sorted(b.method for b in info.adjoint.blocks)
    assert "gmres" in methods and methods != ["gmres", "gmres"]
    h = 1e-6
    fd = (float(lagrad.jit(two_blocks)(1.0 + h)) - float(lagrad.jit(two_blocks)(1.0 - h)))
    assert float(g) == pytest.approx(fd / (2 * h), rel=1e-6)
    # the call's method wins over the block's
    _, info = lagrad.grad(two_blocks, solve_options={"adjoint_method": "splu"},
                          return_info=True)(1.0)
    assert [b.method for b in info.adjoint.blocks] == ["splu", "splu"]


def test_a_declared_adjoint_method_in_a_group_of_blocks():
    def many(a):
        return sum(lagrad.fixed_point(lambda z, a: 0.5 * lagrad.cos(z) + a, 0.0, a[k],
                                      adjoint_method="bicgstab") for k in range(5))
    a = np.linspace(0.5, 1.5, 5)
    g, info = lagrad.grad(many, return_info=True)(a)
    assert [b.method for b in info.adjoint.blocks] == ["bicgstab"] * 5
    want = [_cyclic_reference(x) / 2 / _fixed(x) for x in a]  # dz/da
    np.testing.assert_allclose(g, want, rtol=1e-9)


def _fixed(a: float) -> float:
    z = 0.0
    for _ in range(200):
        z = 0.5 * np.cos(z) + a
    return z


def test_jvp_and_jacobian_take_the_options():
    y, t, info = lagrad.jvp(_cyclic, (1.0,), (1.0,),
                            solve_options={"adjoint_method": "lgmres"}, return_info=True)
    assert float(t) == pytest.approx(_cyclic_reference(1.0), rel=1e-10)
    assert info.tangent.method == "lgmres" and info.adjoint is None
    jac = lagrad.jacfwd(_cyclic, solve_options={"adjoint_method": "dense"})(1.0)
    assert float(jac) == pytest.approx(_cyclic_reference(1.0), rel=1e-10)


@pytest.mark.parametrize("options, match", [
    ({"adjoint_method": "nope"}, "unknown method"),
    ({"method": "nope"}, "unknown forward method"),
    ({"tol": -1.0}, "tol"),
    ({"adjoint_tol": -1.0}, "tol"),
    ({"maxiter": 0}, "maxiter"),
    ({"colour": 1}, "unknown options"),
    ({"adjoint_method": "spsolve", "adjoint_tol": 1e-3}, "takes no options"),
])
def test_bad_options_raise_where_they_are_given(options, match):
    with pytest.raises(lagrad.OptionError, match=match):
        lagrad.grad(_cyclic, solve_options=options)  # not called: raised here


def test_bad_block_options_raise_in_fixed_point():
    with pytest.raises(lagrad.OptionError, match="adjoint method"):
        lagrad.grad(lambda a: _cyclic(a, "nope"))(1.0)
    with pytest.raises(lagrad.OptionError, match="tol"):
        lagrad.fixed_point(lambda z, a: 0.5 * z + a, 0.0, 1.0, adjoint_tol=-1.0)


def test_the_block_method_names_match_the_table():
    """Every exact block method can be declared; the truncated ones are chosen
    with backward= instead (options.BACKWARD_MODES)."""
    assert set(BLOCK_LINEAR_METHODS) == set(BLOCK_METHODS) - set(BACKWARD_MODES)


def test_jit_keeps_options_and_info():
    step = lagrad.jit(lagrad.value_and_grad(_cyclic, solve_options={"adjoint_method": "gmres"},
                                            return_info=True))
    (_, g1), info1 = step(1.0)
    (_, g2), info2 = step(1.2)
    assert info1.traced and not info2.traced and step.cache.traces == 1
    assert info2.adjoint.method == "gmres"
    assert float(g2) == pytest.approx(_cyclic_reference(1.2), rel=1e-10)
