"""Cyclic blocks of one structure solved together (compile/groups.py,
solve/grouped.py): values, gradients and tangents against the per-block path,
the numpy floor and finite differences; a stubborn block is named."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import lagrad
from lagrad.bench.blocks import BlockChain, BlockIndependent
from lagrad.compile import compile_program, groups
from lagrad.compile.groups import GROUP_MIN, CyclicGroup, grouped_steps


def groups_of(program: lagrad.Program) -> list[CyclicGroup]:
    return [s for s in grouped_steps(compile_program(program)) if isinstance(s, CyclicGroup)]


def independent(n_blocks: int, seed: int = 0, bad: int | None = None) -> tuple[Any, ...]:
    """B independent blocks z_k = tanh(A_k z_k + w_k * x + b_k) reading one input x."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n_blocks, 2, 2))
    a *= (0.6 / np.linalg.norm(a, 2, axis=(1, 2)))[:, None, None]
    b = 0.1 * rng.standard_normal((n_blocks, 2))
    w = rng.uniform(-1, 1, n_blocks)

    def body(z: Any, x: Any, wk: Any, ak: Any, bk: Any) -> Any:
        return lagrad.tanh(ak @ z + wk * x + bk)

    def fn(x: Any) -> Any:
        total = 0.0
        for k in range(n_blocks):
            z = lagrad.fixed_point(body, np.zeros(2), x, w[k], a[k], b[k], name=f"z{k}")
            total = total + lagrad.sum(z * z) * (k + 1)
        return total
    return lagrad.trace(fn, 0.3), a, b, w


def test_chain_is_one_group_with_coupling() -> None:
    chain = BlockChain(12)
    [group] = groups_of(chain.trace())
    assert group.size == 11  # block 0 reads the input, not another block: its own step
    assert group.chained and group.n_unknowns == 3
    # the loop's glue joins the group: c[k] gathered, sum(z * z) and the running
    # total (carried from element to element, so solved with the unknowns)
    assert group.n_u == 4
    names = {chain_var.name for chain_var in (group.units[0].unknowns)}
    assert names == {"z1"}


@pytest.mark.parametrize("n_blocks", [8, 40])
def test_chain_gradient_matches_the_floor(n_blocks: int) -> None:
    chain = BlockChain(n_blocks, seed=3)
    sol = chain.trace().solve(chain.x, chain.c)
    gx, gc = sol.grad()
    fx, fc = chain.floor()
    assert np.allclose(gx, fx, rtol=1e-10, atol=1e-12)
    assert np.allclose(gc, fc, rtol=1e-10, atol=1e-12)
    z, _ = chain.floor_forward()
    assert np.allclose(sol[f"z{n_blocks - 1}"], z[-1], rtol=0, atol=1e-12)


def test_grouped_equals_per_block_paths() -> None:
    chain = BlockChain(10, seed=1)
    program = chain.trace()
    grouped = program.solve(chain.x, chain.c)
    one_by_one = program.solve(chain.x, chain.c, method="fixed_point")
    assert np.allclose(grouped.z, one_by_one.z, rtol=0, atol=1e-12)
    for got, want in zip(grouped.grad(), one_by_one.grad(method="splu")):
        assert np.allclose(got, want, rtol=1e-10, atol=1e-13)
    for got, want in zip(grouped.grad(), grouped.grad(method="gmres")):
        assert np.allclose(got, want, rtol=1e-9, atol=1e-12)


def test_diagnostics_one_result_per_group() -> None:
    chain = BlockChain(9)
    sol = chain.trace().solve(chain.x, chain.c)
    group = [d for d in sol.diagnostics.values() if "blocks" in d.extra]
    assert len(group) == 1 and len(group[0].extra["blocks"]) == 8
    assert group[0].method == "newton" and group[0].converged
    assert group[0].extra["element_residuals"].shape == (8,)
    assert [b.method for b in sol.adjoint_diagnostics].count("grouped") == 1


