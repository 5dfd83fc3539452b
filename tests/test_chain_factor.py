"""The pieces of the batched Newton solve of a group of blocks: the vectorized
block LU and the band of L (solve/chain.py), the seeded Jacobian sweep
(solve/groupjac.py) and the Newton policy (solve/groupnewton.py), against
dense numpy and finite differences."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import lagrad
from lagrad.bench.blocks import BlockChain
from lagrad.compile import compile_program
from lagrad.compile.groups import CyclicGroup, grouped_steps
from lagrad.solve.chain import BlockLU, Coupling, band_factorize
from lagrad.solve.grouped import GroupMap
from lagrad.solve.groupjac import group_jacobian


def blocks(b: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((b, n, n)) + 3 * np.eye(n)
    m[::2] = m[::2, ::-1]  # small diagonals: rows must be swapped
    return m


@pytest.mark.parametrize("n", [1, 3, 4])
def test_block_lu_solves_like_numpy(n: int) -> None:
    m = blocks(20, n, seed=n)
    lu = BlockLU(m)
    assert lu.perm is not None or n == 1
    rng = np.random.default_rng(1)
    r = rng.standard_normal((n, 20))
    want = np.linalg.solve(m, r.T[:, :, None])[:, :, 0].T
    assert np.allclose(lu.solve(r), want, rtol=1e-12, atol=1e-12)
    want_t = np.linalg.solve(np.swapaxes(m, 1, 2), r.T[:, :, None])[:, :, 0].T
    assert np.allclose(lu.solve(r, transposed=True), want_t, rtol=1e-12, atol=1e-12)
    many = rng.standard_normal((n, 5, 20))
    got = lu.solve(many)
    for j in range(5):
        assert np.allclose(got[:, j], lu.solve(many[:, j]), rtol=1e-13, atol=1e-13)


def test_block_lu_overwrites_only_when_asked() -> None:
    """An M given as a view of an (n, n, B) array is factorized in place only
    with overwrite=True; both solve like numpy."""
    m = blocks(12, 3, seed=4)
    r = np.random.default_rng(2).standard_normal((3, 12))
    want = np.linalg.solve(m, r.T[:, :, None])[:, :, 0].T
    a = np.ascontiguousarray(np.moveaxis(m, 0, -1))
    kept = BlockLU(np.moveaxis(a, -1, 0))
    assert np.array_equal(np.moveaxis(a, -1, 0), m)
    mine = BlockLU(np.moveaxis(a, -1, 0), overwrite=True)
    assert mine.a is a or np.shares_memory(mine.a, a)
    assert not np.array_equal(np.moveaxis(a, -1, 0), m)
    for lu in (kept, mine):
        assert np.allclose(lu.solve(r), want, rtol=1e-12, atol=1e-12)


def test_block_lu_names_a_singular_element() -> None:
    m = blocks(6, 3, seed=2)
    m[4] = 0.0
    assert band_factorize(m, [], 1, {}) == 4


@pytest.mark.parametrize("reach", [1, 2])
def test_band_factor_solves_the_chain_matrix(reach: int) -> None:
    b, n = 15, 3
    rng = np.random.default_rng(reach)
    m = blocks(b, n, seed=7)
    coupling = []
    for d in range(1, reach + 1):
        k = np.arange(d, b)
        for col in range(n):
            coupling.append(Coupling(k, k - d, col, 0.3 * rng.standard_normal((k.size, n)),
                                     (d, col)))
    dense = np.zeros((b * n, b * n))
    for e in range(b):
        dense[e * n:(e + 1) * n, e * n:(e + 1) * n] = m[e]
    for c in coupling:
        for t, k in enumerate(c.k):
            dense[k * n:(k + 1) * n, c.source[t] * n + c.col] -= c.values[t]
    factor = band_factorize(m, coupling, reach, {})
    assert not isinstance(factor, int)
    r = rng.standard_normal((b, n))
    assert np.allclose(factor.solve(r, False).ravel(), np.linalg.solve(dense, r.ravel()),
                       rtol=1e-10, atol=1e-12)
    assert np.allclose(factor.solve(r, True).ravel(), np.linalg.solve(dense.T, r.ravel()),
                       rtol=1e-10, atol=1e-12)


def chain_map(n_blocks: int) -> tuple[CyclicGroup, GroupMap, np.ndarray]:
    chain = BlockChain(n_blocks, seed=5)
    program = chain.trace()
    sol = program.solve(chain.x, chain.c)
    [group] = [s for s in grouped_steps(compile_program(program))
               if isinstance(s, CyclicGroup)]
    gm = GroupMap(group, sol.z.copy())
    rng = np.random.default_rng(3)
    u = np.asfortranarray(gm.zl[:, group.n_w:] + 0.1 * rng.standard_normal((group.size,
                                                                           group.n_u)))
    return group, gm, u


def test_seeded_jacobian_matches_finite_differences() -> None:
    group, gm, u = chain_map(9)
    gm(u)
    d, coupling = group_jacobian(gm)
    b, n = group.size, group.n_u
    full = np.zeros((b * n, b * n))  # dG/dU of the whole region, by the sweep
    for k in range(b):
        full[k * n:(k + 1) * n, k * n:(k + 1) * n] = d[k]
    for c in coupling:
        for t, k in enumerate(c.k):
            full[k * n:(k + 1) * n, c.source[t] * n + c.col] += c.values[t]
    eps = 1e-6
    fd = np.zeros_like(full)
    for j in range(b * n):
        e = np.zeros(b * n)
        e[j] = eps
        plus = gm(np.asfortranarray(u + e.reshape(b, n)))
        minus = gm(np.asfortranarray(u - e.reshape(b, n)))
        fd[:, j] = ((plus - minus) / (2 * eps)).ravel()
    assert np.allclose(full, fd, rtol=1e-6, atol=1e-8)


def test_chain_newton_factorizes_twice_and_stays_exact() -> None:
    chain = BlockChain(200, seed=6)
    sol = chain.trace().solve(chain.x, chain.c)
    [result] = [d for d in sol.diagnostics.values() if "blocks" in d.extra]
    assert result.extra["factorizations"] <= 3
    gx, gc = sol.grad()
    fx, fc = chain.floor()
    assert np.allclose(gx, fx, rtol=1e-10, atol=1e-12)
    assert np.allclose(gc, fc, rtol=1e-10, atol=1e-12)


def test_named_newton_skips_the_warmup() -> None:
    chain = BlockChain(12, seed=1)
    program = chain.trace()
    auto = program.solve(chain.x, chain.c)
    newton = program.solve(chain.x, chain.c, method="newton")
    [a] = [d for d in auto.diagnostics.values() if "blocks" in d.extra]
    [b] = [d for d in newton.diagnostics.values() if "blocks" in d.extra]
    assert b.residuals[0] > a.residuals[0]  # auto started from a few fixed-point sweeps
    assert np.allclose(auto.z, newton.z, rtol=0, atol=1e-11)


def test_warmup_does_not_follow_a_diverging_map() -> None:
    # z = z + (z^2 - v) / 4: the fixed-point sweep from 2 diverges, Newton converges
    v = np.linspace(1.0, 2.0, 8)

    def body(z: Any, prev: Any, vk: Any) -> Any:
        return z - 0.25 * (z * z - vk) + 0.0 * prev

    def fn(x: Any) -> Any:
        z, total = x, 0.0
        for k in range(8):
            z = lagrad.fixed_point(body, np.full(1, 3.0), z, v[k])
            total = total + lagrad.sum(z)
        return total
    program = lagrad.trace(fn, np.ones(1))
    sol = program.solve(np.ones(1))
    assert np.isclose(float(sol.output), float(np.sqrt(v).sum()), rtol=1e-10)
