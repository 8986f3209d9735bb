"""Learned optimizers and meta-training.

* :func:`lstm_optimizer` — Andrychowicz et al. (2016)'s coordinate-wise LSTM optimizer;
  :func:`init_lstm` its meta-parameters;
* :func:`mlp_optimizer` — a per-parameter MLP optimizer in the style of learned_optimization;
  :func:`init_mlp` its meta-parameters;
* :mod:`optlab.learned.meta` — meta-training by truncated BPTT or antithetic ES, vmapped over
  tasks of a :class:`TaskFamily` (:func:`quadratic_family`, :func:`mnist1d_family`);
* :func:`save` / :func:`load` — meta-parameters on disk (orbax), as used by
  ``optlab train --optimizer learned:PATH``.

Each optimizer is an ``optax.GradientTransformation`` built from its meta-parameters, which
are data (a pytree)::

    meta_params = optlab.learned.init_lstm(jax.random.key(0))
    tx = optlab.learned.lstm_optimizer(meta_params)
"""

from optlab.learned.lstm import LSTMState, lstm_optimizer, preprocess
from optlab.learned.lstm import init_meta_params as init_lstm
from optlab.learned.meta import (
    MetaConfig,
    MetaResult,
    es_gradient,
    evaluate,
    meta_train,
)
from optlab.learned.mlp import MLPState, mlp_optimizer
from optlab.learned.mlp import init_meta_params as init_mlp
from optlab.learned.store import OPTIMIZERS, Learned, load, save
from optlab.learned.tasks import TaskFamily, mnist1d_family, quadratic_family

__all__ = [
    "OPTIMIZERS",
    "LSTMState",
    "Learned",
    "MLPState",
    "MetaConfig",
    "MetaResult",
    "TaskFamily",
    "es_gradient",
    "evaluate",
    "init_lstm",
    "init_mlp",
    "load",
    "lstm_optimizer",
    "meta_train",
    "mlp_optimizer",
    "mnist1d_family",
    "preprocess",
    "quadratic_family",
    "save",
]
