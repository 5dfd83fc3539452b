"""Regression tests of issue 12 (hardening), on the ir/ and tracing side:
every malformed program or argument raises a lagrad error that names it,
constants are frozen at trace time, and programs pickle."""

from __future__ import annotations

import numpy as np
import pytest

import lagrad
from lagrad import ProgramError


def _program(*shapes: tuple[int, ...]) -> tuple[lagrad.Program, list[lagrad.Variable]]:
    p = lagrad.Program()
    return p, [p.input(n, s) for n, s in zip("abcdef", shapes)]


# ------------------------------------------------------ 1. == and != raise

@pytest.mark.parametrize("compare", [lambda x: x == 0, lambda x: x != 0, lambda x: 0 == x,
                                     lambda x: x == x, lambda x: x != np.ones(3)])
def test_equality_on_a_traced_variable_raises(compare):
    with pytest.raises(ProgramError, match=r"== and != on traced variable 'x'.*lagrad\.where"):
        lagrad.trace(compare, 2.0)


def test_equality_from_a_numpy_scalar_raises():  # numpy dispatches to np.not_equal
    with pytest.raises(ProgramError, match=r"not_equal .*\['x'\]"):
        lagrad.trace(lambda x: np.float64(1.0) != x, 2.0)


def test_equality_in_where_no_longer_selects_by_identity():
    with pytest.raises(ProgramError, match="traced variable 'x'"):
        lagrad.grad(lambda x: lagrad.where(x == 0, 1.0, x * x))(2.0)


def test_variables_stay_hashable_dict_keys():
    p, (a, b) = _program((), (2,))
    table = {a: 1, b: 2}
    assert table[a] == 1 and table[b] == 2 and b in {a, b} and hash(a) != hash(b)
