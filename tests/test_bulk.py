"""Programs built in bulk from arrays equal the same programs built by hand."""

from __future__ import annotations

import numpy as np
import pytest

import lagrad
from lagrad.compile.bulk import _by_key_then_position, _levels
from lagrad.compile.bulkplan import bulk_plan

KINDS = np.array(["add", "sub", "mul", "sin", "cos", "tanh", "exp", "div"])
UNARY = {"sin", "cos", "tanh", "exp", "sigmoid"}


def random_arrays(rng: np.random.Generator, n_inputs: int, m: int):  # type: ignore[no-untyped-def]
    kinds = KINDS[rng.integers(0, len(KINDS), m)]
    own = n_inputs + np.arange(m)
    parents = (rng.random((m, 2)) * own[:, None]).astype(np.intp)
    parents[rng.random((m, 2)) < 0.15] = -1  # constant operands
    twice = rng.random(m) < 0.1
    parents[twice, 1] = parents[twice, 0]  # a parent read twice
    parents[:, 1] = np.where(np.isin(kinds, list(UNARY)), -1, parents[:, 1])
    first_const = parents[:, 0] < 0
    parents[first_const & np.isin(kinds, list(UNARY)), 0] = 0  # unary ops read a variable
    constants = rng.uniform(0.5, 1.5, (m, 2))
    return kinds, parents, constants


def by_hand(kinds, parents, constants, n_inputs, weights):  # type: ignore[no-untyped-def]
    p = lagrad.Program()
    zs = [p.input(f"x{i}") for i in range(n_inputs)]
    ops = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
           "div": lambda a, b: a / b, "sin": lagrad.sin, "cos": lagrad.cos,
           "tanh": lagrad.tanh, "exp": lagrad.exp, "sigmoid": lagrad.sigmoid}
    for k, (kind, par) in enumerate(zip(kinds, parents)):
        args = [zs[j] if j >= 0 else float(constants[k, i]) for i, j in enumerate(par)]
        zs.append(ops[kind](*args[:1 if kind in UNARY else 2]))
    p.output(lagrad.sum(lagrad.stack(zs) * weights) if weights is not None else zs[-1])
    return p


def safe(rng: np.random.Generator, n_inputs: int, m: int):  # type: ignore[no-untyped-def]
    """Arrays whose values stay finite (div by constants, exp of small values)."""
    kinds, parents, constants = random_arrays(rng, n_inputs, m)
    parents[kinds == "div", 1] = -1
    kinds = np.where(kinds == "exp", "tanh", kinds)
    return kinds, parents, constants


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("weighted", [False, True])
def test_bulk_program_matches_the_hand_built_one(seed: int, weighted: bool) -> None:
    rng = np.random.default_rng(seed)
    n_inputs, m = 3, 300
    kinds, parents, constants = safe(rng, n_inputs, m)
    weights = rng.normal(size=n_inputs + m) * 0.01 if weighted else None
    bulk = lagrad.Program.from_arrays(kinds, parents, n_inputs=n_inputs, constants=constants,
                                      output_weights=weights)
    ref = by_hand(kinds, parents, constants, n_inputs, weights)
    x = rng.uniform(-0.5, 0.5, n_inputs)
    sb, sr = bulk.solve(*x), ref.solve(*x)
    assert float(sb.output) == pytest.approx(float(sr.output), rel=1e-12, abs=1e-14)
    expected = np.array(sr.grad())
    for method in ("auto", "levels", "backsub", "spsolve"):
        np.testing.assert_allclose(np.array(sb.grad(method=method)), expected, rtol=1e-10,
                                   atol=1e-14)
    direction = rng.normal(size=n_inputs)
    tangent = sb.tangent(tuple(direction))[bulk.output_variable]
    assert float(tangent) == pytest.approx(float(expected @ direction), rel=1e-10, abs=1e-14)
    primal, dual = sb.kkt_residuals()
    assert primal <= 1e-12 and dual <= 1e-12


