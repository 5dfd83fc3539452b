"""The worked studies behind ``lagrad study NAME``, each with an independent
reference: name -> function ``(write, small, plot_dir) -> dict``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lagrad.study.bptt import bptt_study
from lagrad.study.control import lqr_study
from lagrad.study.digits import digits_study
from lagrad.study.edelman import edelman_study
from lagrad.study.qp_layer import qp_layer_study

__all__ = ["STUDIES", "SUMMARIES"]

STUDIES: dict[str, Callable[..., dict[str, Any]]] = {
    "edelman": edelman_study,
    "digits": digits_study,
    "lqr": lqr_study,
    "qp_layer": qp_layer_study,
    "bptt": bptt_study,
}
"""Study name -> the function that runs and prints it."""

SUMMARIES = {
    "edelman": "the three networks of Edelman et al.: triangular multiplier systems, "
               "gradients vs finite differences",
    "digits": "an MLP on scikit-learn's digits trained by SGD, quadratic penalty and "
              "augmented Lagrangian (needs scikit-learn)",
    "lqr": "discrete LQR: multipliers = costates, optimizers vs the Riccati solution",
    "qp_layer": "an equality-constrained QP as a layer: gradients vs the KKT closed form",
    "bptt": "backpropagation through time for an RNN vs the multiplier system, with memory",
}
"""Study name -> one line for ``lagrad study --list``."""
