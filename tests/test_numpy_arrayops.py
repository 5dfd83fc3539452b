"""numpy's array manipulation, sort, arctan2 / hypot and linalg.norm on traced
values (``lagrad.ir.arrayops``, ``lagrad.ir.sorting``, ``lagrad.ir.norms``).

References: numpy's value, central finite differences of it, and autograd's
Jacobian of the same function written with ``autograd.numpy`` where autograd
has the operation. Then: a program traced at one input and solved at another
(every index depends on shapes only; sort finds its order again), the
lagrad.<name> functions on plain arrays, second derivatives, and the errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from numpy_checks import fd_jacobian as _fd
from numpy_checks import op_tests

import lagrad
from lagrad import ProgramError


def _rng(*salt: int) -> np.random.Generator:
    return np.random.default_rng([20261207, *salt])


X = _rng(1).normal(size=(3, 4))
X3 = _rng(2).normal(size=(2, 3, 4))
SQ = _rng(3).normal(size=(4, 4))
V = _rng(4).normal(size=5)
V3 = _rng(5).normal(size=(2, 3))
SPREAD = (_rng(6).permutation(12).reshape(3, 4) - 5.5) * 0.3  # no ties within H

# name -> (function of (xp, *args), args, whether autograd has the operation)
OPS: dict[str, tuple[Callable[..., Any], tuple[np.ndarray, ...], bool]] = {
    "flip": (lambda xp, x: xp.flip(x, 1), (X,), False),
    "flip_all": (lambda xp, x: xp.flip(x), (X3,), False),
    "flip_tuple": (lambda xp, x: xp.flip(x, (0, 2)), (X3,), False),
    "roll": (lambda xp, x: xp.roll(x, 2), (X,), True),
    "roll_axis": (lambda xp, x: xp.roll(x, -1, axis=1), (X,), True),
    "roll_many": (lambda xp, x: np.roll(x, (1, 7), axis=(0, 2)), (X3,), False),
    "roll_flat_shifts": (lambda xp, x: np.roll(x, (1, 2)), (X,), False),
    "roll_one_axis_twice": (lambda xp, x: np.roll(x, (1, -3), axis=(1, 1)), (X,), False),
    "roll_shift_per_axis": (lambda xp, x: np.roll(x, 2, axis=(0, 1)), (X,), False),
    "take": (lambda xp, x: xp.take(x, [3, 0, 3, -1]), (X,), False),
    "take_axis": (lambda xp, x: np.take(x, [[2, 0], [2, 2]], axis=1), (X3,), False),
    "diagonal": (lambda xp, x: xp.diagonal(x), (SQ,), False),
    "diagonal_offset": (lambda xp, x: xp.diagonal(x, 1), (X,), False),
    "diagonal_below": (lambda xp, x: np.diagonal(x, -1), (X,), False),
    "diagonal_axes": (lambda xp, x: xp.diagonal(x, 0, 0, 2), (X3,), False),
    "trace": (lambda xp, x: xp.trace(x @ x), (SQ,), True),
    "trace_offset": (lambda xp, x: np.trace(x, 1), (X,), False),
    "trace_3d": (lambda xp, x: np.trace(x, 0, 1, 2), (X3,), False),
    "triu": (lambda xp, x: xp.triu(x), (X,), True),
    "triu_k": (lambda xp, x: xp.triu(x, 1), (SQ,), True),
    "tril": (lambda xp, x: xp.tril(x, -1), (X,), True),
    "tril_stack": (lambda xp, x: np.tril(x), (X3,), False),
    "triu_vector": (lambda xp, x: np.triu(x, 1), (V,), False),
    "diff": (lambda xp, x: xp.diff(x), (X,), True),
    "diff_2": (lambda xp, x: xp.diff(x, n=2, axis=0), (X,), True),
    "repeat": (lambda xp, x: xp.repeat(x, 2), (V,), True),
    "repeat_axis": (lambda xp, x: xp.repeat(x, 3, axis=0), (X,), True),
    "repeat_counts": (lambda xp, x: np.repeat(x, [1, 0, 2, 3], axis=1), (X,), False),
    "tile": (lambda xp, x: xp.tile(x, 2), (V,), True),
    "tile_2d": (lambda xp, x: xp.tile(x, (2, 1, 2)), (X,), True),
    "split": (lambda xp, x: xp.split(x, 2, axis=1)[1] * 2.0, (X,), True),
    "split_at": (lambda xp, x: np.split(x, [1, 3])[1], (V,), False),
    "array_split": (lambda xp, x: xp.array_split(x, 3)[0] + xp.array_split(x, 3)[2][0],
                    (V,), True),
    "pad": (lambda xp, x: xp.pad(x, 2), (V,), False),
    "pad_widths": (lambda xp, x: np.pad(x, ((1, 0), (2, 3)), constant_values=1.5), (X,), False),
    # (autograd's pad differentiates the constant mode only)
    "pad_edge": (lambda xp, x: np.pad(x, ((2, 0), (1, 3)), mode="edge"), (X,), False),
    "pad_reflect": (lambda xp, x: np.pad(x, 3, mode="reflect"), (V,), False),
    "pad_reflect_long": (lambda xp, x: np.pad(x, ((0, 5), (6, 1)), "reflect"), (X,), False),
    "pad_symmetric": (lambda xp, x: np.pad(x, ((1, 4), (0, 2), (2, 2)), mode="symmetric"),
                      (X3,), False),
    "pad_wrap": (lambda xp, x: np.pad(x, ((2, 1), (5, 0)), mode="wrap"), (X,), False),
    "pad_symmetric_even": (lambda xp, x: np.pad(x, (2, 1), "symmetric", reflect_type="even"),
                           (V,), False),
    "kron": (lambda xp, a, b: xp.kron(a, b), (V3, X), True),
    "kron_1d": (lambda xp, a, b: xp.kron(a, b), (V, V[:3]), True),
    "kron_mixed": (lambda xp, a, b: np.kron(a, b), (V[:2], X3), False),
    "cross": (lambda xp, a, b: xp.cross(a, b), (X[:, :3], SQ[:3, 1:]), True),
    "cross_axis": (lambda xp, a, b: np.cross(a, b, axis=0), (X[:, :2], SQ[1:, :1]), False),
    "squeeze": (lambda xp, x: xp.squeeze(x), (X.reshape(3, 1, 4, 1),), True),
    "squeeze_axis": (lambda xp, x: xp.squeeze(x, axis=1), (X.reshape(3, 1, 4, 1),), True),
    "expand_dims": (lambda xp, x: xp.expand_dims(x, 1), (X,), True),
    "expand_dims_tuple": (lambda xp, x: np.expand_dims(x, (0, -1)), (X,), False),
    "broadcast_to": (lambda xp, x: xp.broadcast_to(x, (2, 3, 4)), (X[0],), False),
    "broadcast_to_same_ndim": (lambda xp, x: xp.broadcast_to(x, (3, 4)), (X[:1],), True),
    "swapaxes": (lambda xp, x: xp.swapaxes(x, 0, 2), (X3,), True),
    "moveaxis": (lambda xp, x: xp.moveaxis(x, 0, -1), (X3,), True),
    "moveaxis_many": (lambda xp, x: np.moveaxis(x, (0, 1), (2, 0)), (X3,), False),
    "sort": (lambda xp, x: xp.sort(x), (SPREAD,), False),
    "sort_axis0": (lambda xp, x: xp.sort(x, axis=0), (SPREAD,), False),
    "sort_flat": (lambda xp, x: np.sort(x, axis=None), (SPREAD,), False),
    "sort_kind": (lambda xp, x: np.sort(x, 0, kind="heapsort"), (SPREAD,), False),
    "sort_stable": (lambda xp, x: np.sort(x, 1, stable=True), (SPREAD,), False),
    "arctan2": (lambda xp, y, x: xp.arctan2(y, x), (X, X[::-1] * 0.7), True),
    "arctan2_broadcast": (lambda xp, y, x: xp.arctan2(y, x), (X, V[:4]), True),
    "hypot": (lambda xp, x, y: np.hypot(x, y), (X, X[::-1] * 0.7), False),
    "norm": (lambda xp, x: xp.linalg.norm(x), (X3,), True),
    "norm_1": (lambda xp, x: xp.linalg.norm(x, 1), (V,), False),
    "norm_inf": (lambda xp, x: xp.linalg.norm(x, np.inf), (V,), False),
    "norm_minus_inf": (lambda xp, x: xp.linalg.norm(x, -np.inf), (V,), False),
    "norm_p": (lambda xp, x: xp.linalg.norm(x, 3), (V,), True),
    "norm_axis": (lambda xp, x: xp.linalg.norm(x, axis=1), (X,), True),
    "norm_axis_keep": (lambda xp, x: np.linalg.norm(x, 1, axis=-1, keepdims=True), (X,), False),
    "norm_fro": (lambda xp, x: xp.linalg.norm(x, "fro"), (X,), True),
    "norm_matrix_1": (lambda xp, x: np.linalg.norm(x, 1), (X,), False),
    "norm_matrix_inf": (lambda xp, x: np.linalg.norm(x, np.inf), (X,), False),
    "norm_matrix_minus_1": (lambda xp, x: np.linalg.norm(x, -1), (X,), False),
    "norm_matrix_axes": (lambda xp, x: np.linalg.norm(x, np.inf, axis=(2, 0)), (X3 + 3.0,),
                         False),
    "norm_keepdims": (lambda xp, x: np.linalg.norm(x, keepdims=True), (X3,), False),
    "inner": (lambda xp, a, b: xp.inner(a, b), (X3, X), True),
    # (autograd's einsum VJP rejects a repeated label)
    "einsum_trace": (lambda xp, a: np.einsum("ii", a), (SQ,), False),
    "einsum_diagonal": (lambda xp, a: np.einsum("ii->i", a), (SQ,), False),
    "einsum_diagonal_batch": (lambda xp, a: np.einsum("ijj->ji", a), (X3[:, :3, :3],), False),
    "einsum_diagonal_product": (lambda xp, a, b: np.einsum("ij,jj->i", a, b), (X, SQ), False),
    "cumprod": (lambda xp, x: np.cumprod(x), (X,), False),
    "eigvalsh": (lambda xp, a: np.linalg.eigvalsh(a), (SQ,), False),
    # an eigenvector's sign is numpy's choice: functions that do not see it
    "eigh_vectors": (lambda xp, a: np.linalg.eigh(a).eigenvectors ** 2, (SQ,), False),
    "eigh_upper_stack": (lambda xp, a: np.linalg.eigh(a, "U")[1][..., 0:1] *
                         np.linalg.eigh(a, "U")[1] + np.linalg.eigh(a, "U")[0][..., None],
                         (X3[:, :3, :3],), False),
    "svdvals": (lambda xp, a: np.linalg.svdvals(a), (X,), False),
    "pinv_wide": (lambda xp, a: xp.linalg.pinv(a), (X,), True),
    "pinv_tall": (lambda xp, a: np.linalg.pinv(a) @ a[:, :2], (X.T,), False),
    "pinv_stack": (lambda xp, a: np.linalg.pinv(a), (X3,), False),
    "qr_q": (lambda xp, a: np.linalg.qr(a).Q, (X.T,), False),
    "qr_r": (lambda xp, a: np.linalg.qr(a)[1], (SQ,), False),
    "svd_values": (lambda xp, a: np.linalg.svd(a, compute_uv=False), (X3,), False),
    "norm_matrix_2": (lambda xp, a: np.linalg.norm(a, 2), (X,), False),
    "norm_matrix_minus_2": (lambda xp, a: np.linalg.norm(a, -2), (X,), False),
    "norm_nuc_axes": (lambda xp, a: np.linalg.norm(a, "nuc", axis=(2, 0), keepdims=True),
                      (X3,), False),
    "vector_norm": (lambda xp, a: np.linalg.vector_norm(a, axis=(0, 2), ord=3), (X3,), False),
    "matrix_norm": (lambda xp, a: np.linalg.matrix_norm(a, ord=np.inf, keepdims=True), (X3,),
                    False),
    "eigvalsh_upper_stack": (lambda xp, a: np.linalg.eigvalsh(a, UPLO="U"), (X3[:, :3, :3],),
                             False),
    "cumprod_axis": (lambda xp, x: np.cumprod(x, axis=1) + x.cumprod(axis=0), (X3,), False),
    "cumprod_zeros": (lambda xp, x: np.cumprod(x * np.array([1.0, 0.0, 1.0, 0.0]), axis=-1),
                      (X,), False),
    "inner_scalar": (lambda xp, a, b: np.inner(a, b[0, 0]), (V, X), False),
    "vdot": (lambda xp, a, b: np.vdot(a, b), (X, X.T * 2.0), False),
    "multi_dot": (lambda xp, a, b: np.linalg.multi_dot([a[:, 0], b, a.T, a]), (SQ[:3], X), False),
    "matrix_power": (lambda xp, a: np.linalg.matrix_power(a, 5), (SQ * 0.5,), False),
    "matrix_power_inverse": (lambda xp, a: np.linalg.matrix_power(a + 4.0 * np.eye(4), -3),
                             (SQ,), False),
    "matrix_power_zero": (lambda xp, a: np.linalg.matrix_power(a, 0) + a, (SQ,), False),
}


# value and Jacobian, vmap, Hessian of every entry (numpy_checks.op_tests)
(test_value_and_jacobian_match_numpy_fd_and_autograd,
 test_vmap_of_the_value_and_gradient_is_each_instances,
 test_hessian_matches_finite_differences_of_the_gradient) = op_tests(OPS)


def test_a_traced_program_is_right_at_a_new_input() -> None:
    """The indices depend on shapes only, and sort's order is found again:
    trace at one input, solve and differentiate at another that sorts
    differently (and whose largest entry is elsewhere)."""
    def f(x: Any) -> Any:
        s = np.sort(x[0])
        return np.sum(s * np.arange(1.0, 5.0)) + np.linalg.norm(np.roll(x, 1, axis=1), np.inf) \
            + np.trace(np.triu(x[:, :3] @ np.flip(x, 0)[:, :3].T)) + np.sum(np.diff(x, axis=1) ** 2)
    x0, x1 = SPREAD, np.flip(SPREAD) * 1.7 + 0.01
    program = lagrad.trace(f, x0)
    for x in (x1, x0):
        sol = program.solve(x)
        assert sol.output == pytest.approx(f(x), rel=1e-14)
        np.testing.assert_allclose(sol.grad(), _fd(f, (x,), 0).reshape(x.shape), rtol=1e-6,
                                   atol=1e-8)


NUMBERS = {
    "inner": (lambda: lagrad.inner(X, X), lambda: np.inner(X, X)),
    "vdot": (lambda: lagrad.vdot(X, X), lambda: np.vdot(X, X)),
    "flip": (lambda: lagrad.flip(X, 0), lambda: np.flip(X, 0)),
    "roll": (lambda: lagrad.roll(X, 1, axis=1), lambda: np.roll(X, 1, axis=1)),
    "take": (lambda: lagrad.take(X, [0, 0, 2], axis=0), lambda: np.take(X, [0, 0, 2], axis=0)),
    "diagonal": (lambda: lagrad.diagonal(X3, 1, 1, 2), lambda: np.diagonal(X3, 1, 1, 2)),
    "triu": (lambda: lagrad.triu(X, -1), lambda: np.triu(X, -1)),
    "tril": (lambda: lagrad.tril(X, 1), lambda: np.tril(X, 1)),
    "diff": (lambda: lagrad.diff(X, 2), lambda: np.diff(X, 2)),
    "repeat": (lambda: lagrad.repeat(X, 2, axis=1), lambda: np.repeat(X, 2, axis=1)),
    "tile": (lambda: lagrad.tile(X, (1, 2)), lambda: np.tile(X, (1, 2))),
    "split": (lambda: lagrad.split(X, 2, axis=1)[0], lambda: np.split(X, 2, axis=1)[0]),
    "array_split": (lambda: lagrad.array_split(V, 2)[0], lambda: np.array_split(V, 2)[0]),
    "pad": (lambda: lagrad.pad(X, (1, 2)) + lagrad.pad(X, (1, 2), "reflect"),
            lambda: np.pad(X, (1, 2)) + np.pad(X, (1, 2), "reflect")),
    "kron": (lambda: lagrad.kron(V3, X), lambda: np.kron(V3, X)),
    "cross": (lambda: lagrad.cross(X[:, :3], V[:3]), lambda: np.cross(X[:, :3], V[:3])),
    "squeeze": (lambda: lagrad.squeeze(X[None]), lambda: np.squeeze(X[None])),
    "expand_dims": (lambda: lagrad.expand_dims(X, -1), lambda: np.expand_dims(X, -1)),
    "broadcast_to": (lambda: lagrad.broadcast_to(V, (2, 5)), lambda: np.broadcast_to(V, (2, 5))),
    "swapaxes": (lambda: lagrad.swapaxes(X3, 1, 2), lambda: np.swapaxes(X3, 1, 2)),
    "moveaxis": (lambda: lagrad.moveaxis(X3, -1, 0), lambda: np.moveaxis(X3, -1, 0)),
    "sort": (lambda: lagrad.sort(X, axis=None), lambda: np.sort(X, axis=None)),
    "arctan2": (lambda: lagrad.arctan2(X, -X), lambda: np.arctan2(X, -X)),
    "hypot": (lambda: lagrad.hypot(X, 2 * X), lambda: np.hypot(X, 2 * X)),
    "norm": (lambda: lagrad.linalg.norm(X, -np.inf, axis=0), lambda: np.linalg.norm(X, -np.inf,
                                                                                     axis=0)),
}


@pytest.mark.parametrize("name", sorted(NUMBERS))
def test_the_lagrad_functions_compute_on_plain_arrays(name: str) -> None:
    ours, numpys = NUMBERS[name]
    assert name in lagrad.__all__ or name == "norm"
    got, expected = ours(), numpys()
    assert not isinstance(got, lagrad.Variable)
    assert np.shape(got) == np.shape(expected)
    np.testing.assert_allclose(got, expected, rtol=1e-15, atol=0)


def test_the_array_methods() -> None:
    x = X3.reshape(2, 3, 1, 4)
    methods = {"squeeze": ((), {}), "swapaxes": ((0, 3), {}), "diagonal": ((1, 0, 3), {}),
               "trace": ((0, 1, 3), {}), "repeat": ((2,), {"axis": 1}),
               "take": (([3, 0],), {"axis": -1})}
    for name, (args, kwargs) in methods.items():
        p = lagrad.trace(lambda v, name=name, a=args, kw=kwargs: getattr(v, name)(*a, **kw), x)
        np.testing.assert_array_equal(p.solve(x).output, getattr(x, name)(*args, **kwargs),
                                      err_msg=name)


def test_second_derivatives_match_finite_differences_of_the_gradient() -> None:
    def f(x: Any) -> Any:
        return np.sum(np.arctan2(x, np.roll(x, 1)) * np.hypot(x, np.flip(x))) + \
            np.linalg.norm(x) ** 3 + np.sort(x) @ np.arange(5.0) ** 2 * x[0]
    x = V
    hess = lagrad.hessian(f)(x)
    grad = lagrad.grad(f)
    np.testing.assert_allclose(hess, _fd(grad, (x,), 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hess, hess.T, rtol=1e-10, atol=1e-12)


def test_vmap_of_the_gradient_is_the_gradient_of_each_instance() -> None:
    def f(x: Any) -> Any:
        return np.sum(np.sort(x) * np.arange(5.0)) + np.sum(np.tile(x, 2)[::3]) + \
            np.linalg.norm(np.diff(np.flip(x)), np.inf) + np.sum(np.hypot(x, np.roll(x, 2)))
    xs = _rng(7).normal(size=(3, 5))
    batched = lagrad.vmap(lagrad.grad(f))(xs)
    np.testing.assert_allclose(batched, np.stack([lagrad.grad(f)(x) for x in xs]), rtol=1e-14,
                               atol=1e-15)
    np.testing.assert_allclose(batched[1], _fd(f, (xs[1],), 0)[0], rtol=1e-6, atol=1e-8)


def test_eigvalsh_hessian_matches_finite_differences_of_its_gradient() -> None:
    def f(a: Any) -> Any:
        return np.sum(np.linalg.eigvalsh(a) ** 3) + np.linalg.eigvalsh(a, "U")[-1]
    hess = lagrad.hessian(f)(SQ).reshape(16, 16)
    np.testing.assert_allclose(hess, _fd(lagrad.grad(f), (SQ,), 0), rtol=1e-5, atol=1e-6)
    assert not np.triu(lagrad.grad(lambda a: np.sum(np.linalg.eigvalsh(a)))(SQ), 1).any()


def test_a_tie_in_sort_follows_the_stable_order() -> None:
    x = np.array([2.0, 1.0, 2.0])
    g = lagrad.grad(lambda v: np.sort(v) @ np.array([1.0, 10.0, 100.0]))(x)
    np.testing.assert_array_equal(g, [10.0, 1.0, 100.0])


def test_a_repeated_index_adds_up_in_the_derivative() -> None:
    g = lagrad.grad(lambda v: np.sum(np.take(v, [1, 1, 1, 0])) + np.sum(np.tile(v, 3)))(V[:3])
    np.testing.assert_array_equal(g, [4.0, 6.0, 3.0])
    # reflect pads [a, b, c] by 2 to [c, b, a, b, c, b, a]: a and c twice, b three times
    g = lagrad.grad(lambda v: np.sum(np.pad(v, 2, mode="reflect") * np.arange(1.0, 8.0)))(V[:3])
    np.testing.assert_array_equal(g, [3.0 + 7.0, 2.0 + 4.0 + 6.0, 1.0 + 5.0])


BAD: dict[str, tuple[Callable[[Any], Any], str]] = {
    "squeeze": (lambda v: np.squeeze(v, axis=0), "length 3, not one"),
    "split": (lambda v: np.split(v, 3, axis=1), "does not split into 3 equal pieces"),
    "pad_mode": (lambda v: np.pad(v, 1, mode="mean"), "mode 'mean' is not supported"),
    "pad_odd": (lambda v: np.pad(v, 1, "reflect", reflect_type="odd"), "reflect_type='even'"),
    "pad_keyword": (lambda v: np.pad(v, 1, end_values=2.0), "takes no"),
    "pad_empty_axis": (lambda v: np.pad(v[:0], 1, mode="wrap"), "can't extend empty axis"),
    "pad_wrap_keyword": (lambda v: np.pad(v, 1, mode="wrap", reflect_type="even"),
                         "unsupported keyword arguments for mode 'wrap'"),
    "pad_width": (lambda v: np.pad(v, ((1, 2), (3, 4), (5, 6))), "does not fit"),
    "cross": (lambda v: np.cross(v, v), "vectors of length 3 only"),
    "broadcast_to": (lambda v: np.broadcast_to(v, (4, 3)), r"cannot be broadcast to \(4, 3\)"),
    "roll_axis": (lambda v: np.roll(v, 1, axis=2), "axis 2 is out of bounds"),
    "diagonal": (lambda v: np.diagonal(v, 0, 1, 1), "cannot be the same"),
    "take_float": (lambda v: np.take(v, [0.5]), "indices must be integers"),
    "repeat": (lambda v: np.repeat(v, [1, 2]), "one non-negative int or one per entry"),
    "norm_ord": (lambda v: np.linalg.norm(v, 3), "matrix norm ord=3 is not supported"),
    "svd_vectors": (lambda v: np.linalg.svd(v), "give full_matrices=False"),
    "pinv_rcond": (lambda v: np.linalg.pinv(v, rcond=1e-3), "only numpy's default cutoff"),
    "qr_wide": (lambda v: np.linalg.qr(v.T), "give a tall or square matrix"),
    "qr_mode": (lambda v: np.linalg.qr(v, mode="complete"), "only mode='reduced'"),
    "norm_0": (lambda v: np.linalg.norm(v[0], 0), "vector norm ord=0 is not supported"),
    "norm_3d": (lambda v: np.linalg.norm(v[None], 1), "needs a 1-D or 2-D array"),
    "norm_axes": (lambda v: np.linalg.norm(v[None], axis=(0, 1, 2)), "names 3 axes"),
    "sort_order": (lambda v: np.sort(v, order="a"), "structured array"),
    "diff": (lambda v: np.diff(v, n=-1), "non-negative int"),
    "inner": (lambda v: np.inner(v, v.T), "last axes of shapes"),
    "vdot": (lambda v: np.vdot(v, v[0]), "6 and 2 entries"),
    "multi_dot": (lambda v: np.linalg.multi_dot([v]), "at least two arrays"),
    "matrix_power": (lambda v: np.linalg.matrix_power(v, 2), "give a square matrix"),
    "matrix_power_n": (lambda v: np.linalg.matrix_power(v[:2], 1.5), "must be an int"),
    "eigvalsh": (lambda v: np.linalg.eigvalsh(v), "give a non-empty square matrix"),
    "eigvalsh_uplo": (lambda v: np.linalg.eigvalsh(v[:2], UPLO="X"), "UPLO must be"),
    "triu": (lambda v: np.triu(v[0, 0]), "zero-dimensional array has no triangle"),
    "roll": (lambda v: np.roll(v, (1, 2, 3), axis=(0, 1)), "3 shifts do not pair"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_arguments_raise_program_errors_that_say_what_is_wrong(name: str) -> None:
    fn, message = BAD[name]
    with pytest.raises(ProgramError, match=message):
        lagrad.trace(fn, X[:, :2])


def test_the_unsupported_list_names_the_new_functions() -> None:
    with pytest.raises(ProgramError, match="'cumprod'.*'flip'.*'norm'.*'sort'"):
        lagrad.trace(lambda v: np.nanargmax(v), V)


def test_cumprod_is_exact_where_entries_are_zero_to_second_order() -> None:
    x = np.array([2.0, 0.0, 3.0, 0.0, 5.0])

    def others(i: int, *skip: int) -> float:  # product of x_0..x_i but the skipped ones
        return float(np.prod([x[m] for m in range(i + 1) if m not in skip]))
    # d C_i / d x_j: the other entries up to i; one zero left makes it nonzero
    jac = np.array([[others(i, j) if j <= i else 0.0 for j in range(5)] for i in range(5)])
    for mode in ("reverse", "forward"):
        np.testing.assert_array_equal(lagrad.jacobian(np.cumprod, mode=mode)(x), jac)
    hess = np.array([[sum(others(i, j, k) for i in range(max(j, k), 5)) if j != k else 0.0
                      for k in range(5)] for j in range(5)])
    np.testing.assert_allclose(lagrad.hessian(lambda v: np.sum(np.cumprod(v)))(x), hess,
                               rtol=0, atol=1e-12)
    batched = lagrad.vmap(lagrad.grad(lambda v: np.sum(np.cumprod(v))))(np.stack([x, x[::-1]]))
    np.testing.assert_array_equal(batched[0], jac.sum(axis=0))
