"""Recycled program-sized vectors: reuse must never change what a caller holds."""

import gc
import pickle

import numpy as np
import pytest

import lagrad
from lagrad.compile import compile_program
from lagrad.solve.buffers import Pool, aligned_empty, pool_of


def _program() -> lagrad.Program:
    return lagrad.trace(lambda x: lagrad.sum(lagrad.tanh(x) ** 2), np.ones(50))


def _memory(vec: np.ndarray) -> np.ndarray:
    """The array under a pooled vector (which sees it through a memoryview)."""
    return vec.base.obj


def test_dropped_solution_gives_its_vectors_back():
    prog = _program()
    x = np.linspace(-1, 1, 50)
    prog.solve(x).grad()
    gc.collect()
    pool = pool_of(compile_program(prog))
    assert len(pool.free) == 2  # z and lambda
    before = {id(m.raw) for m in pool.free}
    sol = prog.solve(x)
    assert id(_memory(sol.z)) in before  # taken from the pool, not allocated


def _cyclic() -> lagrad.Program:
    p = lagrad.Program()
    x = p.input("x", 3)
    z = p.unknown("z", 3)
    p.define(z, 0.5 * lagrad.tanh(z) + x)
    p.output(lagrad.sum(z * z))
    return p


@pytest.mark.parametrize("method", ["auto", "gmres", "splu"])
def test_a_cyclic_solution_gives_its_vectors_back_without_the_collector(method: str):
    """Nothing a block solve leaves behind (no reference cycle) holds z or lambda:
    the vectors come back as soon as the Solution is dropped."""
    p = _cyclic()
    pool = pool_of(compile_program(p))
    gc.disable()
    try:
        p.solve(np.ones(3)).grad(method=method)
        sol = p.solve(np.ones(3))
        sol.grad()
        owned = {id(_memory(sol.z)), id(_memory(sol.multipliers().vector))}
        del sol
        # z and lambda come back (and the sweep's two scratch vectors, also pooled)
        assert owned <= {id(m.raw) for m in pool.free}
        assert len(pool.free) == 4
    finally:
        gc.enable()


def _deq(n: int = 30) -> lagrad.Program:
    p = lagrad.Program("deq")
    x = p.input("x", 3)
    w = p.input("W", (n, n))
    z = p.unknown("z", n)
    p.define(z, lagrad.tanh(0.1 * (w @ z) + lagrad.sum(x)))
    p.output(lagrad.sum(z * z))
    return p


def test_the_multipliers_come_back_once_the_gradient_viewing_them_goes():
    p = _deq(60)  # its inputs are nearly all of lambda: the gradient views it
    pool = pool_of(compile_program(p))
    w = np.ones((60, 60)) / 60
    gc.disable()
    try:
        grad = p.solve(np.ones(3), w).grad()  # the Solution is gone, its gradient is not
        assert grad[1].base is not None and len(pool.free) == 3  # z, two scratch vectors
        expected = grad[1].copy()
        p.solve(2 * np.ones(3), w).grad()  # must not write into what grad views
        np.testing.assert_array_equal(grad[1], expected)
        del grad
        assert len(pool.free) == 4
    finally:
        gc.enable()


def test_vectors_still_referenced_are_never_reused():
    prog = _program()
    x = np.linspace(-1, 1, 50)
    sol = prog.solve(x)
    z_view = sol.z[:10]  # a view keeps the buffer
    grad = sol.grad()
    lam = sol.multipliers().vector  # the caller keeps lambda itself
    kept_z, kept_lam = z_view.copy(), lam.copy()
    del sol
    gc.collect()
    for _ in range(3):  # later solves at other points must not write into them
        prog.solve(-2 * x).grad()
    np.testing.assert_array_equal(z_view, kept_z)
    np.testing.assert_array_equal(lam, kept_lam)
    np.testing.assert_allclose(grad, 2 * np.tanh(x) * (1 - np.tanh(x) ** 2), rtol=1e-14)


def test_recycled_buffers_give_the_same_results():
    prog = _program()
    xs = [np.linspace(-1, 1, 50) * k for k in (1.0, 0.5, -3.0)]
    fresh = [prog.solve(x).grad() for x in xs]  # each solution dropped at once
    again = [prog.solve(x).grad() for x in xs]
    for a, b, x in zip(fresh, again, xs):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, 2 * np.tanh(x) * (1 - np.tanh(x) ** 2), rtol=1e-14)


def test_pool_take_and_zeros():
    pool = Pool(4)
    vec = pool.take()
    vec[:] = 7.0
    del vec
    gc.collect()
    assert len(pool.free) == 1
    assert pool.zeros().tolist() == [0.0] * 4


@pytest.mark.parametrize("at", [0, 1, 7, 50])
def test_aligned_empty_puts_the_entry_on_a_cache_line(at):
    vec = aligned_empty(1000, at)
    assert vec.shape == (1000,) and vec.dtype == np.float64 and vec.flags.writeable
    assert (vec.ctypes.data + 8 * at) % 64 == 0
    view = vec[at:at + 10]
    assert view.base is vec  # a view keeps the vector itself referenced


def test_the_largest_computed_variable_of_an_acyclic_program_is_aligned():
    p = lagrad.Program("aligned")
    x = p.input("x", 3)
    w = p.input("W", (41, 41))  # 1681 entries: the other start is not aligned with it
    wide = lagrad.concatenate([x] * 14)  # 42 entries: the largest computed variable
    p.output(lagrad.sum(w @ lagrad.tanh(wide[:41])))
    sol = p.solve(np.ones(3), np.ones((41, 41)))
    start = compile_program(p).index.slice(wide.index).start
    for vec in (sol.z, sol.multipliers().vector):
        assert (vec.ctypes.data + 8 * start) % 64 == 0


def test_the_largest_input_of_a_cyclic_program_is_aligned():
    # the multipliers' slice of W receives dL/dW, the largest write of the solve
    p = _deq()
    sol = p.solve(np.ones(3), np.ones((30, 30)) / 30)
    start = compile_program(p).index["W"].start
    for vec in (sol.z, sol.multipliers().vector):
        assert (vec.ctypes.data + 8 * start) % 64 == 0


def test_a_view_of_a_pooled_vector_keeps_it_out_of_the_pool():
    pool = Pool(8, aligned_at=3)
    vec = pool.take()
    vec[:] = 1.0
    kept = vec[2:5]  # refers to the vector, not to the array under it
    del vec
    gc.collect()
    assert pool.free == []
    again = pool.take()
    again[:] = 2.0
    assert kept.tolist() == [1.0] * 3
    del kept
    gc.collect()
    assert len(pool.free) == 1


def test_a_pickled_pool_is_empty():
    pool = Pool(8, aligned_at=3)
    held = pool.take()
    del held
    assert len(pool.free) == 1
    again = pickle.loads(pickle.dumps(pool))
    assert (again.size, again.aligned_at, again.free) == (8, 3, [])
    assert (again.take().ctypes.data + 24) % 64 == 0