def test_chain_tangent_matches_finite_differences_and_per_block() -> None:
    chain = BlockChain(10, seed=2)
    program = chain.trace()
    sol = program.solve(chain.x, chain.c)
    rng = np.random.default_rng(5)
    dx, dc = rng.standard_normal(3), rng.standard_normal(10)
    zdot = sol.tangent((dx, dc))
    eps = 1e-6
    plus = program.solve(chain.x + eps * dx, chain.c + eps * dc).output
    minus = program.solve(chain.x - eps * dx, chain.c - eps * dc).output
    fd = (plus - minus) / (2 * eps)
    got = float(zdot[sol.schedule.output_variable])
    assert abs(got - fd) <= 1e-7 * max(1.0, abs(fd))
    gx, gc = sol.grad()
    assert abs(got - float(gx @ dx + gc @ dc)) <= 1e-12 * max(1.0, abs(got))
    per_block = sol.tangent((dx, dc), method="splu")
    for v in program.variables:
        assert np.allclose(zdot[v], per_block[v], rtol=1e-10, atol=1e-12)


def test_independent_blocks_group_with_their_running_total() -> None:
    program, *_ = independent(12)
    [group] = groups_of(program)
    # block 0's total = 0.0 + ... reads a constant, not a total: it runs on its own;
    # the others' sum(z * z) * (k + 1) (a scalar batch) and total join as glue
    assert group.size == 11 and group.n_unknowns == 2
    assert group.n_u == 3 and group.chained  # z, and the total carried along
    assert len(grouped_steps(compile_program(program))) < 10  # not 2 steps per block


def test_independent_blocks_without_glue_group_without_coupling() -> None:
    def body(z: Any, x: Any, ak: Any) -> Any:
        return lagrad.tanh(ak * z + x)

    def fn(x: Any) -> Any:
        return lagrad.stack([lagrad.fixed_point(body, 0.0, x, 0.1 * k, name=f"z{k}")
                             for k in range(8)])
    program = lagrad.trace(fn, 0.3)
    [group] = groups_of(program)
    assert group.size == 8 and not group.chained


def test_independent_blocks_gradient_and_tangent() -> None:
    program, *_ = independent(10, seed=4)
    sol = program.solve(0.3)
    g = float(sol.grad())
    eps = 1e-6
    fd = (program.solve(0.3 + eps).output - program.solve(0.3 - eps).output) / (2 * eps)
    assert abs(g - fd) <= 1e-7 * max(1.0, abs(fd))
    assert abs(g - float(sol.grad(method="splu"))) <= 1e-12 * max(1.0, abs(g))
    zdot = sol.tangent(1.0)
    assert abs(float(zdot[program.variables[-1]]) - g) <= 1e-12 * max(1.0, abs(g))


@pytest.mark.parametrize("n_blocks", [8, 60])
def test_independent_bench_problem_gradient_matches_the_floor(n_blocks: int) -> None:
    problem = BlockIndependent(n_blocks, seed=5)
    program = problem.trace()
    [group] = groups_of(program)
    assert group.size == n_blocks - 1 and group.n_u == 4  # z (3) and the running total
    sol = program.solve(*problem.inputs)
    gx, gb = sol.grad()
    fx, fb = problem.floor()
    assert abs(float(gx) - fx) <= 1e-10 * max(1.0, abs(fx))
    assert np.allclose(gb, fb, rtol=1e-10, atol=1e-10 * float(np.max(np.abs(fb))))
    assert np.allclose(sol[f"z{n_blocks - 1}"], problem.floor_forward()[-1], rtol=0,
                       atol=1e-12)
    if n_blocks == 8:
        dx, db = sol.grad(method="dense")
        assert abs(float(dx) - fx) <= 1e-10 * max(1.0, abs(fx))
        assert np.allclose(db, fb, rtol=1e-10, atol=1e-12)


def test_independent_blocks_run_as_one_group_and_a_few_steps() -> None:
    program = BlockIndependent(30, seed=1).trace()
    steps = grouped_steps(compile_program(program))
    # the inputs' feeders, block 0 and its glue, then one group: nothing per block
    assert len(steps) < 12 and sum(isinstance(s, CyclicGroup) for s in steps) == 1


def test_a_stubborn_block_is_named() -> None:
    # z = z + w (z^2 - v): roots +-sqrt(v) for v > 0, none for the block with v < 0
    v = np.full(8, 1.0)
    v[5] = -1.0

    def body(z: Any, x: Any, vk: Any) -> Any:
        return z + (z * z - vk) + 0.0 * x

    def fn(x: Any) -> Any:
        total = 0.0
        for k in range(8):
            total = total + lagrad.fixed_point(body, 0.5, x, v[k], name=f"z{k}")
        return total
    program = lagrad.trace(fn, 0.0)
    assert groups_of(program)
    with pytest.raises(lagrad.LagradError, match=r"\(z5\)"):
        program.solve(0.0)


