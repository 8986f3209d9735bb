"""One thread for the BLAS that runs K-FAC's factorisations on CPU.

jaxlib runs its CPU LAPACK calls (Cholesky, triangular solves: K-FAC's inverse refreshes, also
Shampoo's and SOAP's roots) in SciPy's OpenBLAS, whose own thread pool waits for descheduled
peers on a machine whose cores are busy: on 2 shared cores a 101 × 101 solve against the
identity took about 8 ms instead of 0.1 ms, and K-FAC's refresh cost varied 15-fold between
processes (``benchmarks/RESULTS.md``, docs/kfac.md). Limit it before timing such optimizers.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["limit_blas"]


def limit_blas(threads: int = 1) -> Any:
    """Limits the BLAS thread pools (SciPy's OpenBLAS, loaded first by a small Cholesky: before
    that only NumPy's is found and the limit misses it) to ``threads``; 0: no limit. Returns
    the ``threadpoolctl`` controller (keep it; None without a limit)."""
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0: no limit), got {threads}")
    if threads == 0:
        return None
    from threadpoolctl import threadpool_limits

    jax.block_until_ready(jax.scipy.linalg.cho_factor(jnp.eye(2)))  # loads LAPACK
    return threadpool_limits(threads, user_api="blas")
