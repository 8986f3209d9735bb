"""Tasks for optlab experiments: embedded data sets, Flax NNX models, synthetic problems."""

from optlab.tasks.datasets import DATASETS, Dataset, load_dataset, random_images
from optlab.tasks.minimize import final_losses
from optlab.tasks.models import MODELS, make_model, param_count
from optlab.tasks.synthetic import (
    PROBLEMS,
    Problem,
    beale,
    booth,
    linear_regression,
    logistic_regression,
    quadratic_deep,
    rastrigin,
    reddi_online,
    reddi_stochastic,
    rosenbrock,
    saddle,
)

__all__ = [
    "DATASETS",
    "MODELS",
    "PROBLEMS",
    "Dataset",
    "Problem",
    "beale",
    "booth",
    "final_losses",
    "linear_regression",
    "load_dataset",
    "logistic_regression",
    "make_model",
    "param_count",
    "quadratic_deep",
    "random_images",
    "rastrigin",
    "reddi_online",
    "reddi_stochastic",
    "rosenbrock",
    "saddle",
]
