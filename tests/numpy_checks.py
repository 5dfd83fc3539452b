"""The checks every numpy operation on traced values gets (tests/test_numpy_*.py).

An operation is ``fn(xp, *args)``: numpy's function for ``xp = numpy`` (run by
lagrad on traced values), autograd's for ``xp = autograd.numpy``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import lagrad

H = 1e-6
Op = Callable[..., Any]


def fd_jacobian(fn: Callable[..., Any], args: tuple[np.ndarray, ...], k: int) -> np.ndarray:
    """d fn / d args[k] by central differences, (out.size, args[k].size)."""
    x = np.asarray(args[k], dtype=float)
    cols = []
    for q in range(x.size):
        e = np.zeros(x.size)
        e[q] = H
        plus, minus = list(args), list(args)
        plus[k], minus[k] = x + e.reshape(x.shape), x - e.reshape(x.shape)
        cols.append((np.ravel(fn(*plus)) - np.ravel(fn(*minus))) / (2 * H))
    return np.stack(cols, axis=1)


def fd_derivative(fn: Callable[..., Any], x: np.ndarray) -> np.ndarray:
    """d fn / d x by central differences, of shape fn(x).shape + x.shape."""
    steps = [H * e.reshape(x.shape) for e in np.eye(x.size)]
    cols = [(np.asarray(fn(x + s)) - np.asarray(fn(x - s))) / (2 * H) for s in steps]
    return np.stack(cols, axis=-1).reshape(np.shape(fn(x)) + x.shape)


def check_value_and_jacobian(fn: Op, args: tuple[np.ndarray, ...], in_autograd: bool) -> None:
    """The traced program's value is numpy's; its Jacobian in both modes is
    autograd's (when it has the operation, itself checked against central
    differences) or the central differences'."""
    expected = np.asarray(fn(np, *args))
    got = lagrad.trace(lambda *xs: fn(np, *xs), *args).solve(*args).output
    assert np.shape(got) == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-15)
    for k in range(len(args)):
        fd = fd_jacobian(lambda *xs: fn(np, *xs), args, k)
        reference = fd
        if in_autograd:
            reference = np.reshape(autograd.jacobian(lambda *xs: fn(anp, *xs), k)(*args), fd.shape)
            np.testing.assert_allclose(reference, fd, rtol=1e-5, atol=1e-7, err_msg="autograd")
        for mode in ("reverse", "forward"):
            jac = lagrad.jacobian(lambda *xs: fn(np, *xs), argnums=k, mode=mode)(*args)
            np.testing.assert_allclose(np.reshape(jac, fd.shape), reference,
                                       rtol=1e-10 if in_autograd else 1e-6,
                                       atol=1e-12 if in_autograd else 1e-8, err_msg=mode)


def _loss(fn: Op, square: bool) -> Callable[[Any], Any]:
    def loss(v: Any) -> Any:
        out = fn(np, v)
        return lagrad.sum(out * out) if square else lagrad.sum(lagrad.sin(out) * out)
    return loss


def check_vmap(fn: Op, x: np.ndarray) -> None:
    """vmap of the value and of the gradient equal the instances one by one."""
    xs = np.stack([x, 1.3 * x + 0.1, -x])
    loss = _loss(fn, square=True)
    np.testing.assert_allclose(lagrad.vmap(lambda v: fn(np, v))(xs),
                               np.stack([np.asarray(fn(np, r)) for r in xs]), rtol=1e-13,
                               atol=1e-14)
    np.testing.assert_allclose(lagrad.vmap(lagrad.grad(loss))(xs),
                               np.stack([lagrad.grad(loss)(r) for r in xs]), rtol=1e-12,
                               atol=1e-13)


def check_hessian(fn: Op, x: np.ndarray) -> None:
    """The Hessian of sum(sin(out) out) against central differences of its gradient."""
    loss = _loss(fn, square=False)
    hess = lagrad.hessian(loss)(x).reshape(x.size, x.size)
    np.testing.assert_allclose(hess, fd_jacobian(lagrad.grad(loss), (x,), 0), rtol=1e-5,
                               atol=1e-6)


def op_tests(ops: dict[str, tuple[Op, tuple[np.ndarray, ...], bool]]
             ) -> tuple[Callable[[str], None], Callable[[str], None], Callable[[str], None]]:
    """The three parametrized tests of a table ``name -> (fn, args,
    in_autograd)``: value and Jacobian (every entry), vmap and Hessian (the
    entries of one argument). A test module binds them to names that start
    with ``test_``."""
    single = sorted(n for n, (_, args, _) in ops.items() if len(args) == 1)

    @pytest.mark.parametrize("name", sorted(ops))
    def value_and_jacobian(name: str) -> None:
        fn, args, in_autograd = ops[name]
        check_value_and_jacobian(fn, args, in_autograd)

    @pytest.mark.parametrize("name", single)
    def vmap_of_value_and_gradient(name: str) -> None:
        fn, (x,), _ = ops[name]
        check_vmap(fn, x)

    @pytest.mark.parametrize("name", single)
    def hessian(name: str) -> None:
        fn, (x,), _ = ops[name]
        check_hessian(fn, x)
    return value_and_jacobian, vmap_of_value_and_gradient, hessian
