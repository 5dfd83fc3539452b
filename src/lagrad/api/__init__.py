"""The functional API, with JAX's conventions: grad, value_and_grad, jvp, vjp,
jacobian, jacfwd, jacrev.

Each call traces the function (arguments outside ``argnums`` and keyword
arguments become constants), solves the program, and solves its multiplier or
tangent system. Arguments, results and auxiliary data may be pytrees (nested
tuples, lists, dicts and namedtuples; see :mod:`lagrad.tree`): derivatives
come back in the structure of what they are derivatives of.

Precision: lagrad computes in float64 whatever the inputs, then casts each
result to the precision of what it belongs to. A gradient or cotangent has its
input's dtype (float32 in, float32 out). Values, tangents and auxiliary data
have the *output dtype*: numpy's promotion of the dtypes of the floating-point
arrays among the arguments (float64 when there is none, as for Python floats).
A Jacobian block has the promotion of the output dtype and its input's dtype.

The transforms live in one module per concern: :mod:`lagrad.api.grads`
(grad, value_and_grad, jvp, vjp), :mod:`lagrad.api.linearize` (linearize),
:mod:`lagrad.api.jacobians` (jacobian,
jacfwd, jacrev, hvp, hessian), :mod:`lagrad.api.jit` (jit) and
:mod:`lagrad.api.common` (what they share); every public name is re-exported
here.
"""

from lagrad.api.common import DerivativeInfo
from lagrad.api.common import Transform as Transform  # read by lagrad.vectorize
from lagrad.api.grads import grad, jvp, value_and_grad, vjp
from lagrad.api.jacobians import hessian, hvp, jacfwd, jacobian, jacrev
from lagrad.api.jit import Jitted, jit
from lagrad.api.linearize import linearize

__all__ = ["grad", "value_and_grad", "jvp", "vjp", "linearize", "jacobian", "jacfwd",
           "jacrev", "jit", "Jitted", "DerivativeInfo", "hvp", "hessian"]