# ------------------------------------------------------- loop glue and carries

def glued_chain(n_blocks: int, seed: int = 0, extra: bool = False,
                nan_at: int | None = None, decay: bool = False) -> tuple[Any, ...]:
    """A loop whose body reads p[k] and keeps two running values: a total of
    sum(z * z) and r_k = r_{k-1} + 0.9 z_k[0] (with ``decay``, 0.9 r_{k-1} +
    z_k[0]: its 0.9 r_{k-1} reads only the previous iteration, a shape the
    glue is not recognised in, so the group keeps to its blocks)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n_blocks, 2, 2))
    a *= (0.5 / np.linalg.norm(a, 2, axis=(1, 2)))[:, None, None]
    b = 0.1 * rng.standard_normal((n_blocks, 2))
    if nan_at is not None:
        b[nan_at] = np.nan

    def body(z: Any, prev: Any, pk: Any, ak: Any, bk: Any) -> Any:
        return lagrad.tanh(ak @ z + pk * lagrad.sum(prev) + bk)

    def fn(x: Any, p: Any) -> Any:
        z, total, r = x, 0.0, 0.0
        for k in range(n_blocks):
            z = lagrad.fixed_point(body, np.zeros(2), z, p[k], a[k], b[k], name=f"z{k}")
            total = total + lagrad.sum(z * z)
            r = 0.9 * r + z[0] if decay else r + 0.9 * z[0]
        out = total + r
        return out * 2.0 if extra else out
    x = rng.standard_normal(2)
    p = rng.uniform(-0.3, 0.3, n_blocks)
    return lagrad.trace(fn, x, p), x, p


def test_glue_joins_the_group_with_its_carries() -> None:
    program, x, p = glued_chain(9)
    [group] = groups_of(program)
    assert group.size == 8 and group.n_unknowns == 2
    assert group.n_u == 4  # z (2) and the two running values carried along the chain
    assert sum(1 for s in grouped_steps(compile_program(program))
               if not isinstance(s, CyclicGroup)) < 15  # not 7 Python steps per block


@pytest.mark.parametrize("extra, decay", [(False, False), (True, False), (False, True)])
def test_glued_chain_matches_block_by_block(extra: bool, decay: bool) -> None:
    program, x, p = glued_chain(10, seed=1, extra=extra, decay=decay)
    [group] = groups_of(program)
    assert group.n_u == (2 if decay else 4)
    grouped = program.solve(x, p)
    one_by_one = program.solve(x, p, method="fixed_point")
    assert np.allclose(grouped.z, one_by_one.z, rtol=1e-12, atol=1e-12)
    for got, want in zip(grouped.grad(), one_by_one.grad(method="splu")):
        assert np.allclose(got, want, rtol=1e-10, atol=1e-13)
    for got, want in zip(grouped.grad(), grouped.grad(method="spsolve")):
        assert np.allclose(got, want, rtol=1e-10, atol=1e-13)


def test_glued_chain_gradient_against_finite_differences() -> None:
    program, x, p = glued_chain(8, seed=2)
    sol = program.solve(x, p)
    gx, gp = sol.grad()
    rng = np.random.default_rng(7)
    dx, dp = rng.standard_normal(x.shape), rng.standard_normal(p.shape)
    eps = 1e-6
    fd = (program.solve(x + eps * dx, p + eps * dp).output
          - program.solve(x - eps * dx, p - eps * dp).output) / (2 * eps)
    assert abs(float(gx @ dx + gp @ dp) - fd) <= 1e-7 * max(1.0, abs(fd))
    zdot = sol.tangent((dx, dp))
    assert abs(float(zdot[sol.schedule.output_variable]) - float(gx @ dx + gp @ dp)) \
        <= 1e-12 * max(1.0, abs(fd))


def test_blocks_chain_default_is_one_group_and_a_band_factorization() -> None:
    chain = BlockChain(30, seed=4)
    program = chain.trace()
    steps = grouped_steps(compile_program(program))
    assert len(steps) < 15  # block 0 and its glue, then one group
    sol = program.solve(chain.x, chain.c)
    [result] = [d for d in sol.diagnostics.values() if "blocks" in d.extra]
    assert type(result.factorization).__name__ == "BandFactor"
    gx, gc = sol.grad()
    fx, fc = chain.floor()
    assert np.allclose(gx, fx, rtol=1e-10, atol=1e-12)
    assert np.allclose(gc, fc, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("group_min", [GROUP_MIN, 10**9])
def test_nan_in_a_glued_chain_raises(group_min: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Grouped or one by one, a NaN in block 4's constants is a
    NonFiniteSolveError that names block z4."""
    monkeypatch.setattr(groups, "GROUP_MIN", group_min)
    program, x, p = glued_chain(8, nan_at=4)
    with pytest.raises(lagrad.NonFiniteSolveError, match=r"\(z4\).*not finite"):
        program.solve(x, p).grad()


