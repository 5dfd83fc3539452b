"""Program -> schedule: the index map, vectorized steps, levels, Jacobian
assembly and finiteness guards."""

from lagrad.compile.compiler import compile_program

__all__ = ["compile_program"]
