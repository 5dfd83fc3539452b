"""Custom derivative rules: a user's function as one primitive (JAX's
``custom_vjp`` and ``custom_jvp``).

``f = custom_vjp(fn)`` then ``f.defvjp(fwd, bwd)``, with
``fwd(*args) -> (out, residuals)`` and ``bwd(residuals, g) -> cotangents``
(one per argument; ``None`` for zero); or ``f = custom_jvp(fn)`` then
``f.defjvp(jvp)``, with ``jvp(primals, tangents) -> (out, tangent_out)``.
Called on numbers, ``f`` is ``fn``. Called on traced variables, it records
one equation ``v = fn(...)`` whose primitive is built here from ``fn`` and the
rule, so that evaluation, both sweeps, sparse assembly and Newton's method in
a cyclic block treat it like any built-in primitive.

What each rule gives, and what is derived from it:

* the output shape, which a primitive must know while tracing (when no values
  exist), is found by calling ``fn`` once on arrays of ones of the arguments'
  shapes, and remembered per argument shapes; pass ``out_shape=`` where ``fn``
  cannot be evaluated at ones (or it is too costly);
* a VJP rule gives cotangents; the JVP (forward mode) and the local Jacobian
  (Newton's method and the direct solvers inside a cyclic block) are derived
  by applying ``bwd`` to the unit cotangents: ``out.size`` calls, cheap for
  the small outputs such rules usually have;
* a JVP rule gives tangents; the VJP and the local Jacobian are derived by
  applying it to the unit tangents of each argument: ``arg.size`` calls.

The residuals of ``fwd`` and the cotangents of one ``bwd`` call are memoized on
the argument (and cotangent) values, so one reverse sweep calls ``fwd`` and
``bwd`` once per equation, however many of its arguments are variables.

Pickling: a program that uses ``f`` pickles when ``f`` (the decorated
function, found by its module and name) or else ``fn`` and its rules are
module-level objects; otherwise pickle raises its usual error.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from lagrad.errors import MissingDerivativeError, ProgramError, require_callable
from lagrad.ir import ops
from lagrad.ir import primitives as P
from lagrad.ir.memo import ValueMemo, value_key
from lagrad.ir.program import Program, Variable

__all__ = ["custom_vjp", "custom_jvp", "CustomVJP", "CustomJVP", "stop_gradient"]

Array = NDArray[np.float64]
Shape = tuple[int, ...]
OutShape = Shape | Callable[..., Shape] | None


def stop_gradient(x: Any) -> Any:
    """``x`` itself, with derivative zero (as ``jax.lax.stop_gradient``).

    Examples
    --------
    >>> import lagrad
    >>> float(lagrad.grad(lambda x: x * lagrad.stop_gradient(x))(3.0))  # d/dx (x * c) = c
    3.0
    """
    return P.stop_gradient(x)


class _CustomRule:
    """What custom_vjp and custom_jvp share: calling, the shape probe, the
    primitive and its derived rules' plumbing, pickling by name."""

    kind = ""

    def __init__(self, fn: Callable[..., Any], out_shape: OutShape = None) -> None:
        require_callable(fn, f"lagrad.{self.kind}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.out_shape = out_shape
        self.name = getattr(fn, "__name__", "custom")
        self.signature: inspect.Signature | None = None
        if not isinstance(fn, np.ufunc):  # a ufunc's arguments are its nin inputs
            try:
                self.signature = inspect.signature(fn)
            except (TypeError, ValueError):
                pass
        self._shapes: dict[tuple[Shape, ...], Shape] = {}
        self._memo = ValueMemo(maxsize=8)
        self._rule_programs: dict[tuple[Shape, ...], Program] = {}
        self.primitive = P.Primitive(self.name, self._value, self._shape, vjp=self._vjp,
                                     jvp=self._jvp, jacobian=self._jacobian,
                                     second_vjp=self._second_vjp,
                                     doc=f"{self.kind} of {self.name}")

    # ------------------------------------------------------------ calling
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._check_defined()
        args = self._positional(args, kwargs)
        if any(isinstance(a, P.Tracer) for a in args):
            return self.primitive(*args)
        return self.fn(*args)

    def _positional(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """Keyword arguments and positional defaults as positions, as JAX resolves
        them: the rule gets every positional parameter of ``fn``."""
        if self.signature is None:
            if kwargs:
                raise ProgramError(f"{self.kind} function {self.name!r}: keyword arguments "
                                   "need a function with a signature; pass them by position")
            return args
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as err:
            raise ProgramError(f"{self.kind} function {self.name!r}: {err}") from err
        bound.apply_defaults()
        for name, param in self.signature.parameters.items():
            if param.kind is param.KEYWORD_ONLY and name not in kwargs:
                del bound.arguments[name]  # an option left at its default, not data
        if bound.kwargs:
            raise ProgramError(f"{self.kind} function {self.name!r}: keyword-only arguments "
                               f"{sorted(bound.kwargs)} cannot be differentiated; make them "
                               "positional, or fix them with functools.partial before "
                               "decorating")
        return tuple(bound.args)

    def _check_defined(self) -> None:
        raise NotImplementedError

    # -------------------------------------------------- value and shape
    def _shape(self, *shapes: Shape) -> Shape:
        hit = self._shapes.get(shapes)
        if hit is not None:
            return hit
        if callable(self.out_shape):
            shape = tuple(int(n) for n in self.out_shape(*shapes))
        elif self.out_shape is not None:
            shape = tuple(int(n) for n in self.out_shape)
        else:
            shape = self._probe(shapes)
        self._shapes[shapes] = shape
        return shape

    def _probe(self, shapes: tuple[Shape, ...]) -> Shape:
        try:
            with np.errstate(all="ignore"):
                out = self.fn(*(np.ones(s) for s in shapes))
        except Exception as err:
            raise ProgramError(
                f"{self.kind} function {self.name!r} failed when called on arrays of ones of "
                f"shapes {list(shapes)} to find its output shape ({type(err).__name__}: "
                f"{err}); pass out_shape=... to {self.kind}") from err
        arr = np.asarray(out) if not isinstance(out, (tuple, list, dict)) else np.array(None)
        if arr.dtype.kind not in "biuf":
            raise ProgramError(f"{self.kind} function {self.name!r} returned "
                               f"{type(out).__name__}, not one real array; a custom rule "
                               "has one array output (concatenate several)")
        return arr.shape

    def _value(self, *args: Array) -> Array:
        out = np.asarray(self.fn(*_read_only(args)), dtype=float)
        expected = self._shape(*(np.shape(a) for a in args))
        if out.shape != expected:
            raise ProgramError(f"{self.kind} function {self.name!r} returned shape "
                               f"{out.shape}, but {expected} when its output shape was found; "
                               "the output shape must depend only on the argument shapes")
        return out

    # ------------------------------------- derivative rules (the primitive's)
    def _vjp(self, k: int, g: Array, ans: Array, *args: Array) -> Array:
        raise NotImplementedError

    def _jvp(self, ts: Sequence[Array | None], ans: Array, *args: Array) -> Array:
        raise NotImplementedError

    def _jacobian(self, k: int, ans: Array, *args: Array) -> sp.csr_matrix:
        raise NotImplementedError

    # ------------------------------------------ second order (the rule's derivative)
    # Second order needs the derivative of the VJP along argument tangents t with
    # the cotangent g fixed: sum_m g . d^2 f / d arg_k d arg_m . t_m for each k,
    # which is the gradient with respect to the arguments of the scalar
    # phi(args) = g . J(args) t, J the rule's Jacobian. phi is written with the
    # rule itself (g . jvp(args, t), or t . bwd(residuals(args), g)), traced once
    # per argument shapes with args, g and t as inputs, and differentiated as any
    # program: one reverse solve per call. A rule that cannot be traced (numpy
    # that lagrad does not record, scipy.special, control flow on values) has
    # no known derivative: MissingDerivativeError says what to change.
    def _second_vjp(self, k: int, g: Array, ts: Sequence[Array | None], ans: Array,
                    *args: Array) -> Array:
        g = np.asarray(g, dtype=float)
        tangents = tuple(np.zeros(np.shape(a)) if t is None else np.asarray(t, dtype=float)
                         for a, t in zip(args, ts))

        def run() -> tuple[Array, ...]:
            program = self._rule_program(tuple(np.shape(a) for a in args), np.shape(g))
            grads = program.solve(*args, g, *tangents).grad()
            return tuple(np.asarray(d, dtype=float) for d in grads[:len(args)])
        return self._memo.get(("second", value_key(*args, g, *tangents)), run)[k]

    def _rule_program(self, shapes: tuple[Shape, ...], g_shape: Shape) -> Program:
        """The program of phi(args, g, t) = g . J(args) t, traced from the rule."""
        key = shapes + (g_shape,)
        hit = self._rule_programs.get(key)
        if hit is not None:
            return hit
        program = Program(f"derivative of the rule of {self.name}")
        primals = tuple(program.input(f"x{k}", s) for k, s in enumerate(shapes))
        g = program.input("g", g_shape)
        tangents = tuple(program.input(f"t{k}", s) for k, s in enumerate(shapes))
        try:
            phi = self._linear_form(primals, g, tangents)
        except MissingDerivativeError:
            raise
        except Exception as err:
            raise MissingDerivativeError(
                f"{self.kind} function {self.name!r}: second derivatives (hessian, hvp, "
                f"grad of grad) differentiate its {self._rule_name}, but lagrad could not "
                f"trace it ({type(err).__name__}: {err}). Write the rule with lagrad "
                "operations (lagrad.exp, lagrad.sum, numpy ufuncs on the traced arguments), "
                "and put any black box it calls in a custom_jvp function of its own, whose "
                "rule gives that box's derivative") from err
        program.output(phi if isinstance(phi, Variable) else ops.sum(g) * 0.0)
        self._rule_programs[key] = program
        return program

    _rule_name = "rule"

    def _linear_form(self, primals: tuple[Variable, ...], g: Variable,
                     tangents: tuple[Variable, ...]) -> Any:
        raise NotImplementedError

    # ----------------------------------------------------------- pickling
    def __reduce__(self) -> Any:
        module = sys.modules.get(getattr(self, "__module__", ""), None)
        qualname = getattr(self, "__qualname__", "")
        found: Any = module
        for part in qualname.split("."):
            found = getattr(found, part, None)
        if found is self:
            return qualname  # pickled by reference, as a function is
        return (_rebuild, (type(self), self.fn, self.out_shape, self._rules()))

    def _rules(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def _rebuild(cls: type[_CustomRule], fn: Callable[..., Any], out_shape: OutShape,
             rules: tuple[Any, ...]) -> _CustomRule:
    """Unpickle a custom rule that is not reachable by name."""
    rule = cls(fn, out_shape)
    rule._set_rules(*rules)
    return rule


class CustomVJP(_CustomRule):
    """A function with a hand-written reverse-mode rule; see :func:`custom_vjp`."""

    kind = "custom_vjp"

    def __init__(self, fn: Callable[..., Any], out_shape: OutShape = None) -> None:
        self.fwd: Callable[..., Any] | None = None
        self.bwd: Callable[..., Any] | None = None
        super().__init__(fn, out_shape)

    def defvjp(self, fwd: Callable[..., Any], bwd: Callable[..., Any]) -> None:
        """Set the rule: ``fwd(*args) -> (out, residuals)`` and
        ``bwd(residuals, g) -> (cotangent of each argument, ...)``."""
        if not callable(fwd) or not callable(bwd):
            raise ProgramError(f"custom_vjp {self.name!r}: defvjp(fwd, bwd) takes two "
                               "functions")
        self._set_rules(fwd, bwd)

    def _set_rules(self, fwd: Callable[..., Any] | None, bwd: Callable[..., Any] | None
                   ) -> None:
        self.fwd, self.bwd = fwd, bwd
        self._memo.clear()

    def _rules(self) -> tuple[Any, ...]:
        return (self.fwd, self.bwd)

    def _check_defined(self) -> None:
        if self.fwd is None:
            raise ProgramError(f"custom_vjp function {self.name!r} has no rule; call "
                               f"{self.name}.defvjp(fwd, bwd) before using it")

    def _residuals(self, args: tuple[Array, ...]) -> Any:
        def run() -> Any:
            assert self.fwd is not None
            pair = self.fwd(*_read_only(args))
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ProgramError(f"custom_vjp {self.name!r}: fwd must return a pair "
                                   f"(out, residuals), got {type(pair).__name__}")
            return pair[1]
        return self._memo.get(("fwd", value_key(*args)), run)

    def _cotangents(self, args: tuple[Array, ...], g: Array) -> tuple[Array, ...]:
        def run() -> tuple[Array, ...]:
            assert self.bwd is not None
            cts = self.bwd(self._residuals(args), _read_only((g,))[0])
            return _check_tuple(cts, args, f"custom_vjp {self.name!r}: bwd", "cotangent")
        return self._memo.get(("bwd", value_key(*args, g)), run)

    def _vjp(self, k: int, g: Array, ans: Array, *args: Array) -> Array:
        return self._cotangents(args, np.asarray(g, dtype=float))[k]

    def _jacobians(self, ans: Array, args: tuple[Array, ...]) -> tuple[Array, ...]:
        """d out / d arg_k for every k, as dense (out.size, arg_k.size) blocks: row r
        is ``bwd`` applied to the unit cotangent e_r."""
        def run() -> tuple[Array, ...]:
            n = np.size(ans)
            blocks = [np.empty((n, np.size(a))) for a in args]
            for r in range(n):
                e = np.zeros(n)
                e[r] = 1.0
                for block, ct in zip(blocks, self._cotangents(args, e.reshape(np.shape(ans)))):
                    block[r] = np.ravel(ct)
            return tuple(blocks)
        return self._memo.get(("jacobian", value_key(*args)), run)

    def _jvp(self, ts: Sequence[Array | None], ans: Array, *args: Array) -> Array:
        out = np.zeros(np.size(ans))
        for block, t in zip(self._jacobians(ans, args), ts):
            if t is not None:
                out += block @ np.ravel(t)
        return out.reshape(np.shape(ans))

    def _jacobian(self, k: int, ans: Array, *args: Array) -> sp.csr_matrix:
        return sp.csr_matrix(self._jacobians(ans, args)[k])

    _rule_name = "fwd and bwd"

    def _linear_form(self, primals: tuple[Variable, ...], g: Variable,
                     tangents: tuple[Variable, ...]) -> Any:
        # g . J t = sum_m t_m . bwd(residuals, g)_m
        assert self.fwd is not None and self.bwd is not None
        pair = self.fwd(*primals)
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ProgramError(f"fwd must return a pair (out, residuals), got "
                               f"{type(pair).__name__}")
        cts = self.bwd(pair[1], g)
        if not isinstance(cts, (tuple, list)) or len(cts) != len(primals):
            raise ProgramError(f"bwd must return a tuple of {len(primals)} cotangents")
        terms = [ops.sum(t * c) for t, c in zip(tangents, cts) if c is not None]
        return sum(terms[1:], terms[0]) if terms else None


class CustomJVP(_CustomRule):
    """A function with a hand-written forward-mode rule; see :func:`custom_jvp`."""

    kind = "custom_jvp"

    def __init__(self, fn: Callable[..., Any], out_shape: OutShape = None) -> None:
        self.jvp: Callable[..., Any] | None = None
        super().__init__(fn, out_shape)

    def defjvp(self, jvp: Callable[..., Any]) -> Callable[..., Any]:
        """Set the rule ``jvp(primals, tangents) -> (out, tangent_out)``; returns
        ``jvp``, so that ``@f.defjvp`` decorates it."""
        if not callable(jvp):
            raise ProgramError(f"custom_jvp {self.name!r}: defjvp takes a function")
        self._set_rules(jvp)
        return jvp

    def _set_rules(self, jvp: Callable[..., Any] | None) -> None:
        self.jvp = jvp
        self._memo.clear()

    def _rules(self) -> tuple[Any, ...]:
        return (self.jvp,)

    def _check_defined(self) -> None:
        if self.jvp is None:
            raise ProgramError(f"custom_jvp function {self.name!r} has no rule; call "
                               f"{self.name}.defjvp(jvp) before using it")

    def _tangent(self, args: tuple[Array, ...], ts: Sequence[Array | None],
                 shape: Shape) -> Array:
        assert self.jvp is not None
        tangents = tuple(np.zeros(np.shape(a)) if t is None else np.asarray(t, dtype=float)
                         for a, t in zip(args, ts))
        pair = self.jvp(_read_only(args), _read_only(tangents))
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ProgramError(f"custom_jvp {self.name!r}: the rule must return a pair "
                               f"(primal_out, tangent_out), got {type(pair).__name__}")
        out = np.asarray(pair[1], dtype=float)
        if out.ndim == 0 and shape:
            out = np.broadcast_to(out, shape)  # a scalar tangent, such as 0.0
        if out.shape != shape:
            raise ProgramError(f"custom_jvp {self.name!r}: tangent_out has shape "
                               f"{out.shape}, the output has shape {shape}")
        return out

    def _jvp(self, ts: Sequence[Array | None], ans: Array, *args: Array) -> Array:
        return self._tangent(args, ts, np.shape(ans))

    def _block(self, k: int, ans: Array, args: tuple[Array, ...]) -> Array:
        """d out / d arg_k as a dense (out.size, arg_k.size) block: column c is the
        rule applied to the unit tangent e_c of argument k (the others zero)."""
        def run() -> Array:
            size = np.size(args[k])
            block = np.empty((np.size(ans), size))
            for c in range(size):
                e = np.zeros(size)
                e[c] = 1.0
                ts: list[Array | None] = [None] * len(args)
                ts[k] = e.reshape(np.shape(args[k]))
                block[:, c] = np.ravel(self._tangent(args, ts, np.shape(ans)))
            return block
        return self._memo.get(("jacobian", k, value_key(*args)), run)

    def _vjp(self, k: int, g: Array, ans: Array, *args: Array) -> Array:
        return (np.ravel(g) @ self._block(k, ans, args)).reshape(np.shape(args[k]))

    def _jacobian(self, k: int, ans: Array, *args: Array) -> sp.csr_matrix:
        return sp.csr_matrix(self._block(k, ans, args))

    _rule_name = "jvp rule"

    def _linear_form(self, primals: tuple[Variable, ...], g: Variable,
                     tangents: tuple[Variable, ...]) -> Any:
        assert self.jvp is not None  # g . J t = g . tangent_out
        pair = self.jvp(primals, tangents)
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ProgramError(f"the rule must return a pair (primal_out, tangent_out), "
                               f"got {type(pair).__name__}")
        return ops.sum(g * pair[1])


def custom_vjp(fn: Callable[..., Any] | None = None, *, out_shape: OutShape = None) -> Any:
    """Give ``fn`` a hand-written reverse-mode rule (``jax.custom_vjp``).

    Parameters
    ----------
    fn : callable
        ``fn(*args) -> ndarray``: numpy code on arrays, a black box to lagrad.
        Every positional parameter (numbers or arrays) is an argument of the
        rule: keyword arguments and defaults are resolved to positions, as in
        JAX (a numpy ufunc's arguments are its inputs).
    out_shape : tuple or callable, optional
        The output shape, or ``out_shape(*arg_shapes)``. By default it is
        found by calling ``fn`` once on arrays of ones of the arguments'
        shapes, when the function is first traced at those shapes.

    Returns
    -------
    CustomVJP
        Callable as ``fn``; define its rule with ``f.defvjp(fwd, bwd)``:
        ``fwd(*args)`` returns ``(out, residuals)`` and ``bwd(residuals, g)``
        returns a tuple with the cotangent of each argument (its shape, or
        ``None`` for zero) for the output cotangent ``g``.

    Raises
    ------
    ProgramError
        When called before ``defvjp``, when the shape probe fails, or when
        ``bwd`` returns the wrong number or shapes of cotangents (naming
        the argument).

    Notes
    -----
    Forward mode and the local Jacobian (which Newton's method needs inside
    a cyclic block) are derived from ``bwd`` by applying it to the unit
    cotangents, one call per output entry. Second order (:func:`lagrad.hessian`,
    :func:`lagrad.hvp`, ``grad(grad(f))``) differentiates ``fwd`` and ``bwd``:
    the gradient of t . bwd(residuals(args), g) with respect to the arguments,
    traced with lagrad; a rule lagrad cannot trace raises
    :class:`~lagrad.errors.MissingDerivativeError` there. Can be used as
    ``@custom_vjp`` or ``@custom_vjp(out_shape=...)``.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> @lagrad.custom_vjp
    ... def cube(x):
    ...     return x ** 3
    >>> def cube_fwd(x):
    ...     return x ** 3, x          # the residual: x
    >>> def cube_bwd(x, g):
    ...     return (3 * x ** 2 * g,)  # one cotangent per argument
    >>> cube.defvjp(cube_fwd, cube_bwd)
    >>> float(lagrad.grad(lambda x: cube(x))(2.0))
    12.0
    """
    if fn is None:
        return functools.partial(custom_vjp, out_shape=out_shape)
    return CustomVJP(fn, out_shape)


def custom_jvp(fn: Callable[..., Any] | None = None, *, out_shape: OutShape = None) -> Any:
    """Give ``fn`` a hand-written forward-mode rule (``jax.custom_jvp``).

    Parameters
    ----------
    fn : callable
        ``fn(*args) -> ndarray``, a black box to lagrad (see :func:`custom_vjp`).
    out_shape : tuple or callable, optional
        As for :func:`custom_vjp`.

    Returns
    -------
    CustomJVP
        Callable as ``fn``; define its rule with ``f.defjvp(jvp)`` (also as a
        decorator): ``jvp(primals, tangents)`` gets two tuples with one entry
        per argument (a zero array for an argument that does not vary) and
        returns ``(primal_out, tangent_out)``.

    Notes
    -----
    Reverse mode and the local Jacobian are derived by applying the rule to
    each unit tangent of each argument (one call per argument entry), then
    transposing: cheap for arguments of modest size. Second order
    differentiates the rule (the gradient of g . tangent_out with respect to
    the primals, traced with lagrad); a rule lagrad cannot trace raises
    :class:`~lagrad.errors.MissingDerivativeError` there.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> @lagrad.custom_jvp
    ... def softplus(x):
    ...     return np.logaddexp(0.0, x)
    >>> @softplus.defjvp
    ... def softplus_jvp(primals, tangents):
    ...     (x,), (t,) = primals, tangents
    ...     return softplus(x), t / (1 + np.exp(-x))
    >>> float(lagrad.grad(lambda x: softplus(x))(0.0))
    0.5
    """
    if fn is None:
        return functools.partial(custom_jvp, out_shape=out_shape)
    return CustomJVP(fn, out_shape)


# ------------------------------------------------------------------ helpers

def _read_only(arrays: Sequence[Any]) -> tuple[Array, ...]:
    """Read-only float views: the sweeps pass views into the flat z, which a
    user's rule must not be able to write to."""
    out = []
    for a in arrays:
        view = np.asarray(a, dtype=float).view()
        view.flags.writeable = False
        out.append(view)
    return tuple(out)


def _check_tuple(cts: Any, args: Sequence[Array], who: str, what: str) -> tuple[Array, ...]:
    """The rule's per-argument results as arrays of the arguments' shapes."""
    if not isinstance(cts, (tuple, list)):
        raise ProgramError(f"{who} must return a tuple with one {what} per argument "
                           f"({len(args)}), got {type(cts).__name__}")
    if len(cts) != len(args):
        raise ProgramError(f"{who} returned {len(cts)} {what}s for {len(args)} arguments; "
                           f"return one per argument (None for zero)")
    out = []
    for k, (c, a) in enumerate(zip(cts, args)):
        if c is None:
            out.append(np.zeros(np.shape(a)))
            continue
        arr = np.asarray(c, dtype=float)
        if arr.shape != np.shape(a):
            raise ProgramError(f"{who}: the {what} of argument {k} has shape {arr.shape}, the "
                               f"argument has shape {np.shape(a)}")
        out.append(arr)
    return tuple(out)
