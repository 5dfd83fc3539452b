"""In-place cotangent accumulation for matmul against the plain VJP."""

import numpy as np
import pytest

from lagrad.ir import primitives as P
from lagrad.ir.accumulate import matmul_vjp_add

SHAPES = [((5, 4), (4, 3)), ((5, 4), (4,)), ((4,), (4, 3)), ((4,), (4,)),
          ((1, 4), (4, 1)), ((7, 4), (4, 1)), ((1, 4), (4, 6)), ((30, 20), (20, 1))]


@pytest.mark.parametrize("sa, sb", SHAPES)
@pytest.mark.parametrize("k", [0, 1])
def test_adds_the_vjp_in_place(sa, sb, k):
    rng = np.random.default_rng(len(sa) * 10 + len(sb) + k)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    g = rng.standard_normal(np.shape(a @ b))
    shape = (sa, sb)[k]
    size = int(np.prod(shape))
    buf = rng.standard_normal(size + 4)  # the target is a slice of a longer vector
    out = buf[2:2 + size].reshape(shape)
    expected = out + P.matmul.pullback(k, g, a @ b, [a, b], {})
    edges = buf[[0, 1, -2, -1]].copy()
    assert matmul_vjp_add(k, out, g, a, b)
    np.testing.assert_allclose(out, expected, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(buf[[0, 1, -2, -1]], edges)  # nothing outside touched


def test_declines_what_blas_cannot_take():
    a = np.ones((4, 3))[:, ::2]  # not contiguous
    b = np.ones((2, 2))
    out = np.zeros((4, 2))
    assert not matmul_vjp_add(0, out, np.ones((4, 2)), a, b)
    assert not matmul_vjp_add(0, out, np.ones((4, 2)), np.ones((4, 2), np.float32), b)
    assert (out == 0).all()


def test_pullback_add_falls_back_to_the_vjp():
    a = np.arange(6.0).reshape(3, 2)[:, ::-1]  # negative strides: declined, then added
    b = np.ones((2, 2))
    g = np.ones((3, 2))
    out = np.ones((3, 2))
    P.matmul.pullback_add(0, out, g, a @ b, [a, b], {})
    np.testing.assert_array_equal(out, 1 + g @ b.T)


@pytest.mark.parametrize("sa, sb", SHAPES)
@pytest.mark.parametrize("k", [0, 1])
def test_beta_zero_writes_the_vjp_over_nan(sa, sb, k):
    """beta=0 (pullback_set) must not read the target, even where it holds NaN."""
    rng = np.random.default_rng(len(sa) * 10 + len(sb) + k)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    g = rng.standard_normal(np.shape(a @ b))
    out = np.full((sa, sb)[k], np.nan)
    assert matmul_vjp_add(k, out, g, a, b, beta=0.0)
    np.testing.assert_allclose(out, P.matmul.pullback(k, g, a @ b, [a, b], {}),
                               rtol=1e-13, atol=1e-13)
    again = np.full((sa, sb)[k], np.nan)
    P.matmul.pullback_set(k, again, g, a @ b, [a, b], {})
    np.testing.assert_array_equal(again, out)


@pytest.mark.parametrize("prim, args", [
    (P.tanh, [np.linspace(-1, 1, 6).reshape(2, 3)]),
    (P.add, [np.ones((2, 3)), np.arange(3.0)]),
    (P.mul, [np.arange(6.0).reshape(2, 3), np.arange(3.0) - 1]),
    (P.sum_, [np.arange(6.0).reshape(2, 3)]),
])
def test_pullback_set_equals_pullback(prim, args):
    params = {"axis": (1,), "keepdims": False} if prim is P.sum_ else {}
    ans = prim.value(*args, **params)
    g = np.random.default_rng(0).standard_normal(np.shape(ans))
    for k in range(len(args)):
        out = np.full(np.shape(args[k]), np.nan)
        prim.pullback_set(k, out, g, ans, args, params)
        np.testing.assert_array_equal(out, prim.pullback(k, g, ans, args, params))


@pytest.mark.parametrize("sa, sb", SHAPES)
@pytest.mark.parametrize("k", [0, 1])
@pytest.mark.parametrize("way", ["multiply", "dgemm", "einsum", None])
def test_large_outer_products_any_way(sa, sb, k, way, monkeypatch):
    """From OUTER_TIMED entries an outer product written once goes through
    numpy's multiply, dgemm or einsum (None: the timed choice, a fresh one
    here): the same values, nothing outside touched."""
    from lagrad.ir import accumulate
    monkeypatch.setattr(accumulate, "OUTER_TIMED", 0)
    monkeypatch.setattr(accumulate, "OUTER_WAY", way)
    monkeypatch.setattr(accumulate, "OUTER_WAYS", {})
    rng = np.random.default_rng(len(sa) * 10 + len(sb) + k + 100)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    g = rng.standard_normal(np.shape(a @ b))
    size = int(np.prod((sa, sb)[k]))
    buf = np.full(size + 4, np.nan)
    out = buf[2:2 + size].reshape((sa, sb)[k])
    assert matmul_vjp_add(k, out, g, a, b, beta=0.0)
    np.testing.assert_allclose(out, P.matmul.pullback(k, g, a @ b, [a, b], {}),
                               rtol=1e-13, atol=1e-13)
    assert np.isnan(buf[[0, 1, -2, -1]]).all()


def test_the_ways_of_an_outer_product_agree_bitwise(monkeypatch):
    """One rounded product per entry every way: the timed choice cannot
    change a gradient."""
    from lagrad.ir import accumulate
    rng = np.random.default_rng(3)
    u, v = rng.standard_normal(400), rng.standard_normal(300)
    for way in accumulate.OuterWays.WAYS:
        monkeypatch.setattr(accumulate, "OUTER_WAY", way)
        out = np.full((400, 300), np.nan)
        accumulate._write_outer(u, v, out)
        np.testing.assert_array_equal(out, np.outer(u, v), err_msg=way)


def test_the_timed_choice_takes_turns_then_keeps_the_fastest(monkeypatch):
    from lagrad.ir import accumulate
    monkeypatch.setattr(accumulate, "OUTER_WAY", None)
    ways = accumulate.OuterWays()
    seconds = {"multiply": 1.0, "dgemm": 0.7, "einsum": 0.5}
    picked = []
    for k in range(accumulate.OUTER_TRIALS):
        way = ways.pick()
        picked.append(way)
        ways.record(way, seconds[way] + 0.01 * k)
    assert picked[:6] == ["multiply", "dgemm", "einsum"] * 2
    assert ways.kept == "einsum" and ways.pick() == "einsum"
    ways.record("multiply", 0.0)  # kept: no more timing
    assert ways.kept == "einsum" and len(ways.seconds["multiply"]) == 3
    monkeypatch.setattr(accumulate, "OUTER_WAY", "multiply")  # a forced way wins
    assert ways.pick() == "multiply"


def test_each_size_class_is_timed_apart(monkeypatch):
    """A product of another size class is timed anew, not written the way
    kept for the first: what is fastest in cache may not be out of it."""
    from lagrad.ir import accumulate
    monkeypatch.setattr(accumulate, "OUTER_WAY", None)
    monkeypatch.setattr(accumulate, "OUTER_TIMED", 1000)
    monkeypatch.setattr(accumulate, "OUTER_WAYS", {})
    rng = np.random.default_rng(5)
    for m in (40, 200):
        u, v = rng.standard_normal(m), rng.standard_normal(50)
        for _ in range(accumulate.OUTER_TRIALS):
            out = np.empty((m, 50))
            accumulate._write_outer(u, v, out)
            np.testing.assert_array_equal(out, np.outer(u, v))
    small, large = (accumulate.OUTER_WAYS[(m * 50).bit_length()] for m in (40, 200))
    assert small is not large
    for ways in (small, large):
        assert ways.kept in accumulate.OuterWays.WAYS
        assert all(len(s) == accumulate.OUTER_TRIALS // 3 for s in ways.seconds.values())


def test_a_deq_layer_times_every_way_and_keeps_one(monkeypatch):
    """End to end: a DEQ layer's dL/dW (above OUTER_TIMED) is timed every way
    and one is kept; the gradient is the same whichever way wrote it."""
    from lagrad.examples import deq
    from lagrad.ir import accumulate
    monkeypatch.setattr(accumulate, "OUTER_WAY", None)
    monkeypatch.setattr(accumulate, "OUTER_WAYS", {})
    ex = deq(n=320, d=4, seed=2)
    grads = [ex.solve().grad() for _ in range(accumulate.OUTER_TRIALS + 1)]
    [ways] = accumulate.OUTER_WAYS.values()
    assert ways.kept in accumulate.OuterWays.WAYS
    assert all(len(v) == accumulate.OUTER_TRIALS // 3 for v in ways.seconds.values())
    for g in grads[1:]:
        for a, b in zip(g, grads[0]):
            np.testing.assert_array_equal(a, b)


def test_the_bound_vector_cotangent_writes_the_vjp():
    """matmul_vjp_bound: d b = a^T g for a vector b, written once by one bound
    numpy call that reads the operands' values when called; None otherwise."""
    from lagrad.ir.accumulate import matmul_vjp_bound
    rng = np.random.default_rng(7)
    a, b, g = rng.standard_normal((6, 4)), rng.standard_normal(4), rng.standard_normal(6)
    buf = np.full(8, np.nan)
    out = buf[2:6]
    call = matmul_vjp_bound(1, out, g, a, b, beta=0.0)
    assert call is not None
    g[:] = rng.standard_normal(6)  # bound to the arrays, not to their values
    call()
    np.testing.assert_allclose(out, P.matmul.pullback(1, g, a @ b, [a, b], {}), rtol=1e-13)
    assert np.isnan(buf[[0, 1, 6, 7]]).all()
    assert matmul_vjp_bound(1, out, g, a, b) is None  # adds: the general rule
    assert matmul_vjp_bound(0, np.empty((6, 4)), g, a, b, beta=0.0) is None
    assert matmul_vjp_bound(1, out, g, np.asfortranarray(a), b, beta=0.0) is None
    assert matmul_vjp_bound(1, np.empty((4, 1)), g.reshape(6, 1), a, b.reshape(4, 1),
                            beta=0.0) is None
