"""Worked examples, each with a reference answer computed independently."""

from collections.abc import Callable

from .base import Example
from .deq import deq
from .linear import linear_system
from .mdp import mdp
from .pagerank import pagerank
from .ridge import ridge
from .worked import worked_example, worked_example_derivative

EXAMPLES: dict[str, Callable[..., Example]] = {
    "deq": deq,
    "pagerank": pagerank,
    "linear": linear_system,
    "ridge": ridge,
    "mdp": mdp,
}
"""Example name -> function building it (with small default sizes)."""

__all__ = ["worked_example", "worked_example_derivative", "Example", "EXAMPLES", "deq",
           "pagerank", "linear_system", "ridge", "mdp"]