def test_levels_are_longest_paths_from_the_inputs() -> None:
    rng = np.random.default_rng(7)
    kinds, parents, constants = random_arrays(rng, 2, 400)
    p = lagrad.Program.from_arrays(kinds, parents, n_inputs=2, constants=constants)
    level = _levels(p.bulk)
    expected = np.zeros(402, dtype=int)
    for k, par in enumerate(parents):
        expected[2 + k] = 1 + max((expected[j] for j in par if j >= 0), default=0)
    np.testing.assert_array_equal(level, expected)


def test_printing_and_lookup_materialize_on_demand() -> None:
    p = lagrad.Program.from_arrays(["mul", "sin"], [[0, -1], [1, -1]], n_inputs=1,
                                   constants=[[0.0, 3.0], [0.0, 0.0]])
    assert str(p).splitlines() == ["input x0: ()", "v1 = mul(x0, 3.0)  # ()",
                                   "v2 = sin(v1)  # ()", "output v2"]
    assert p["v2"] is p.output_variable and p.inputs == (p.variables[0],)
    assert float(p.solve(0.2).grad()) == pytest.approx(3 * np.cos(0.6), rel=1e-14)


def test_bad_arrays_raise_program_errors() -> None:
    with pytest.raises(lagrad.ProgramError, match="unknown equation kinds"):
        lagrad.Program.from_arrays(["fft"], [[0, -1]], n_inputs=1)
    with pytest.raises(lagrad.ProgramError, match="equation 0 .*earlier variables"):
        lagrad.Program.from_arrays(["add"], [[0, 1]], n_inputs=1)
    with pytest.raises(lagrad.ProgramError, match="output_weights needs 2 entries"):
        lagrad.Program.from_arrays(["sin"], [[0, -1]], n_inputs=1, output_weights=[1.0])
    p = lagrad.Program.from_arrays(["sin"], [[0, -1]], n_inputs=1)
    with pytest.raises(lagrad.ProgramError, match="complete"):
        lagrad.sin(p.output_variable)


def test_non_finite_values_name_the_equation() -> None:
    p = lagrad.Program.from_arrays(["log", "sin"], [[0, -1], [1, -1]], n_inputs=1)
    with pytest.raises(lagrad.NonFiniteError, match=r"v1 = log\(x0\)"):
        p.solve(-1.0)


def test_integer_kind_codes_give_the_same_program() -> None:
    rng = np.random.default_rng(11)
    kinds, parents, constants = safe(rng, 2, 200)
    names = sorted(set(kinds))
    codes = np.array([names.index(k) for k in kinds])
    by_name = lagrad.Program.from_arrays(kinds, parents, n_inputs=2, constants=constants)
    by_code = lagrad.Program.from_arrays(codes, parents, n_inputs=2, constants=constants,
                                         primitives=names)
    assert str(by_name) == str(by_code)
    np.testing.assert_array_equal(by_name.solve(0.1, 0.2).grad(), by_code.solve(0.1, 0.2).grad())
    with pytest.raises(lagrad.ProgramError, match="kind codes"):
        lagrad.Program.from_arrays([5], [[0, -1]], n_inputs=1, primitives=["sin"])


def test_levels_solve_leaves_the_system_rhs_alone() -> None:
    rng = np.random.default_rng(3)
    kinds, parents, constants = safe(rng, 2, 200)
    bulk = lagrad.Program.from_arrays(kinds, parents, n_inputs=2, constants=constants)
    sol = bulk.solve(0.1, -0.2)
    system = sol.adjoint_system()
    rhs = system.rhs.copy()
    x, _ = system.solve("levels")
    np.testing.assert_array_equal(system.rhs, rhs)  # solved in a copy, not in place
    again, _ = system.solve("levels")
    np.testing.assert_array_equal(x, again)
    np.testing.assert_allclose(x[system.index[bulk.inputs[0]]], sol.grad()[0], rtol=1e-13)
    np.testing.assert_allclose(sol.multipliers().vector, x, rtol=1e-13, atol=1e-300)


