"""Properties of random loops of same-structure cyclic blocks (hypothesis).

A traced loop of ``fixed_point`` / ``root`` calls becomes one group solved
together (compile/groups.py, solve/grouped.py); the same program solved block
by block (``method="fixed_point"`` forward, ``"splu"`` adjoint) is the
independent reference. The loops vary what a bug in the group's Jacobian,
layout or glue would show: how an element reads the one before (its sum, the
whole vector, an entry, two back, through a map outside the block), a body
that reads its unknown more than once, unknowns of one or two dimensions, a
running total or a decaying value carried along, roots and fixed points.
Checked: values, gradient, tangent (against the reference's gradient), and
that the group's adjoint needed no refinement (its factorization is exact).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from cyclic_strategies import CYCLIC_SETTINGS
from hypothesis import given, settings
from hypothesis import strategies as st

import lagrad
from lagrad.compile import compile_program
from lagrad.compile.groups import CyclicGroup, grouped_steps

COUPLINGS = ("none", "sum", "elem", "item", "two_back", "outside_map")
EXTRAS = ("none", "linear", "sin", "item", "sum", "square", "matrix_left")
SETTINGS = settings(CYCLIC_SETTINGS, max_examples=min(CYCLIC_SETTINGS.max_examples, 25))


@dataclass
class Loop:
    blocks: int
    shape: tuple[int, ...]
    coupling: str
    extra: str
    kind: str
    carry: str
    seed: int

    def arrays(self) -> tuple[Any, ...]:
        rng = np.random.default_rng(self.seed)
        n = self.shape[-1]
        a = rng.standard_normal((self.blocks, n, n))
        a *= (0.4 / np.linalg.norm(a, 2, axis=(1, 2)))[:, None, None]
        b = 0.1 * rng.standard_normal((self.blocks,) + self.shape)
        return a, b, rng.standard_normal(self.shape), rng.uniform(-0.3, 0.3, self.blocks)

    def function(self) -> Any:
        a, b, _, _ = self.arrays()
        loop = self

        def body(z: Any, p: Any, ck: Any, ak: Any, bk: Any) -> Any:
            out = 0.5 * lagrad.tanh(z @ ak + ck * p + bk)
            extra = loop.extra
            if extra == "linear":
                out = out + 0.2 * z
            elif extra == "sin":
                out = out + 0.2 * lagrad.sin(z)
            elif extra == "item":
                out = out + 0.1 * z[0]
            elif extra == "sum":
                out = out + 0.1 * lagrad.sum(z)
            elif extra == "square":
                out = out + 0.2 * z * z
            elif extra == "matrix_left":
                out = out + 0.2 * lagrad.tanh(z) @ ak
            return out

        def fn(x: Any, c: Any) -> Any:
            z, before, total, r = x, x, 0.0, 0.0
            for k in range(loop.blocks):
                p = {"none": 0.0 * c[k] + lagrad.sum(x) * 0.1,
                     "sum": lagrad.sum(z), "elem": z, "item": z[0],
                     "two_back": lagrad.sum(before),
                     "outside_map": 0.5 * lagrad.sin(z)}[loop.coupling]
                if loop.kind == "fixed_point":
                    new = lagrad.fixed_point(body, np.zeros(loop.shape), p, c[k], a[k], b[k])
                else:
                    new = lagrad.root(lambda u, *args: u - body(u, *args), np.zeros(loop.shape),
                                      p, c[k], a[k], b[k])
                before, z = z, new
                if loop.carry == "total":
                    total = total + lagrad.sum(new * new) * (k + 1)
                elif loop.carry == "decay":
                    r = 0.9 * r + lagrad.sum(new)
                total = total + lagrad.sum(lagrad.sin(new)) * (0.3 + 0.1 * k)
            return total + r
        return fn


@st.composite
def loops(draw: Any) -> Loop:
    shape = draw(st.sampled_from([(1,), (2,), (3,), (2, 2)]))
    return Loop(blocks=draw(st.integers(6, 12)), shape=shape,
                coupling=draw(st.sampled_from(COUPLINGS)), extra=draw(st.sampled_from(EXTRAS)),
                kind=draw(st.sampled_from(["fixed_point", "root"])),
                carry=draw(st.sampled_from(["none", "total", "decay"])),
                seed=draw(st.integers(0, 2**16)))


@SETTINGS
@given(loops())
def test_a_group_agrees_with_its_blocks_solved_one_by_one(loop: Loop) -> None:
    _, _, x, c = loop.arrays()
    program = lagrad.trace(loop.function(), x, c)
    steps = grouped_steps(compile_program(program))
    assert any(isinstance(s, CyclicGroup) for s in steps)  # the loop is grouped
    grouped = program.solve(x, c)
    one_by_one = program.solve(x, c, method="fixed_point")  # block by block (roots too:
    # the map of a root g is z - g(z), here the body, which contracts)
    np.testing.assert_allclose(grouped.z, one_by_one.z, rtol=1e-10, atol=1e-11)
    want = one_by_one.grad(method="splu")
    for got, ref in zip(grouped.grad(), want):
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-11)
    _, info = grouped.adjoint_system().solve()
    assert all(b.extra["refinements"] == 0 for b in info.blocks if b.method == "grouped")
    rng = np.random.default_rng(loop.seed + 1)
    dx, dc = rng.standard_normal(x.shape), rng.standard_normal(c.shape)
    tangent = float(grouped.tangent((dx, dc))[grouped.schedule.output_variable])
    linear = float(np.sum(want[0] * dx) + want[1] @ dc)
    assert abs(tangent - linear) <= 1e-9 * max(1.0, abs(linear))
