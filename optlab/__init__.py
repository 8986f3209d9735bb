"""optlab: optimizers as composable chains of optax gradient-transformation primitives.

Every optimizer is an ``optax.GradientTransformation`` built from a small vocabulary:

* accumulators (:mod:`optlab.accumulators`) add a named statistic of the gradient to a
  :class:`~optlab.stream.Stream`: ``ema``, ``ema_of_square``, ``running_max``, ...
* combiners (:mod:`optlab.combiners`) read statistics and return an update: ``ratio``,
  ``sign_agreement``, ``sign_of``, ...
* regularizers and scaling (:mod:`optlab.regularizers`) act on plain updates.

>>> import optlab
>>> adam = optlab.chain(optlab.ema("m", 0.9, debias=True),
...                     optlab.ema_of_square("v", 0.999, debias=True),
...                     optlab.ratio("m", "v", eps=1e-8),
...                     optlab.scale_by_learning_rate(1e-3))
"""

from optlab import lipschitz, schedules
from optlab.accumulators import (
    debias,
    ema,
    ema_of_abs_max,
    ema_of_cube,
    ema_of_square,
    factored_ema_of_square,
    nadam_momentum,
    running_max,
    sum_of_squares,
    trace,
)
from optlab.combiners import (
    bounded_ratio,
    ratio,
    rectified_ratio,
    rms_ratio,
    select,
    sign_agreement,
    sign_of,
)
from optlab.lipschitz import lipschitz_sgd, scale_by_lipschitz
from optlab.optimizers import (
    adabound,
    adadelta,
    adafactor,
    adagrad,
    adam,
    adamax,
    adamw,
    addsign,
    amsbound,
    amsgrad,
    lion,
    nadam,
    noisy_sgd,
    powersign,
    radam,
    rmsprop,
    sgd,
    sgdw,
    sign_sgd,
    signum,
)
from optlab.regularizers import (
    decoupled_weight_decay,
    gradient_noise,
    l2_penalty,
    scale_by_learning_rate,
)
from optlab.stream import GRAD, Primitive, StepState, Stream, chain, primitive

__version__ = "0.1.0"

OPTIMIZERS = (
    "sgd", "sgdw", "noisy_sgd", "sign_sgd", "signum", "adagrad", "adadelta", "rmsprop",
    "adam", "adamw", "nadam", "amsgrad", "adamax", "radam", "adabound", "amsbound",
    "adafactor", "lion", "powersign", "addsign",
)

__all__ = [
    "GRAD",
    "OPTIMIZERS",
    "Primitive",
    "StepState",
    "Stream",
    "adabound",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "addsign",
    "amsbound",
    "amsgrad",
    "bounded_ratio",
    "chain",
    "debias",
    "decoupled_weight_decay",
    "ema",
    "ema_of_abs_max",
    "ema_of_cube",
    "ema_of_square",
    "factored_ema_of_square",
    "gradient_noise",
    "l2_penalty",
    "lion",
    "lipschitz",
    "lipschitz_sgd",
    "nadam",
    "nadam_momentum",
    "noisy_sgd",
    "powersign",
    "primitive",
    "radam",
    "ratio",
    "rectified_ratio",
    "rms_ratio",
    "rmsprop",
    "running_max",
    "scale_by_learning_rate",
    "scale_by_lipschitz",
    "schedules",
    "select",
    "sgd",
    "sgdw",
    "sign_agreement",
    "sign_of",
    "sign_sgd",
    "signum",
    "sum_of_squares",
    "trace",
]