def test_levels_by_blocks_on_a_chain_and_a_wide_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of equations relaxed together: a long chain inside a block
    splits it (down to one equation at a time); a wide graph spans blocks."""
    import lagrad.compile.bulk as bulk_module
    monkeypatch.setattr(bulk_module, "BLOCK", 256)
    rng = np.random.default_rng(5)
    m = 3000
    chain = np.stack([np.arange(1, m + 1) - 1, np.full(m, -1)], axis=1)
    chain[::7, 1] = 0  # and the input again, now and then
    wide = (rng.random((m, 2)) * (2 + np.arange(m))[:, None]).astype(np.intp) - 1
    for parents, d in ((chain, 1), (wide, 2)):
        kinds = np.where(parents[:, 1] >= 0, "add", "sin")
        p = lagrad.Program.from_arrays(kinds, parents, n_inputs=d)
        expected = np.zeros(d + m, dtype=int)
        for k, par in enumerate(parents):
            expected[d + k] = 1 + max((expected[j] for j in par if j >= 0), default=0)
        np.testing.assert_array_equal(_levels(p.bulk), expected)


def test_variables_are_laid_out_level_by_level_and_read_by_name() -> None:
    rng = np.random.default_rng(8)
    kinds, parents, constants = safe(rng, 3, 400)
    bulk = lagrad.Program.from_arrays(kinds, parents, n_inputs=3, constants=constants)
    x = rng.uniform(-0.5, 0.5, 3)
    values = list(x)  # the equations one by one, in their own order
    ops = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
           "sin": np.sin, "cos": np.cos, "tanh": np.tanh, "exp": np.exp}
    for k, (kind, par) in enumerate(zip(kinds, parents)):
        args = [values[j] if j >= 0 else constants[k, i] for i, j in enumerate(par)]
        values.append(ops[kind](*args[:1 if kind in UNARY else 2]))
    sol = bulk.solve(*x)
    index = sol.schedule.index
    start = np.array([index[v].start for v in bulk.variables])
    assert sorted(start) == list(range(len(start)))  # a permutation of the flat vector
    level = _levels(bulk.bulk)
    assert np.all(np.diff(level[np.argsort(start)]) >= 0)  # level by level
    for k in range(len(values)):
        name = f"x{k}" if k < 3 else f"v{k}"
        assert float(sol[name]) == pytest.approx(values[k], rel=1e-13, abs=1e-15)
        assert index.owner(index[name].start) is bulk.variables[k]
    lam = sol.multipliers()
    dense, _ = sol.adjoint_system().solve("dense")
    for v in bulk.variables:
        assert float(lam[v]) == pytest.approx(float(dense[index[v]][0]), rel=1e-10, abs=1e-13)


def test_the_sweep_uses_the_partials_of_its_own_solution() -> None:
    """J's values are kept by the forward pass for the sweep that follows; a
    solution solved before another one still gets its own gradient."""
    rng = np.random.default_rng(9)
    kinds, parents, constants = safe(rng, 2, 500)
    p = lagrad.Program.from_arrays(kinds, parents, n_inputs=2, constants=constants)
    x1, x2 = (0.3, -0.2), (-0.4, 0.25)
    expected1 = np.array(p.solve(*x1).grad())
    expected2 = np.array(p.solve(*x2).grad())
    first, second = p.solve(*x1), p.solve(*x2)
    np.testing.assert_array_equal(np.array(first.grad()), expected1)
    np.testing.assert_array_equal(np.array(second.grad()), expected2)
    spsolve = np.array(p.solve(*x1).grad(method="spsolve"))
    np.testing.assert_allclose(expected1, spsolve, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("n_keys, n_positions", [(3, 100), (32, 70_000), (32, 3_000_000)])
def test_equations_are_sorted_by_key_then_first_parent(n_keys: int, n_positions: int) -> None:
    rng = np.random.default_rng(n_positions)
    key = np.sort(rng.integers(0, n_keys, 5000))
    at = rng.integers(0, n_positions, key.size)
    order = _by_key_then_position(key, at, n_keys, n_positions)
    assert np.array_equal(order, np.lexsort((np.arange(key.size), at, key)))  # stable


def test_beyond_31_bits_positions_sort_by_regions() -> None:
    rng = np.random.default_rng(1)
    n_keys, n_positions = 2**10, 2**30  # 10 key bits + 15 high bits: the lowest 10 dropped
    key = np.sort(rng.integers(0, n_keys, 5000))
    at = rng.integers(0, n_positions, key.size)
    order = _by_key_then_position(key, at, n_keys, n_positions)
    region = at >> 26
    assert np.array_equal(key[order], key)
    assert np.all(np.diff(region[order])[np.diff(key[order]) == 0] >= 0)
    assert sorted(order) == list(range(key.size))


def test_each_run_reads_its_first_operand_in_increasing_order() -> None:
    kinds, parents, constants = safe(np.random.default_rng(5), 4, 3000)
    program = lagrad.Program.from_arrays(kinds, parents, n_inputs=4, constants=constants)
    sol = program.solve(*np.linspace(-0.4, 0.4, 4))
    plan = bulk_plan(sol.schedule)
    assert plan is not None
    runs = [run for run in plan.runs if 0 in run.var_positions and run.stop - run.start > 1]
    assert len(runs) > 10
    for run in runs:
        assert np.all(np.diff(run.operands[0]) >= 0), (run.start, run.stop)


def test_forward_partials_equal_the_rules_bit_for_bit() -> None:
    """The forward pass writes J's values its own way (in place for sin, cos,
    tanh and sigmoid, gathered into W for a product, constant factors once); computed again
    by the rules at the same z they are the same bits, and a gradient at an
    earlier solution (its W recomputed) equals the hand-built program's."""
    rng = np.random.default_rng(11)
    kinds, parents, constants = safe(rng, 3, 600)
    kinds = np.where((kinds == "tanh") & (np.arange(kinds.size) % 2 == 0), "sigmoid", kinds)
    assert {"sin", "cos", "tanh", "sigmoid", "mul"} <= set(kinds)
    bulk = lagrad.Program.from_arrays(kinds, parents, n_inputs=3, constants=constants)
    first, second = rng.uniform(-0.5, 0.5, (2, 3))
    sol = bulk.solve(*first)
    plan = bulk_plan(sol.schedule)
    assert plan is not None
    read = np.zeros((2, 600), dtype=bool)  # W's entries the sweep reads (slots of variables)
    for run in plan.runs:
        for k, at in run.w_runs:
            read[k, at] = True
    kept = plan.weights_at(sol.z)[read]
    bulk.solve(*second)  # the plan now keeps the second solution's W
    assert np.array_equal(plan.weights_at(sol.z)[read], kept)
    expected = by_hand(kinds, parents, constants, 3, None).solve(*first).grad()
    np.testing.assert_allclose(np.array(sol.grad()), np.array(expected), rtol=1e-12, atol=1e-15)


