"""The benchmark suite behind ``lagrad bench``.

Workloads (each a function of a :class:`Context` returning rows, and printing
one table): ``scaling`` (random scalar DAGs, 10^2..10^6 equations), ``modes``
(reverse vs forward mode vs finite differences vs the path sum, against d),
``paths`` (stacked diamonds), ``mlp`` (tanh MLP 784-256-256-10), ``deq``
(deep-equilibrium layer, every adjoint method and the unrolled baseline),
``pagerank`` (10^4..10^6 edges), ``blocks`` (chains of small cyclic blocks),
``sparsejac`` (sparse Jacobians by colouring against dense ones, n up to 10^4),
``jacobian`` (a Jacobian of 100 rows in one multi-seed sweep against one
gradient, on an MLP and the DEQ) and
``peers`` (JAX, jaxopt, autograd, PyTorch, CasADi when importable). Each times
a hand-written numpy/scipy *floor* of the same problem in the same run.

Run ``lagrad bench --quick`` (under two minutes), ``lagrad bench --only deq``,
or ``lagrad bench --out DIR`` to write ``results.json``, the tables as
Markdown (``tables.md``) and plots.

Examples
--------
>>> from lagrad.bench import WORKLOADS
>>> WORKLOADS
('scaling', 'modes', 'paths', 'mlp', 'deq', 'pagerank', 'blocks', 'sparsejac', 'jacobian',
 'peers')
"""

from .core import Context
from .runner import WORKLOADS, main, run

__all__ = ["main", "run", "Context", "WORKLOADS"]