def test_a_stubborn_block_in_a_glued_chain_is_named() -> None:
    v = np.full(8, 1.0)
    v[6] = -1.0

    def body(z: Any, prev: Any, vk: Any) -> Any:
        return z + (z * z - vk) + 0.0 * prev

    def fn(x: Any) -> Any:
        z, total = x, 0.0
        for k in range(8):
            z = lagrad.fixed_point(body, 0.5, z, v[k], name=f"z{k}")
            total = total + z * z
        return total
    program = lagrad.trace(fn, 0.0)
    assert groups_of(program)
    with pytest.raises(lagrad.ConvergenceError, match=r"\(z6\)"):
        program.solve(0.0)


def test_starting_points_given_to_one_solve_do_not_stay() -> None:
    """A group's starting points are taken from the mapping each solve gets:
    the program's own (kept between solves) or one given with ``init``, whose
    starts make Newton converge at once and are gone at the next solve."""
    chain = BlockChain(30, seed=5)
    program = chain.trace()
    [group] = groups_of(program)
    names = [u.name for unit in group.units for u in unit.unknowns]

    def newton_steps(sol: Any) -> int:
        [result] = [r for r in sol.diagnostics.values() if r.block.startswith("group")]
        return result.iterations

    cold = program.solve(chain.x, chain.c)
    cold_steps = newton_steps(cold)
    inits_before = dict(program.inits)
    warm = program.solve(chain.x, chain.c, init={n: cold[n] for n in names})
    assert newton_steps(warm) == 0 < cold_steps
    np.testing.assert_allclose(warm.grad()[1], cold.grad()[1], rtol=1e-12)
    assert program.inits.keys() == inits_before.keys()
    assert all(program.inits[k] is v for k, v in inits_before.items())
    again = program.solve(chain.x, chain.c)
    assert newton_steps(again) == cold_steps
    np.testing.assert_array_equal(again.grad()[1], cold.grad()[1])


