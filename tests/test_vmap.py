"""lagrad.vmap against a Python loop over the instances: values, gradients and
tangents of acyclic and cyclic programs, in_axes / out_axes, one trace, the
operations without a batching rule of their own (one equation per instance),
and the errors."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import lagrad
from lagrad.errors import BatchingError, OptionError, ProgramError

B, N = 5, 3
TIGHT = {"method": "newton", "tol": 1e-14}


@pytest.fixture
def data(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"xs": rng.standard_normal((B, N)), "w": 0.5 * rng.standard_normal((N, N)),
            "ws": 0.5 * rng.standard_normal((B, N, N)), "ys": rng.standard_normal((B, N))}


def loop(fn, *args, in_axes):
    """fn applied instance by instance, results stacked on axis 0."""
    outs = []
    for i in range(B):
        call = [a if ax is None else np.take(a, i, axis=ax) for a, ax in zip(args, in_axes)]
        outs.append(fn(*call))
    return outs


def close(a, b, tol=1e-12):
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=0, atol=tol)


def mlp(x, w):
    h = lagrad.tanh(w @ x)
    return (h * x).sum() + lagrad.sin(x[0]) * x[1] + (x @ w).mean()


def deq(x, w):
    z = lagrad.fixed_point(lambda z, x, w: 0.5 * lagrad.tanh(w @ z) + x, np.zeros(N), x, w)
    return (z * z).sum()


def cube_roots(x, w):
    z = lagrad.root(lambda z, x: z ** 3 + z - x, np.zeros(N), x)
    return (z * (w @ x)).sum()


@pytest.mark.parametrize("fn", [mlp, deq, cube_roots])
@pytest.mark.parametrize("in_axes", [(0, None), (0, 0)])
def test_values_and_gradients_match_a_loop(fn, in_axes, data):
    w = data["w"] if in_axes[1] is None else data["ws"]
    args = (data["xs"], w)
    value = lagrad.vmap(fn, in_axes)(*args)
    close(value, loop(fn, *args, in_axes=in_axes))
    vg = lagrad.value_and_grad(fn, argnums=(0, 1), solve_options=TIGHT)
    v, (gx, gw) = lagrad.vmap(vg, in_axes)(*args)
    expected = loop(vg, *args, in_axes=in_axes)
    close(v, [e[0] for e in expected])
    close(gx, [e[1][0] for e in expected])
    close(gw, [e[1][1] for e in expected])  # per-instance, also for a shared w
    assert gw.shape == (B, N, N)


def test_in_axes_one_and_out_axes(data):
    xt = data["xs"].T  # the batch on axis 1
    out = lagrad.vmap(lambda x: lagrad.exp(x) * x[0], in_axes=1, out_axes=1)(xt)
    assert out.shape == (N, B)
    close(out.T, [np.exp(x) * x[0] for x in data["xs"]])
    g = lagrad.vmap(lagrad.grad(mlp), in_axes=(1, None))(xt, data["w"])
    close(g, loop(lagrad.grad(mlp), data["xs"], data["w"], in_axes=(0, None)))


def test_shared_first_argument(data):
    f = lambda w, x: (w @ x).sum() * x[2]  # noqa: E731
    out = lagrad.vmap(lagrad.grad(f, argnums=1), in_axes=(None, 0))(data["w"], data["xs"])
    close(out, loop(lagrad.grad(f, argnums=1), data["w"], data["xs"], in_axes=(None, 0)))


def test_pytree_prefix_and_aux(data):
    def loss(p, x):
        r = p["w"] @ x + p["b"]
        return (r ** 2).sum(), r
    params = {"w": data["w"], "b": data["ys"]}
    vg = lagrad.value_and_grad(loss, has_aux=True)
    (v, r), g = lagrad.vmap(vg, in_axes=({"w": None, "b": 0}, 0))(params, data["xs"])
    for i in range(B):
        (vi, ri), gi = vg({"w": data["w"], "b": data["ys"][i]}, data["xs"][i])
        close(v[i], vi)
        close(r[i], ri)
        close(g["w"][i], gi["w"])
        close(g["b"][i], gi["b"])


def test_tree_output(data):
    f = lambda x: {"s": x.sum(), "v": lagrad.tanh(x)}  # noqa: E731
    out = lagrad.vmap(f)(data["xs"])
    close(out["s"], data["xs"].sum(axis=1))
    close(out["v"], np.tanh(data["xs"]))


@pytest.mark.parametrize("fn", [mlp, deq])
def test_jvp_matches_a_loop(fn, data):
    vj = lagrad.vmap(functools.partial(lagrad.jvp, fn, solve_options=TIGHT),
                     in_axes=((0, None), (0, None)))
    tw = np.ones((N, N))
    y, t = vj((data["xs"], data["w"]), (data["ys"], tw))
    for i in range(B):
        yi, ti = lagrad.jvp(fn, (data["xs"][i], data["w"]), (data["ys"][i], tw),
                            solve_options=TIGHT)
        close(y[i], yi)
        close(t[i], ti)


OPS = {
    "matrix @ vector": lambda x, y, w: w @ x,
    "vector @ matrix": lambda x, y, w: x @ w,
    "vector @ vector": lambda x, y, w: x @ y,
    "batched matrix @ vector": lambda x, y, w: lagrad.outer(x, y) @ y,
    "vector @ batched matrix": lambda x, y, w: y @ lagrad.outer(x, y),
    "batched matrices": lambda x, y, w: lagrad.outer(x, y) @ lagrad.outer(y, x),
    "batched matrix @ matrix": lambda x, y, w: lagrad.outer(x, y) @ w,
    "matrix @ batched matrix": lambda x, y, w: w @ lagrad.outer(x, y),
    "dot": lambda x, y, w: lagrad.dot(x, w),
    "reshape": lambda x, y, w: lagrad.outer(x, y).reshape(-1)[::2],
    "transpose": lambda x, y, w: lagrad.outer(x, w[0]).T * y,
    "getitem": lambda x, y, w: x[1:] * y[np.array([0, 2])],
    "getitem 2-d": lambda x, y, w: lagrad.outer(x, y)[np.array([0, 2]), 1],
    "sum axis": lambda x, y, w: lagrad.outer(x, y).sum(axis=0) + lagrad.outer(x, y).sum(),
    "mean": lambda x, y, w: lagrad.mean(lagrad.outer(x, y), axis=1, keepdims=True),
    "max": lambda x, y, w: lagrad.max(lagrad.outer(x, y), axis=1) + x.max(),
    "cumsum": lambda x, y, w: lagrad.cumsum(x) + lagrad.cumsum(lagrad.outer(x, y), axis=1)[1],
    "where": lambda x, y, w: lagrad.where(x > 0, x, y * 2.0) + np.where(w[0] > 0, x, 0.0),
    "concatenate": lambda x, y, w: lagrad.concatenate([x, w[1], y]),
    "stack": lambda x, y, w: lagrad.stack([x, y], axis=1),
    "softmax": lambda x, y, w: lagrad.softmax(x * y),
    "scalar instance": lambda x, y, w: x[0] * w + y[1],
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_batching_rules(name, data):
    op = OPS[name]
    f = lambda x, y, w: (op(x, y, w) * 1.5).sum()  # noqa: E731
    args = (data["xs"], data["ys"], data["w"])
    axes = (0, 0, None)
    close(lagrad.vmap(op, axes)(*args), loop(lagrad.jit(op), *args, in_axes=axes))
    g = lagrad.vmap(lagrad.grad(f, argnums=(0, 1)), axes)(*args)
    expected = loop(lagrad.grad(f, argnums=(0, 1)), *args, in_axes=axes)
    close(g[0], [e[0] for e in expected])
    close(g[1], [e[1] for e in expected])


def test_plain_values_match_numpy(data):
    f = lambda x, w: np.tanh(w @ x) + x @ w  # noqa: E731
    close(lagrad.vmap(f, (0, None))(data["xs"], data["w"]),
          [np.tanh(data["w"] @ x) + x @ data["w"] for x in data["xs"]])


def test_one_trace_and_one_block(data):
    vg = lagrad.vmap(lagrad.grad(deq), in_axes=(0, None))
    vg(data["xs"], data["w"])
    vg(data["xs"] + 1.0, data["w"] * 0.5)
    assert len(vg.cache) == 1
    program = next(iter(vg.cache.values())).program
    cyclic = [b for b in program.blocks if b.cyclic]
    assert len(cyclic) == 1  # the B instances are one block over a (B, N) unknown
    unknowns = [v for v in program.variables if v.kind == "unknown"]
    assert [v.shape for v in unknowns] == [(B, N)]
    vg(np.ones((B + 1, N)), data["w"])
    assert len(vg.cache) == 2  # one trace per batch size


def test_jitted_plain_function(data):
    close(lagrad.vmap(lagrad.jit(mlp), (0, None))(data["xs"], data["w"]),
          loop(mlp_value, data["xs"], data["w"], in_axes=(0, None)))


def mlp_value(x, w):
    return float(np.sum(np.tanh(w @ x) * x) + np.sin(x[0]) * x[1] + np.mean(x @ w))


def test_float32_in_float32_out(data):
    g = lagrad.vmap(lagrad.grad(mlp), (0, None))(data["xs"].astype(np.float32), data["w"])
    assert g.dtype == np.float32


@lagrad.custom_vjp
def _cube(x):
    return x ** 3


_cube.defvjp(lambda x: (x ** 3, x), lambda x, g: (3.0 * x ** 2 * g,))


@lagrad.custom_jvp
def _softplus(x):
    return np.logaddexp(0.0, x)


@_softplus.defjvp
def _softplus_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return _softplus(x), t / (1.0 + np.exp(-x))


ROW, COL = np.array([0, 2, 2]), np.array([1, 0, 2])  # N = 3 stored entries
ONE_BY_ONE = {  # primitives and arguments no batching rule covers
    "custom_vjp": lambda x: lagrad.sum(_cube(x) * x),
    "custom_jvp": lambda x: lagrad.sum(_softplus(x) ** 2),
    "coo_matvec": lambda x: lagrad.sum(lagrad.coo_matvec(x + 1.0, ROW, COL, x ** 2,
                                                          shape=(N, N)) ** 2),
    "nested_grad": lambda x: lagrad.sum(lagrad.grad(lambda y: lagrad.sum(y ** 3))(x) * x),
    "separated_indices": lambda x: lagrad.sum(lagrad.reshape(x, (1, 1, N))[
        np.array([0, 0]), :, np.array([2, 0])] ** 2),
    "in_a_fixed_point": lambda x: lagrad.sum(lagrad.fixed_point(
        lambda z, x: 0.3 * _softplus(z) + x, np.zeros(N), x, **TIGHT)),
}


@pytest.mark.parametrize("name", sorted(ONE_BY_ONE))
def test_a_primitive_without_a_rule_batches_one_instance_at_a_time(data, name):
    fn = ONE_BY_ONE[name]
    close(lagrad.vmap(fn)(data["xs"]), loop(fn, data["xs"], in_axes=(0,)))
    close(lagrad.vmap(lagrad.grad(fn))(data["xs"]),
          loop(lagrad.grad(fn), data["xs"], in_axes=(0,)))
    assert issubclass(BatchingError, NotImplementedError)


@pytest.mark.parametrize(("sa", "sb"), [((2, 4, 3), (3, 5)), ((4, 3), (2, 3, 5)),
                                        ((3,), (2, 3, 5)), ((2, 4, 3), (3,)),
                                        ((2, 4, 3), (2, 3, 5)), ((4, 3), (1, 2, 3, 5)),
                                        ((2, 1, 4, 3), (3, 3, 5))])
@pytest.mark.parametrize("batched", ["a", "b", "both"])
def test_stacks_of_matrices_batch_with_the_batch_axis_first(sa, sb, batched):
    rng = np.random.default_rng(7)
    a = rng.normal(size=((3,) if batched != "b" else ()) + sa)
    b = rng.normal(size=((3,) if batched != "a" else ()) + sb)
    axes = (None if batched == "b" else 0, None if batched == "a" else 0)

    def pick(x, i, axis):
        return x if axis is None else x[i]
    got = lagrad.vmap(lagrad.matmul, in_axes=axes)(a, b)
    np.testing.assert_allclose(got, [pick(a, i, axes[0]) @ pick(b, i, axes[1])
                                     for i in range(3)], rtol=1e-13)

    def loss(x, y):
        return lagrad.sum(lagrad.sin(lagrad.matmul(x, y)))
    grads = lagrad.vmap(lagrad.grad(loss, argnums=(0, 1)), in_axes=axes)(a, b)
    for k, axis in enumerate(axes):
        if axis is None:  # a shared operand's gradient is each instance's, stacked
            continue
        expected = [lagrad.grad(loss, argnums=(0, 1))(pick(a, i, axes[0]),
                                                       pick(b, i, axes[1]))[k] for i in range(3)]
        np.testing.assert_allclose(grads[k], expected, rtol=1e-12, atol=1e-14)


def test_argument_errors(data):
    with pytest.raises(OptionError, match="different sizes"):
        lagrad.vmap(lambda x, y: x * y)(data["xs"], np.ones((B + 1, N)))
    with pytest.raises(OptionError, match="no argument is batched"):
        lagrad.vmap(lambda x: x, in_axes=None)(data["xs"])
    with pytest.raises(OptionError, match="one entry per positional argument"):
        lagrad.vmap(lambda x, y: x * y, in_axes=(0,))(data["xs"], data["xs"])
    with pytest.raises(OptionError, match="no such axis"):
        lagrad.vmap(lambda x: x, in_axes=2)(data["xs"])
    with pytest.raises(OptionError, match="does not match"):
        lagrad.vmap(lambda p: p["a"], in_axes=({"b": 0},))({"a": data["xs"]})
    with pytest.raises(OptionError, match="one entry per positional argument"):
        lagrad.vmap(lambda x, y: x * y, in_axes=[0, 0])(data["xs"], data["xs"])
    with pytest.raises(BatchingError, match="nested vmap"):
        lagrad.vmap(lagrad.vmap(lambda x: x * 2.0))(np.ones((2, B, N)))
    with pytest.raises(OptionError, match="out_axes"):
        lagrad.vmap(lambda x: x, out_axes=(0,))
    with pytest.raises(ProgramError, match="scalar output per instance"):
        lagrad.vmap(lagrad.grad(lambda x: x * 2.0))(data["xs"])


def test_einsum_batches_with_a_label_for_the_batch_axis(data):
    """A batched operand gets a new leading label, the output too; an
    unbatched operand is shared."""
    xs = data["xs"]
    w = np.random.default_rng(5).normal(size=(N, N))
    f = lambda x: lagrad.einsum("i,ij,j->", x, w, x)  # noqa: E731
    np.testing.assert_allclose(lagrad.vmap(f)(xs), [x @ w @ x for x in xs], rtol=1e-13)
    np.testing.assert_allclose(lagrad.vmap(lagrad.grad(f))(xs), [(w + w.T) @ x for x in xs],
                               rtol=1e-12)
    ws = np.stack([w, 2.0 * w.T])
    both = lagrad.vmap(lambda x, a: np.einsum("ii,i->i", a, x))(xs[:2], ws)
    np.testing.assert_allclose(both, [np.diag(a) * x for x, a in zip(xs[:2], ws)], rtol=1e-14)

