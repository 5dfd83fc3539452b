"""Tools to study programs and their systems: text summaries, pictures,
unrolling of fixed points, naive baselines, and the studies behind
``lagrad study``."""

from lagrad.study.examples import UNROLL_KS, study

__all__ = ["study", "UNROLL_KS"]
