"""Parallel and distributed SGD on JAX's own engine (``jax.sharding``, ``jax.distributed``).

* staleness as a primitive: :func:`stale_gradients` (asynchronous SGD, Hogwild!-style stale
  reads), :func:`async_worker_delays`, and the delay-tolerant :func:`adaptive_revision`;
* parallel methods (:class:`Parallel`: replicas on a leading axis, shardable over a mesh):
  :func:`data_parallel`, :func:`majority_vote` (signSGD / Signum), :func:`local_sgd` with
  :func:`diloco` and :func:`fedavg`, :func:`easgd` (and EAMSGD), :func:`downpour`.
"""

from optlab.parallel.aggregate import aggregated, data_parallel, majority_vote
from optlab.parallel.downpour import downpour
from optlab.parallel.local import diloco, easgd, fedavg, local_sgd
from optlab.parallel.method import Parallel, broadcast, replica_mean
from optlab.parallel.revision import adaptive_revision
from optlab.parallel.staleness import StaleState, async_worker_delays, stale_gradients
from optlab.parallel.training import Replicas

__all__ = [
    "Parallel",
    "Replicas",
    "StaleState",
    "adaptive_revision",
    "aggregated",
    "async_worker_delays",
    "broadcast",
    "data_parallel",
    "diloco",
    "downpour",
    "easgd",
    "fedavg",
    "local_sgd",
    "majority_vote",
    "replica_mean",
    "stale_gradients",
]