def _with_singular_sqrt(rng: np.random.Generator, n_inputs: int, m: int, singular: bool,
                        reach: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random bounded equations; with ``singular``, a z = x - x (exactly 0) read
    by a sqrt (whose derivative there is inf), read by the output if ``reach``,
    and some equations of constants."""
    kinds = rng.choice(["add", "mul", "sin", "tanh"], m)
    parents = np.stack([rng.integers(0, n_inputs + np.arange(m)),
                        rng.integers(0, n_inputs + np.arange(m))], axis=1)
    parents[np.isin(kinds, ["sin", "tanh"]), 1] = -1
    constants = np.zeros((m, 2))
    mul = kinds == "mul"
    parents[mul, 1] = -1  # scale by a constant of at most 0.9: values stay bounded
    constants[mul, 1] = rng.uniform(-0.9, 0.9, int(mul.sum()))
    if singular:
        j, k = sorted(rng.choice(np.arange(m // 4, m), 2, replace=False))
        kinds[j], parents[j] = "sub", [parents[j, 0], parents[j, 0]]
        kinds[k], parents[k] = "sqrt", [n_inputs + j, -1]
        for c in rng.choice(np.arange(m // 4), 3, replace=False):  # equations of constants
            kinds[c], parents[c], constants[c] = "add", [-1, -1], rng.uniform(0, 1, 2)
        if reach:  # the output reads the sqrt: its multiplier is 1, the zero's inf
            kinds[-1], parents[-1] = "add", [n_inputs + k, parents[-1, 0]]
    return kinds, parents, constants


def _outcome(sol: lagrad.Solution) -> np.ndarray | str:
    try:
        return np.array(sol.grad())
    except lagrad.NonFiniteError as err:
        return str(err)


@pytest.mark.parametrize("seed", range(10))
def test_witnesses_decide_finiteness_as_the_whole_vector_does(seed: int) -> None:
    """The guard reads a bulk sweep's witnesses (inputs, equations of
    constants) instead of all multipliers: the outcome, a gradient or the
    error naming the equation, is the same as with the whole vector read."""
    rng = np.random.default_rng(seed)
    kinds, parents, constants = _with_singular_sqrt(rng, 3, 300, singular=seed % 5 != 0,
                                                    reach=seed % 5 in (1, 2, 3))
    program = lagrad.Program.from_arrays(kinds, parents, n_inputs=3, constants=constants)
    x = rng.uniform(0.1, 0.5, 3)
    sol = program.solve(*x)
    plan = bulk_plan(sol.schedule)
    assert plan is not None
    reads_none = [int(w) for w in plan.witnesses if w >= 3]
    if seed % 5:
        assert len(reads_none) == 3  # the equations of constants are witnesses
    with_witnesses = _outcome(sol)
    plan.witnesses = None  # the whole vector read, as before witnesses
    whole = _outcome(program.solve(*x))
    if seed % 5 in (1, 2, 3):
        assert isinstance(whole, str) and "sqrt" in whole
    if isinstance(whole, str):
        assert with_witnesses == whole
    else:
        assert not isinstance(with_witnesses, str)
        assert np.array_equal(with_witnesses, whole)


def test_a_non_finite_multiplier_of_an_equation_of_constants_is_reported() -> None:
    """v2 = 0 + 0 reads no variable, and sqrt's derivative at it is inf: its
    multiplier is the only one not finite (no input's depends on it), so the
    equation of constants must be a witness for the guard to see it."""
    kinds = np.array(["add", "sqrt", "add"])
    parents = np.array([[-1, -1], [2, -1], [3, 0]])
    program = lagrad.Program.from_arrays(kinds, parents, n_inputs=2, constants=np.zeros((3, 2)))
    with pytest.raises(lagrad.NonFiniteError, match="sqrt"):
        program.solve(0.3, 0.4).grad()


@pytest.mark.parametrize("depth", [0, 1, 5, 40])
def test_a_non_finite_value_at_any_level_is_found(depth: int) -> None:
    """The forward pass tests each level's values right after writing them: a
    log of -1 at level ``depth`` of a chain (depth 0: an input of inf) and a
    tanh after it (finite again, tanh(nan) aside) still raise, naming it."""
    kinds = ["sin"] * depth + ["log", "tanh", "add"]
    parents = [[k, -1] for k in range(depth)] + [[depth, -1], [depth + 1, -1], [depth + 2, 0]]
    program = lagrad.Program.from_arrays(kinds, parents, n_inputs=1)
    with pytest.raises(lagrad.NonFiniteError, match="log" if depth else "x0"):
        program.solve(np.inf if depth == 0 else -0.5)
    if depth:
        program.solve(0.5).grad()  # finite values pass


@pytest.mark.parametrize("weighted", [False, True])
def test_adjoint_matvec_by_the_plan_equals_the_assembled_matrix(weighted: bool) -> None:
    """A bulk program's (I - J)^T x comes from its plan's scatter-adds (all
    levels at once); it equals the assembled matrix's product, and the
    multipliers' residual is at rounding level."""
    rng = np.random.default_rng(21)
    kinds, parents, constants = safe(rng, 3, 400)
    weights = rng.normal(size=403) * 0.01 if weighted else None
    bulk = lagrad.Program.from_arrays(kinds, parents, n_inputs=3, constants=constants,
                                      output_weights=weights)
    system = bulk.solve(*rng.uniform(-0.5, 0.5, 3)).adjoint_system()
    assert bulk_plan(system.schedule) is not None
    x = rng.standard_normal(system.rhs.size)
    np.testing.assert_allclose(system.matvec(x), system.matrix @ x, rtol=1e-12, atol=1e-12)
    lam, info = system.solve(method="levels")
    assert system.residual(lam) < 1e-14
    assert info.residual is None or info.residual < 1e-14
