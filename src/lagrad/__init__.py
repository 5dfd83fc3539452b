"""lagrad: differentiation as solving the Lagrangian's multiplier equations.

A program is a set of equality constraints z_i = f_i(z_alpha(i)); its gradient
is read off the multipliers lambda that solve (I - J)^T lambda = e_n.
"""

import lagrad.methods  # noqa: F401  (attaches Program.solve, System.summary, ...)
from lagrad import optimize, tree
from lagrad.api import (
    DerivativeInfo,
    Jitted,
    grad,
    hessian,
    hvp,
    jacfwd,
    jacobian,
    jacrev,
    jit,
    jvp,
    linearize,
    value_and_grad,
    vjp,
)
from lagrad.check import check_grad, taylor_test
from lagrad.errors import (
    BatchingError,
    ConvergenceError,
    CycleError,
    GradientCheckError,
    InputDtypeError,
    LagradError,
    MissingDependencyError,
    MissingDerivativeError,
    NonFiniteError,
    NonFiniteSolveError,
    NotCallableError,
    OptionError,
    ProgramError,
    SingularSystemError,
    SolveError,
)
from lagrad.ir import linalg
from lagrad.ir.arrayops import (
    array_split,
    broadcast_to,
    cross,
    diagonal,
    diff,
    expand_dims,
    flip,
    kron,
    moveaxis,
    pad,
    repeat,
    roll,
    split,
    squeeze,
    swapaxes,
    take,
    tile,
    tril,
    triu,
)
from lagrad.ir.cumulative import cumprod
from lagrad.ir.custom import CustomJVP, CustomVJP, custom_jvp, custom_vjp, stop_gradient
from lagrad.ir.implicit import fixed_point, root
from lagrad.ir.ops import (
    abs,
    arccos,
    arccosh,
    arcsin,
    arcsinh,
    arctan,
    arctan2,
    arctanh,
    cbrt,
    ceil,
    clip,
    concatenate,
    copysign,
    cos,
    cosh,
    cumsum,
    deg2rad,
    dot,
    einsum,
    exp,
    exp2,
    expit,
    expm1,
    floor,
    fmod,
    hypot,
    log,
    log1p,
    log2,
    log10,
    logaddexp,
    logaddexp2,
    logsumexp,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    outer,
    prod,
    rad2deg,
    reciprocal,
    relu,
    remainder,
    reshape,
    rint,
    sigmoid,
    sign,
    sin,
    sinh,
    softmax,
    sort,
    sqrt,
    square,
    stack,
    std,
    sum,
    tan,
    tanh,
    tensordot,
    transpose,
    trunc,
    var,
    where,
)
from lagrad.ir.primitives import Primitive
from lagrad.ir.products import inner, vdot
from lagrad.ir.program import Equation, Program, Variable
from lagrad.ir.sorting import argmax, argmin, argsort
from lagrad.ir.sparse import coo_matvec
from lagrad.ir.stacking import (
    append,
    atleast_1d,
    atleast_2d,
    atleast_3d,
    column_stack,
    dstack,
    empty_like,
    full_like,
    hstack,
    ones_like,
    vstack,
    zeros_like,
)
from lagrad.ir.statistics import average, corrcoef, cov, median, percentile, ptp, quantile
from lagrad.ir.trace import trace
from lagrad.options import SolveOptions
from lagrad.solve.linsolve import SolveInfo, SystemSolution
from lagrad.solve.solution import KKTResiduals, Solution, VariableMap
from lagrad.solve.system import System
from lagrad.study.unroll import compare_unrolled, unroll
from lagrad.vectorize import vmap

__version__ = "0.1.0"

__all__ = [
    "Program", "Variable", "Equation", "Primitive", "Solution", "VariableMap",
    "KKTResiduals", "System", "SolveInfo", "SystemSolution",
    "trace", "fixed_point", "root", "unroll", "compare_unrolled",
    "grad", "value_and_grad", "jvp", "vjp", "linearize", "jacobian", "jacfwd", "jacrev", "tree",
    "hvp", "hessian", "optimize",
    "jit", "Jitted", "vmap", "DerivativeInfo", "SolveOptions",
    "check_grad", "taylor_test",
    "linalg", "custom_vjp", "custom_jvp", "CustomVJP", "CustomJVP", "stop_gradient",
    "LagradError", "ProgramError", "CycleError", "NonFiniteError", "SolveError",
    "ConvergenceError", "NonFiniteSolveError", "SingularSystemError", "GradientCheckError",
    "OptionError",
    "InputDtypeError", "MissingDerivativeError", "BatchingError", "MissingDependencyError",
    "NotCallableError",
    "exp", "log", "sin", "cos", "tanh", "sigmoid", "relu", "sqrt", "abs", "maximum",
    "minimum", "sum", "mean", "reshape", "transpose", "concatenate", "stack", "where",
    "logsumexp", "softmax", "dot", "matmul", "coo_matvec",
    "square", "log1p", "expm1", "arctan", "sinh", "cosh", "sign", "logaddexp", "expit",
    "max", "min", "prod", "cumsum", "var", "std", "einsum", "outer", "tensordot", "clip",
    "arctan2", "hypot", "sort", "flip", "roll", "take", "diagonal", "triu", "tril", "diff",
    "repeat", "tile", "split", "array_split", "pad", "kron", "cross", "squeeze",
    "expand_dims", "broadcast_to", "swapaxes", "moveaxis",
    "tan", "arcsin", "arccos", "arcsinh", "arccosh", "arctanh", "log2", "log10", "exp2",
    "cbrt", "reciprocal", "floor", "ceil", "trunc", "rint", "deg2rad", "rad2deg",
    "logaddexp2", "remainder", "fmod", "copysign", "argmax", "argmin", "argsort",
    "hstack", "vstack", "dstack", "column_stack", "atleast_1d", "atleast_2d", "atleast_3d",
    "append", "zeros_like", "ones_like", "full_like", "empty_like",
    "median", "quantile", "percentile", "average", "ptp", "cov", "corrcoef", "inner", "vdot",
    "cumprod",
]
