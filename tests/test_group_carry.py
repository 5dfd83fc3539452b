"""Running sums carried along a group of same-structure blocks, left out of
its Newton solve (solve/groupcarry.py): which carries qualify, and values,
multipliers, gradients and tangents against the whole-system solve, the
block-by-block path and finite differences."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import lagrad
from lagrad.bench.blocks import BlockChain, BlockIndependent
from lagrad.compile import compile_program
from lagrad.compile.groups import CyclicGroup, grouped_steps
from lagrad.solve.groupcarry import core_of, prefix_sums, suffix_sums


def the_group(program: lagrad.Program) -> CyclicGroup:
    [group] = [s for s in grouped_steps(compile_program(program))
               if isinstance(s, CyclicGroup)]
    return group


def nested_sums(n_blocks: int, seed: int = 0) -> tuple[Any, ...]:
    """A chain keeping total_k = total_{k-1} + sum(z_k^2) and r_k = r_{k-1} +
    0.1 total_k: r reads total, so total is not a running sum left out of
    Newton (only r is)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n_blocks, 2, 2))
    a *= (0.4 / np.linalg.norm(a, 2, axis=(1, 2)))[:, None, None]
    b = 0.1 * rng.standard_normal((n_blocks, 2))

    def body(z: Any, prev: Any, pk: Any, ak: Any, bk: Any) -> Any:
        return lagrad.tanh(ak @ z + pk * lagrad.sum(prev) + bk)

    def fn(x: Any, p: Any) -> Any:
        z, total, r = x, 0.0, 0.0
        for k in range(n_blocks):
            z = lagrad.fixed_point(body, np.zeros(2), z, p[k], a[k], b[k], name=f"z{k}")
            total = total + lagrad.sum(z * z)
            r = r + 0.1 * total
        return total + r
    x = rng.standard_normal(2)
    p = rng.uniform(-0.3, 0.3, n_blocks)
    return lagrad.trace(fn, x, p), x, p


def test_running_sums_leave_the_core() -> None:
    chain = the_group(BlockChain(12, seed=1).trace())
    core = core_of(chain)
    assert chain.n_u == 4 and core.n == 3 and core.reach == 1  # z; the total left out
    independent = the_group(BlockIndependent(12, seed=1).trace())
    core = core_of(independent)
    assert independent.n_u == 4 and core.n == 3 and core.reach == 0 and not core.chained
    assert not all(core.needed)  # the total's terms run after Newton


def test_a_sum_another_sum_reads_stays_in_the_core() -> None:
    program, x, p = nested_sums(9)
    group = the_group(program)
    assert group.n_u == group.n_unknowns + 2  # total and r carried
    assert core_of(group).n == group.n_unknowns + 1  # r left out, total solved
    sol = program.solve(x, p)
    for got, want in zip(sol.grad(), sol.grad(method="spsolve")):
        assert np.allclose(got, want, rtol=1e-10, atol=1e-13)
    one_by_one = program.solve(x, p, method="fixed_point")
    assert np.allclose(sol.z, one_by_one.z, rtol=1e-12, atol=1e-12)
    rng = np.random.default_rng(5)
    direction = (rng.standard_normal(2), rng.standard_normal(9))
    got, want = sol.tangent(direction), sol.tangent(direction, method="spsolve")
    for v in program.variables:
        assert np.allclose(got[v], want[v], rtol=1e-10, atol=1e-12), v.name


@pytest.mark.parametrize("problem", [BlockChain, BlockIndependent])
def test_running_sum_values_and_multipliers_match_the_whole_system(problem: Any) -> None:
    bench = problem(15, seed=3)
    program = bench.trace()
    sol = program.solve(*bench.inputs)
    one_by_one = program.solve(*bench.inputs, method="fixed_point")
    assert np.allclose(sol.z, one_by_one.z, rtol=1e-12, atol=1e-12)
    got = sol.multipliers()
    want = program.solve(*bench.inputs).multipliers(method="spsolve")
    for v in program.variables:
        assert np.allclose(got[v], want[v], rtol=1e-10, atol=1e-12), v.name


def test_running_sum_tangent_matches_the_whole_system() -> None:
    bench = BlockIndependent(10, seed=2)
    program = bench.trace()
    sol = program.solve(*bench.inputs)
    rng = np.random.default_rng(4)
    direction = (0.7, rng.standard_normal(bench.b.shape))
    got = sol.tangent(direction)
    want = sol.tangent(direction, method="spsolve")
    for v in program.variables:
        assert np.allclose(got[v], want[v], rtol=1e-10, atol=1e-12), v.name


def test_gradients_reuse_the_forward_map_and_stay_exact() -> None:
    bench = BlockChain(20, seed=8)
    program = bench.trace()
    sol = program.solve(*bench.inputs)
    first = sol.grad()
    again = sol.grad()
    floor = bench.floor()
    for a, b, f in zip(first, again, floor):
        assert np.array_equal(a, b)
        assert np.allclose(a, f, rtol=1e-10, atol=1e-12)


def test_a_running_sum_that_overflows_raises() -> None:
    def body(z: Any, x: Any, w: Any) -> Any:
        return 0.5 * lagrad.tanh(z) + w * x

    def fn(x: Any) -> Any:
        total = 0.0
        for k in range(8):
            z = lagrad.fixed_point(body, 0.0, x, float(k + 1), name=f"z{k}")
            total = total + lagrad.exp(300.0 * z)
        return total
    program = lagrad.trace(fn, 0.1)
    assert core_of(the_group(program)).n == 1
    assert np.isfinite(program.solve(0.1).output)
    with pytest.raises(lagrad.LagradError, match="not finite"):
        program.solve(1.0)


def test_prefix_and_suffix_sums() -> None:
    v = np.arange(1.0, 6.0)[:, None]
    assert np.array_equal(prefix_sums(v)[:, 0], [1, 3, 6, 10, 15])
    assert np.array_equal(suffix_sums(v)[:, 0], [15, 14, 12, 9, 5])


@pytest.mark.parametrize("pattern", ["same", "distinct", "repeated"])
def test_outer_cotangents_add_like_add_at(pattern: str) -> None:
    from lagrad.solve.grouplinear import add_outer

    group = the_group(BlockChain(6, seed=0).trace())
    rng = np.random.default_rng(2)
    b = 7
    pos = {"same": np.tile([3, 4], (b, 1)),
           "distinct": np.arange(2 * b).reshape(b, 2)[::-1].copy(),
           "repeated": rng.integers(0, 5, (b, 2))}[pattern]
    ct = rng.standard_normal((b, 2))
    want = rng.standard_normal(20)
    got = want.copy()
    np.add.at(want, pos, ct)
    add_outer(group, ("test", pattern), got, pos, ct)
    assert group.cache[("outer kind", ("test", pattern))] == pattern
    assert np.allclose(got, want, rtol=1e-14, atol=1e-14)
