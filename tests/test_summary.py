"""Text views: program_summary / system_summary and the numbers behind them.

Counts are checked against hand counts of small hand-built programs; the
condition numbers against numpy on the dense I - J assembled independently of
lagrad.compile.jacobian.block_matrix.
"""

from __future__ import annotations

import numpy as np
import pytest

import lagrad
from lagrad.solve.system import System
from lagrad.study.summary import block_conditions, program_counts, program_summary, system_summary


def acyclic_program() -> lagrad.Program:
    p = lagrad.Program("acyclic")
    x = p.input("x", 3)
    y = p.input("y")
    a = x * y  # (3,), reads x and y
    b = lagrad.sin(a)  # (3,)
    s = lagrad.sum(b)  # ()
    p.output(s + y)  # reads s and y
    return p


def two_block_program() -> lagrad.Program:
    """a -> [z1 = 0.5 z1 + a] -> t = sum(z1) -> [z2 = 0.25 z2 + t] -> z2 * z2."""
    p = lagrad.Program("two blocks")
    a = p.input("a", 2)
    z1 = p.unknown("z1", 2)
    p.define(z1, 0.5 * z1 + a)
    z2 = p.unknown("z2")
    p.define(z2, 0.25 * z2 + lagrad.sum(z1))
    p.output(z2 * z2)
    return p


def test_counts_of_an_acyclic_program() -> None:
    c = program_counts(acyclic_program())
    # variables x, y, a, b, s, out; edges x->a, y->a, a->b, b->s, s->out, y->out
    assert c == (6, 2, 4, 0, 4, 6, 12, 6, 0, 0, 0)


def test_counts_of_a_cyclic_program() -> None:
    c = program_counts(two_block_program())
    # variables a, z1, 0.5 z1, + a, z2, 0.25 z2, sum(z1), + sum, z2 * z2 (read twice: one edge)
    assert (c.variables, c.inputs, c.defined, c.unknowns) == (9, 1, 6, 2)
    assert (c.equations, c.edges, c.entries) == (8, 10, 13)
    assert (c.blocks, c.cyclic_blocks) == (5, 2)
    assert (c.largest_cyclic_variables, c.largest_cyclic_entries) == (3, 6)


def test_a_parent_read_twice_is_one_edge() -> None:
    p = lagrad.Program()
    x = p.input("x")
    p.output(x * x)
    assert (program_counts(p).equations, program_counts(p).edges) == (1, 1)


def test_program_summary_text() -> None:
    text = program_summary(two_block_program())
    assert text.splitlines() == [
        "program 'two blocks': 9 variables (1 input, 6 defined, 2 unknowns), output v8 ()",
        "equations: 8, dependency edges: 10",
        "scalar entries: 13",
        "blocks: 5 (2 cyclic)",
        "largest cyclic block: block 1 (z1), 3 variables, 6 entries",
    ]
    assert two_block_program().summary() == text
    assert "none (the program is acyclic" in acyclic_program().summary()


def test_program_summary_without_output() -> None:
    p = lagrad.Program()
    p.input("x")
    assert "no output yet" in p.summary()


@pytest.mark.parametrize("kind, side", [("adjoint", "upper"), ("tangent", "lower")])
def test_system_summary_of_an_acyclic_program(kind: str, side: str) -> None:
    sol = acyclic_program().solve(np.array([0.1, 0.2, 0.3]), 2.0)
    system = sol.adjoint_system() if kind == "adjoint" else \
        sol.tangent_system((np.ones(3), 1.0))
    text = system_summary(system)
    assert text.startswith(f"{kind} system ")
    assert ": 12 x 12, 6 variables" in text.splitlines()[0]
    assert f"nonzeros: {system.matrix.nnz} stored" in text
    assert f"program order: {side} triangular" in text
    assert "6 blocks, none cyclic" in text
    assert system.summary() == text


def test_system_summary_of_a_cyclic_program() -> None:
    system = two_block_program().solve([1.0, 2.0]).adjoint_system()
    lines = system.summary().splitlines()
    assert "program order: not triangular (the program has cycles)" in lines
    assert "block order: block upper triangular, 5 blocks, 2 cyclic" in lines
    assert any(line.startswith("  block 1 (z1): 6 entries, cond_2 = ") for line in lines)
    assert any(line.startswith("  block 3 (z2): 3 entries, cond_2 = ") for line in lines)


def dense_block(system: System, block: lagrad.ir.blocks.Block) -> np.ndarray:
    """The block's rows and columns of the dense system matrix (I - J)^T."""
    positions = np.concatenate([np.arange(system.index[v].start, system.index[v].stop)
                                for v in block.variables])
    dense = np.eye(system.shape[0]) - system.jacobian.toarray()
    a = dense.T if system.kind == "adjoint" else dense
    return a[np.ix_(positions, positions)]


def contractive_program(n: int = 6) -> tuple[lagrad.Program, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    w = rng.standard_normal((n, n))
    w *= 0.8 / np.linalg.norm(w, 2)
    p = lagrad.Program("tanh fixed point")
    x = p.input("x", n)
    z = p.unknown("z", n)
    p.define(z, lagrad.tanh(w @ z + x))
    p.output(lagrad.sum(z * z))
    return p, w, rng.standard_normal(n)


@pytest.mark.parametrize("kind", ["adjoint", "tangent"])
def test_condition_matches_numpy(kind: str) -> None:
    p, _, x = contractive_program()
    sol = p.solve(x)
    system = sol.adjoint_system() if kind == "adjoint" else sol.tangent_system(np.ones(6))
    [block] = [b for b in p.blocks if b.cyclic]
    [c] = block_conditions(system)
    expected = np.linalg.cond(dense_block(system, block))
    assert c.norm == "2"
    assert c.entries == block.size
    assert c.condition == pytest.approx(expected, rel=1e-10)
    assert c.condition > 1.0


def test_condition_estimate_of_a_large_block_bounds_the_exact_one() -> None:
    p, _, x = contractive_program()
    system = p.solve(x).adjoint_system()
    [block] = [b for b in p.blocks if b.cyclic]
    [c] = block_conditions(system, dense_limit=0)  # force the onenormest path
    exact = np.linalg.cond(dense_block(system, block), 1)
    assert c.norm == "1 (estimate)"
    assert exact / 3 <= c.condition <= exact * (1 + 1e-10)  # a lower bound, usually tight


def test_singular_block_reports_infinite_condition() -> None:
    p = lagrad.Program()
    a = p.input("a")
    gain = p.input("gain")
    z = p.unknown("z")
    p.define(z, gain * z + a)
    p.output(z)
    sol = p.solve(1.0, 0.5)
    values = sol.z.copy()
    values[sol.schedule.index["gain"]] = 1.0  # then I - J_SS has the null vector (z, ...)
    system = System(sol.schedule, values, "adjoint", sol.adjoint_system().rhs)
    [estimate] = block_conditions(system, dense_limit=0)
    assert estimate.condition == np.inf
    [dense] = block_conditions(system)
    assert dense.condition > 1e12


def test_block_order_is_block_triangular() -> None:
    system = two_block_program().solve([1.0, 2.0]).adjoint_system()
    perm = system.permutation
    assert sorted(perm) == list(range(system.shape[0]))
    a = system.matrix.toarray()[np.ix_(perm, perm)]
    owner = np.concatenate([[b.number] * b.size for b in system.schedule.program.blocks])
    rows, cols = np.nonzero(a)
    assert np.all(owner[cols] >= owner[rows])  # (I - J)^T: block upper triangular