def test_element_layout_copied_in_chunks_gives_the_same_gradient(monkeypatch) -> None:
    """Gather and scatter go a chunk of elements at a time: with chunks of a
    few elements (40 blocks, many chunks, a short last one) the values and
    gradient are those of one chunk, and the floor's."""
    import lagrad.solve.grouped as grouped

    chain = BlockChain(40, seed=5)
    whole = chain.trace().solve(chain.x, chain.c)
    monkeypatch.setattr(grouped, "CHUNK_BYTES", 7 * 8 * 23)  # 7 elements of 23 slots at most
    [group] = groups_of(chain.trace())
    assert len(grouped._chunks(grouped._rows(group, whole.z)[0])) > 5
    chunked = chain.trace().solve(chain.x, chain.c)
    assert np.array_equal(chunked.z, whole.z)
    for got, ref, floor in zip(chunked.grad(), whole.grad(), chain.floor()):
        assert np.array_equal(got, ref)
        assert np.allclose(got, floor, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("direct", ["linear", "sin"])
def test_unknown_read_twice_in_a_chain_keeps_the_coupling(direct: str) -> None:
    """The body reads its unknown in two places, z -> tanh(A z + c sum(prev) + b)
    and a direct 0.2 z (or 0.2 sin z), so their sum merges a tangent carrying
    the element's own seeds with one carrying the cross seed of the previous
    block too. That merge once zeroed the cross column: the forward Newton
    still converged (its residual is exact), but the adjoint and tangent,
    solved with the same factorization, were off by about 1e-2."""
    rng = np.random.default_rng(11)
    n_blocks = 8
    a = 0.2 * rng.standard_normal((n_blocks, 2, 2))
    b = 0.1 * rng.standard_normal((n_blocks, 2))

    def body(z: Any, prev_sum: Any, ck: Any, ak: Any, bk: Any) -> Any:
        other = z if direct == "linear" else lagrad.sin(z)
        return 0.5 * lagrad.tanh(ak @ z + ck * prev_sum + bk) + 0.2 * other

    def fn(x: Any, c: Any) -> Any:
        z, out = x, 0.0
        for k in range(n_blocks):
            z = lagrad.fixed_point(body, np.zeros(2), lagrad.sum(z), c[k], a[k], b[k])
            out = out + lagrad.sum(z * z)
        return out

    x, c = rng.standard_normal(2), rng.uniform(-0.3, 0.3, n_blocks)
    program = lagrad.trace(fn, x, c)
    [group] = groups_of(program)
    assert group.chained
    grouped = program.solve(x, c)
    one_by_one = program.solve(x, c, method="fixed_point")
    for got, want in zip(grouped.grad(), one_by_one.grad(method="splu")):
        assert np.allclose(got, want, rtol=1e-10, atol=1e-13)
    dx, dc = rng.standard_normal(2), rng.standard_normal(n_blocks)
    eps = 1e-6
    fd = (program.solve(x + eps * dx, c + eps * dc).output
          - program.solve(x - eps * dx, c - eps * dc).output) / (2 * eps)
    tangent = float(grouped.tangent((dx, dc))[grouped.schedule.output_variable])
    assert abs(tangent - fd) <= 1e-7 * max(1.0, abs(fd))


def _group_result(sol: Any) -> Any:
    [result] = [d for d in sol.diagnostics.values() if "blocks" in d.extra]
    return result


def _scaled_factor(sol: Any, monkeypatch: Any, factor: float) -> None:
    """Make the group's factorization solve (I - dG/dU) x = r only roughly: x times ``factor``."""
    found = _group_result(sol).factorization
    exact = found.solve
    monkeypatch.setattr(found, "solve", lambda r, transposed: factor * exact(r, transposed))


@pytest.mark.parametrize("kind", ["adjoint", "tangent"])
def test_grouped_linear_solves_check_their_residual(kind: str) -> None:
    """The sweep after the factorized solve applies dG/dU by the map's own
    rules: its residual is at rounding when the factorization is exact."""
    chain = BlockChain(20, seed=6)
    sol = chain.trace().solve(chain.x, chain.c)
    system = sol.adjoint_system() if kind == "adjoint" else \
        sol.tangent_system((np.ones(3), np.ones(20)))
    _, info = system.solve()
    [block] = [b for b in info.blocks if b.method == "grouped"]
    assert block.extra["refinements"] == 0
    assert block.extra["relative_residual"] <= 1e-14


def test_a_rough_factorization_is_refined_to_the_exact_gradient(monkeypatch: Any) -> None:
    chain = BlockChain(20, seed=6)
    program = chain.trace()
    exact = program.solve(chain.x, chain.c)
    want_grad = exact.grad()
    direction = (np.linspace(-1, 1, 3), np.linspace(0, 1, 20))
    want_tangent = exact.tangent(direction)[exact.schedule.output_variable]
    sol = program.solve(chain.x, chain.c)
    _scaled_factor(sol, monkeypatch, 0.97)
    for got, want in zip(sol.grad(), want_grad):
        assert np.allclose(got, want, rtol=1e-10, atol=1e-13)
    [info] = [b for b in sol.adjoint_diagnostics if b.method == "grouped"]
    assert info.extra["refinements"] > 0 and info.extra["relative_residual"] <= 1e-12
    got = sol.tangent(direction)[sol.schedule.output_variable]
    assert np.allclose(got, want_tangent, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("mode", ["adjoint", "tangent"])
def test_a_wrong_factorization_raises_instead_of_a_wrong_gradient(monkeypatch: Any,
                                                                  mode: str) -> None:
    chain = BlockChain(20, seed=6)
    sol = chain.trace().solve(chain.x, chain.c)
    _scaled_factor(sol, monkeypatch, 0.5)  # refinement contracts by 1/2 a step: too slow
    with pytest.raises(lagrad.ConvergenceError, match=f"group of 19 .*grouped {mode} solve"):
        if mode == "adjoint":
            sol.grad()
        else:
            sol.tangent((np.ones(3), np.ones(20)))


@pytest.mark.parametrize("body", ["matrix", "reshape", "axis_sum"])
def test_unknowns_of_two_dimensions_group_exactly(body: str) -> None:
    """Unknowns (or results) with two or more dimensions: the Jacobian sweep
    flattens their entries in C order, as the values are (an F-order reshape
    once transposed them: Newton then stalled or the adjoint was wrong)."""
    rng = np.random.default_rng(4)
    n_blocks = 9
    m = 0.3 * rng.standard_normal((n_blocks, 2, 2))
    b = 0.1 * rng.standard_normal((n_blocks, 2, 2))
    weights = np.array([0.1, 0.9, -0.5, 0.3])

    def step(z: Any, prev: Any, ck: Any, mk: Any, bk: Any) -> Any:
        if body == "matrix":
            inner = mk @ z * 0.5
        elif body == "reshape":
            inner = lagrad.reshape(lagrad.reshape(z, (4,)) * weights, (2, 2)) @ mk
        else:
            inner = 0.3 * lagrad.sum(z, axis=0) + 0.2 * z @ mk
        return lagrad.tanh(inner + ck * prev + bk)

    def fn(x: Any, c: Any) -> Any:
        z, out = x, 0.0
        for k in range(n_blocks):
            z = lagrad.fixed_point(step, np.zeros((2, 2)), z, c[k], m[k], b[k])
            out = out + lagrad.sum(z * z) * (1 + 0.1 * k)
        return out

    x, c = rng.standard_normal((2, 2)), rng.uniform(-0.3, 0.3, n_blocks)
    program = lagrad.trace(fn, x, c)
    [group] = groups_of(program)
    grouped = program.solve(x, c)
    _, info = grouped.adjoint_system().solve()  # the factorization is exact: no refinement
    assert [b.extra["refinements"] for b in info.blocks if b.method == "grouped"] == [0]
    one_by_one = program.solve(x, c, method="fixed_point")
    assert np.allclose(grouped.z, one_by_one.z, rtol=1e-12, atol=1e-12)
    for got, want in zip(grouped.grad(), one_by_one.grad(method="splu")):
        assert np.allclose(got, want, rtol=1e-10, atol=1e-13)
    dx, dc = rng.standard_normal((2, 2)), rng.standard_normal(n_blocks)
    tangent = float(grouped.tangent((dx, dc))[grouped.schedule.output_variable])
    gx, gc = one_by_one.grad(method="splu")
    assert abs(tangent - float(np.sum(gx * dx) + gc @ dc)) <= 1e-10 * max(1.0, abs(tangent))


def test_jacobian_rows_reuse_the_group_factorization(monkeypatch: Any) -> None:
    """A Jacobian's multi-seed sweep solves a group with its factorization, one
    seed at a time (it used to factorize each of the B blocks on its own: 30x
    slower than as many gradients); rows and columns match one-seed solves."""
    import lagrad.solve.multirhs as multirhs

    chain = BlockChain(40, seed=8)
    a_all, b_all = chain.A, chain.b

    def body(z: Any, p: Any, ck: Any, ak: Any, bk: Any) -> Any:
        return lagrad.tanh(ak @ z + ck * lagrad.sum(p) + bk)

    def outputs(x: Any, c: Any) -> Any:
        z, found = x, []
        for k in range(len(a_all)):
            z = lagrad.fixed_point(body, np.zeros(3), z, c[k], a_all[k], b_all[k])
            if k % 10 == 9:
                found.append(lagrad.sum(z * z))
        return lagrad.stack(found)

    factorized = []
    one_block = multirhs.block_matrix
    monkeypatch.setattr(multirhs, "block_matrix",
                        lambda unit, z: factorized.append(unit) or one_block(unit, z))
    rows = lagrad.jacrev(outputs, argnums=(0, 1))(chain.x, chain.c)
    columns = lagrad.jacfwd(outputs, argnums=(0, 1))(chain.x, chain.c)
    assert len(factorized) == 2  # the chain's first block (not in the group), twice
    sol = lagrad.trace(outputs, chain.x, chain.c).solve(chain.x, chain.c)
    for i in range(4):
        seed = np.eye(4)[i]
        lam, _ = sol.adjoint_system(seed).solve()
        want = sol.adjoint_system(seed).split(lam)
        for got, full, var in zip(rows, columns, sol.program.inputs):
            assert np.allclose(got[i], want[var], rtol=1e-12, atol=1e-14)
            assert np.allclose(full[i], want[var], rtol=1e-10, atol=1e-13)
