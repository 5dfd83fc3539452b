"""The garbage collector's pause while tracing and compiling: restored on
exit and on errors, nested pauses keep it off, a caller's own gc.disable() is
kept."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import lagrad
from lagrad.ir.gcpause import paused_gc


@pytest.fixture(autouse=True)
def _gc_enabled() -> object:
    gc.enable()
    yield
    gc.enable()


def test_pause_is_undone_on_exit_and_on_error() -> None:
    with paused_gc():
        assert not gc.isenabled()
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner pause does not end the outer one
    assert gc.isenabled()
    with pytest.raises(ZeroDivisionError), paused_gc():
        1 / 0  # noqa: B018
    assert gc.isenabled()


def test_a_disabled_collector_stays_disabled() -> None:
    gc.disable()
    with paused_gc():
        pass
    assert not gc.isenabled()


def test_tracing_and_solving_leave_the_collector_on() -> None:
    seen = []

    def fn(x: object) -> object:
        seen.append(gc.isenabled())
        return lagrad.sum(lagrad.sin(x))

    p = lagrad.trace(fn, np.ones(3))
    assert seen == [False] and gc.isenabled()
    np.testing.assert_allclose(p.solve(np.ones(3)).grad(), np.cos(np.ones(3)))
    assert gc.isenabled()

    def bad(x: object) -> object:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        lagrad.trace(bad, 1.0)
    assert gc.isenabled()
