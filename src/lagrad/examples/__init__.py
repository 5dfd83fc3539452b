"""Worked examples, each with a reference answer computed independently."""

from .worked import worked_example, worked_example_derivative

__all__ = ["worked_example", "worked_example_derivative"]
