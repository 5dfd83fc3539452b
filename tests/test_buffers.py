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


def test_dropped_solution_gives_its_vectors_back():
    prog = _program()
    x = np.linspace(-1, 1, 50)
    prog.solve(x).grad()
    gc.collect()
    pool = pool_of(compile_program(prog))
    assert len(pool.free) == 2  # z and lambda
    before = {id(v) for v in pool.free}
    sol = prog.solve(x)
    assert id(sol.z) in before  # taken from the pool, not allocated


@pytest.mark.parametrize("method", ["auto", "gmres", "splu"])
def test_a_cyclic_solution_gives_its_vectors_back_without_the_collector(method: str):
    """Nothing a block solve leaves behind (no reference cycle) holds z or lambda:
    the vectors come back as soon as the Solution is dropped."""
    p = lagrad.Program()
    x = p.input("x", 3)
    z = p.unknown("z", 3)
    p.define(z, 0.5 * lagrad.tanh(z) + x)
    p.output(lagrad.sum(z * z))
    pool = pool_of(compile_program(p))
    gc.disable()
    try:
        p.solve(np.ones(3)).grad(method=method)
        sol = p.solve(np.ones(3))
        sol.grad()
        owned = {id(sol.z), id(sol.multipliers().vector)}
        del sol
        # z and lambda come back (and the sweep's two scratch vectors, also pooled)
        assert owned <= {id(v) for v in pool.free}
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


def test_pool_take_zeros_and_size_checks():
    pool = Pool(4)

    class Owner:
        pass

    owner = Owner()
    owner.vec = pool.take()
    owner.vec[:] = 7.0
    pool.recycle(owner, owner.vec)
    pool.recycle(owner, np.empty(5))  # wrong size: ignored
    del owner
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
    p = lagrad.Program("deq")
    x = p.input("x", 3)
    w = p.input("W", (30, 30))
    z = p.unknown("z", 30)
    p.define(z, lagrad.tanh(0.1 * (w @ z) + lagrad.sum(x)))
    p.output(lagrad.sum(z * z))
    sol = p.solve(np.ones(3), np.ones((30, 30)) / 30)
    start = compile_program(p).index["W"].start
    for vec in (sol.z, sol.multipliers().vector):
        assert (vec.ctypes.data + 8 * start) % 64 == 0


def test_a_view_of_a_recycled_vector_keeps_it_out_of_the_pool():
    pool = Pool(8, aligned_at=3)

    class Owner:
        pass

    owner = Owner()
    owner.vec = pool.take()
    owner.vec[:] = 1.0
    kept = owner.vec[2:5]  # refers to the vector, not to the array under it
    pool.recycle(owner, owner.vec)
    del owner
    gc.collect()
    assert pool.free == []
    assert kept.tolist() == [1.0] * 3


def test_a_pickled_pool_is_empty():
    pool = Pool(8, aligned_at=3)
    pool.free.append(pool.take())
    again = pickle.loads(pickle.dumps(pool))
    assert (again.size, again.aligned_at, again.free) == (8, 3, [])
    assert (again.take().ctypes.data + 24) % 64 == 0
