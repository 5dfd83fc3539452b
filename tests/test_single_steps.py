"""Single.pushforward of elementwise equations adds each term in place, and
Single.jacobian_entries writes an elementwise equation's diagonal directly;
here every step against the rules (Primitive.pushforward, the sum made apart;
Primitive.local_jacobian), on programs with broadcasting, constant partials
(sub, a scaled negation) and a root equation z = z - g, which reads its own
output's tangent."""

from __future__ import annotations

import numpy as np
import pytest

import lagrad
from lagrad.compile.compiler import compile_program
from lagrad.compile.schedule import CyclicBlock, Single
from lagrad.ir import primitives as P
from lagrad.ir.program import Equation


def _programs() -> list[lagrad.Program]:
    p = lagrad.Program("broadcast")
    x, y, w = p.input("x", (2, 3)), p.input("y", (3,)), p.input("w", (1, 3))
    h = lagrad.tanh(x * y) - 2.0 * y + lagrad.exp(-x) / (1.5 + y * y) + x * w
    p.output(lagrad.sum(h * h - x))
    q = lagrad.Program("root")
    a = q.input("a", (3,))
    z = q.unknown("z", (3,), init=np.ones(3))
    q.root(z, z * z * z + z - a)
    q.output(lagrad.sum(lagrad.sin(z) * a))
    return [p, q]


def _singles(program: lagrad.Program) -> list[Single]:
    out: list[Single] = []
    for step in compile_program(program).steps:
        if isinstance(step, CyclicBlock):
            out += [s for s in step.inner_interior + step.inner_closing + list(step.outer)
                    if isinstance(s, Single)]
        elif isinstance(step, Single):
            out.append(step)
    return out


@pytest.mark.parametrize("program", _programs(), ids=lambda p: p.name)
@pytest.mark.parametrize("where", ["zdot", "another vector", "a view of zdot"])
def test_pushforward_adds_the_rules_tangent(program: lagrad.Program, where: str) -> None:
    rng = np.random.default_rng(0)
    size = compile_program(program).size
    z = rng.uniform(0.2, 1.0, size)  # in every rule's domain
    steps = _singles(program)
    assert any(s.eq.kind == "root" for s in steps) == (program.name == "root")
    for step in steps:
        zdot = rng.standard_normal(size)
        ts = [None] * len(step.template)
        for pos, a, b, shape in step.dslots:
            ts[pos] = zdot[a:b].reshape(shape).copy()
        ans = z[step.start:step.stop].reshape(step.shape)
        rule = np.ravel(step.eq.primitive.pushforward(ts, ans, step.gather(z), step.eq.params))
        if where == "zdot":
            into, vec = None, zdot
        elif where == "another vector":
            into = vec = rng.standard_normal(size)
        else:
            into = vec = zdot[:]  # the same memory, another array object
        expected = vec.copy()
        expected[step.start:step.stop] += rule
        step.pushforward(z, zdot, into)
        np.testing.assert_allclose(vec, expected, rtol=1e-14, atol=1e-15,
                                   err_msg=program.describe(step.eq))


@pytest.mark.parametrize("program", _programs(), ids=lambda p: p.name)
def test_jacobian_entries_are_the_local_jacobians(program: lagrad.Program) -> None:
    """x * w with w (1, 3) and x (2, 3): the partial by x has w's shape, spread
    over the output; every step's entries hold its local Jacobians' values."""
    rng = np.random.default_rng(1)
    size = compile_program(program).size
    z = rng.uniform(0.2, 1.0, size)
    for step in _singles(program):
        got = np.zeros((size, size))
        for r, c, v in step.jacobian_entries(z):
            np.add.at(got, (r, c), v)
        expected = np.zeros((size, size))
        ans = z[step.start:step.stop].reshape(step.shape)
        for pos, a, b, _ in step.dslots:
            local = step.eq.primitive.local_jacobian(pos, ans, step.gather(z), step.eq.params)
            expected[step.start:step.stop, a:b] += local.toarray()
        np.testing.assert_array_equal(got, expected, err_msg=program.describe(step.eq))


@pytest.mark.parametrize("where", ["zdot", "a view of zdot"])
def test_a_term_reading_the_output_sees_it_before_the_sum(where: str) -> None:
    """u = x * u (an equation reading its own output, in its second slot): the
    second term's tangent lies where the first is added, so the sum is made
    apart; added in place, it would read the first term already in."""
    eq = Equation(1, P.mul, (0, 1), {}, ((0, 0), (1, 1)))
    slots = ((0, 0, 1, ()), (1, 1, 2, ()))
    step = Single(eq, 1, 2, (), (None, None), slots, slots, ufunc=True)
    z, zdot = np.array([0.5, 2.0]), np.array([3.0, 7.0])
    expected = zdot[1] + z[1] * zdot[0] + z[0] * zdot[1]
    into = None if where == "zdot" else zdot[:]
    step.pushforward(z, zdot, into)
    assert zdot[1] == expected
