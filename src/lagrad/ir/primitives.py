"""Primitives: each one defined here, once, with its value and derivatives.

A primitive is the f_i of an equation z_i = f_i(z_alpha(i)). Everything the
library does with an equation (forward evaluation, VJP back-substitution,
JVP forward substitution, sparse assembly of J) goes through the methods of
:class:`Primitive`; no other module switches on primitive names.

Two kinds of rules:

* *elementwise* primitives give only ``partials(k, ans, *args)``: the
  elementwise derivative d ans / d arg_k, broadcastable to ``ans``. The VJP,
  JVP and the sparse local Jacobian (a diagonal, or a broadcast selection) are
  derived from it, so it is the single source of truth.
* *structural* primitives (reshape, sums, matmul, ...) give ``vjp``, ``jvp``
  and ``jacobian`` directly, because there they are cheaper than any generic
  derivation; the tests check the three against each other and against finite
  differences.

Second order (:func:`lagrad.hvp`, :func:`lagrad.hessian`) needs one more rule
per primitive, next to its first: elementwise ones give ``second(k, m, ans,
*args)``, the elementwise d^2 ans / d arg_k d arg_m (total: through ``ans``
too); structural ones give ``second_vjp(k, g, ts, ans, *args)``, the derivative
of their ``vjp`` of argument ``k`` along the argument tangents ``ts`` with the
cotangent ``g`` held fixed (``None`` when it is zero, as for every linear map).
A primitive without one raises :class:`~lagrad.errors.MissingDerivativeError`.

This module is the catalogue: the type and its helpers live in
:mod:`lagrad.ir.primitive`, the rules in :mod:`lagrad.ir.elementwise` and
:mod:`lagrad.ir.structural`, and every name is re-exported here.
"""

from __future__ import annotations

from lagrad.ir.elementwise import (  # noqa: F401 (re-exported)
    ELEMENTWISE,
    absolute,
    add,
    cos,
    div,
    exp,
    identity,
    log,
    maximum,
    minimum,
    mul,
    neg,
    power,
    relu,
    sigmoid,
    sin,
    sqrt,
    stop_gradient,
    sub,
    tanh,
    weighted_sum,
    where,
)
from lagrad.ir.primitive import (  # noqa: F401 (re-exported)
    Entries,
    Primitive,
    Tracer,
    broadcast_shape,
    elementwise_primitive,
    positions,
    selection,
    unbroadcast,
)
from lagrad.ir.structural import (  # noqa: F401 (re-exported)
    STRUCTURAL,
    bilinear_jvp,
    concatenate,
    expand_reduced,
    getitem,
    linear_second_vjp,
    logsumexp,
    matmul,
    reduced_shape,
    reduction_rows,
    reshape,
    sparse_matmul,
    sum_,
    transpose,
)

__all__ = ["Primitive", "Tracer", "Entries", "ELEMENTWISE", "STRUCTURAL", "unbroadcast",
           "positions", "selection", "broadcast_shape", "elementwise_primitive", "reduced_shape",
           "expand_reduced", "reduction_rows", "linear_second_vjp", "bilinear_jvp"]
