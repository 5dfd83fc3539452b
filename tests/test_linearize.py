"""lagrad.linearize (jax.linearize): the value and a tangent map at fixed
primals, checked against analytic derivatives, finite differences and
lagrad.jvp; its vmap is one tangent solve for a batch of directions."""

from __future__ import annotations

import numpy as np
import pytest
from test_seed_blocks import f
from test_seed_blocks import jacobian_of_f as jac_f

import lagrad
from lagrad.errors import OptionError, ProgramError

X = np.array([0.3, -0.7, 1.1])


def test_value_and_tangent_map_are_analytic() -> None:
    y, f_jvp = lagrad.linearize(f, X)
    np.testing.assert_allclose(y, np.sin(X) * X[::-1], rtol=1e-15)
    t = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(f_jvp(t), jac_f(X) @ t, rtol=1e-14)
    np.testing.assert_allclose(f_jvp(2.0 * t), 2.0 * f_jvp(t), rtol=1e-15)  # linear


def test_vmap_gives_the_jacobian_columns() -> None:
    _, f_jvp = lagrad.linearize(f, X)
    np.testing.assert_allclose(lagrad.vmap(f_jvp)(np.eye(3)), jac_f(X).T, rtol=1e-14)
    np.testing.assert_allclose(lagrad.vmap(f_jvp, in_axes=1, out_axes=1)(np.eye(3)),
                               jac_f(X), rtol=1e-14)


def test_pytrees_several_primals_and_aux_match_jvp() -> None:
    def g(params, b):  # noqa: ANN001, ANN202
        out = {"p": params["w"] * b, "s": lagrad.sum(params["w"]) * b[0]}
        return out, params["w"] + 1.0
    params, b = {"w": np.array([0.5, 2.0])}, np.array([1.5, -1.0])
    value, f_jvp, aux = lagrad.linearize(g, params, b, has_aux=True)
    np.testing.assert_allclose(aux, params["w"] + 1.0)
    rng = np.random.default_rng(0)
    tw, tb = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    batch = lagrad.vmap(f_jvp)({"w": tw}, tb)
    for j in range(4):
        one = f_jvp({"w": tw[j]}, tb[j])
        ref = lagrad.jvp(g, (params, b), ({"w": tw[j]}, tb[j]), has_aux=True)[1]
        for key in ("p", "s"):
            np.testing.assert_allclose(one[key], ref[key], rtol=1e-14)
            np.testing.assert_allclose(batch[key][j], one[key], rtol=1e-14)


def test_through_a_fixed_point_against_finite_differences() -> None:
    w = np.array([[0.2, -0.1], [0.3, 0.1]])

    def layer(x):  # noqa: ANN001, ANN202
        return lagrad.fixed_point(lambda z, x: lagrad.tanh(w @ z + x), np.zeros(2), x)
    x = np.array([0.4, -0.2])
    _, f_jvp = lagrad.linearize(layer, x)
    cols = lagrad.vmap(f_jvp, out_axes=1)(np.eye(2))
    h = 1e-6
    for i in range(2):
        e = np.eye(2)[i] * h
        fd = (np.asarray(lagrad.linearize(layer, x + e)[0]) -
              np.asarray(lagrad.linearize(layer, x - e)[0])) / (2 * h)
        np.testing.assert_allclose(cols[:, i], fd, rtol=1e-7, atol=1e-9)


def test_float32_primals_give_float32_tangents() -> None:
    y, f_jvp = lagrad.linearize(lambda x: 2.0 * x, np.ones(2, dtype=np.float32))
    assert y.dtype == np.float32 and f_jvp(np.ones(2)).dtype == np.float32
    assert lagrad.vmap(f_jvp)(np.eye(2)).dtype == np.float32


def test_errors() -> None:
    _, f_jvp = lagrad.linearize(f, X)
    with pytest.raises(ProgramError, match="shape"):
        f_jvp(np.ones(2))
    with pytest.raises(OptionError, match="1 primals but 2 tangents"):
        f_jvp(np.ones(3), np.ones(3))
    with pytest.raises(ProgramError, match="batch axis first"):
        lagrad.vmap(f_jvp)(np.ones((2, 4)))
    with pytest.raises(OptionError, match="in_axes"):
        lagrad.vmap(f_jvp, in_axes=None)(np.eye(3))
    with pytest.raises(ProgramError, match="complex|real"):
        f_jvp(np.array(["a", "b", "c"]))


def test_scalar_inputs_and_scalar_outputs_batch_under_vmap() -> None:
    """vmap names the batch axis, so a (k,) batch for scalars is never
    ambiguous there (unlike a (k,) seed given to Solution.tangent_system)."""
    _, f_jvp = lagrad.linearize(lambda a, b: a * b, 1.5, 2.0)
    np.testing.assert_allclose(lagrad.vmap(f_jvp)(np.array([1.0, 0.0, 2.0]),
                                                  np.array([0.0, 1.0, 1.0])),
                               [2.0, 1.5, 5.5], rtol=1e-15)
    _, pullback = lagrad.vjp(lambda a: lagrad.sum(a * a), np.array([1.0, 2.0]))
    grads, = lagrad.vmap(pullback)(np.array([1.0, 2.0, 3.0]))  # scalar output: 3 cotangents
    np.testing.assert_allclose(grads, np.outer([1.0, 2.0, 3.0], [2.0, 4.0]), rtol=1e-15)
    _, pullback = lagrad.vjp(lambda a, b: a * b, 1.5, 2.0)
    ga, gb = lagrad.vmap(pullback)(np.array([1.0, -1.0]))
    np.testing.assert_allclose(ga, [2.0, -2.0], rtol=1e-15)
    np.testing.assert_allclose(gb, [1.5, -1.5], rtol=1e-15)
