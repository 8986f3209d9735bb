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

from optlab import (
    adam_variants,
    coin_betting,
    covers,
    curvature,
    fisher,
    kronecker,
    layerwise,
    learned,
    lipschitz,
    optimistic,
    orthogonal,
    parallel,
    parameter_free,
    polyak,
    quasi_newton,
    resilient,
    schedule_free,
    schedules,
)
from optlab.accumulators import (
    debias,
    ema,
    ema_of_abs_max,
    ema_of_cube,
    ema_of_square,
    nadam_momentum,
    running_max,
    sum_of_squares,
    trace,
)
from optlab.adam_variants import (
    acprop,
    adabelief,
    adamaxw,
    adan,
    ademamix,
    ademamix_alpha_warmup,
    ademamix_b3_warmup,
    adopt,
    madgrad,
    nadamw,
    simplified_ademamix,
    yogi,
)
from optlab.coin_betting import cocob
from optlab.combiners import (
    bounded_ratio,
    ratio,
    rectified_ratio,
    rms_ratio,
    select,
    sign_agreement,
    sign_of,
)
from optlab.covers import (
    sm3,
)
from optlab.curvature import (
    sophia,
)
from optlab.factored import factored_ema_of_square
from optlab.fisher import kfac
from optlab.kronecker_optimizers import (
    shampoo,
    soap,
)
from optlab.layerwise import (
    fromage,
    lamb,
    lars,
    novograd,
)
from optlab.lipschitz import lipschitz_sgd, scale_by_lipschitz
from optlab.optimistic import (
    optimistic_adam,
    optimistic_adam_v2,
    optimistic_gradient_descent,
)
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
from optlab.orthogonal import (
    muon,
)
from optlab.parameter_free import (
    dadapt_adamw,
    dog,
    dowg,
    prodigy,
)
from optlab.polyak import (
    momo,
    momo_adam,
    polyak_sgd,
)
from optlab.quasi_newton import (
    lbfgs,
)
from optlab.regularizers import (
    decoupled_weight_decay,
    gradient_noise,
    l2_penalty,
    scale_by_learning_rate,
)
from optlab.resilient import (
    rprop,
)
from optlab.schedule_free import (
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
)
from optlab.stream import GRAD, Primitive, StepState, Stream, chain, primitive
from optlab.switch import one_of

__version__ = "0.1.0"

OPTIMIZERS = (
    # SGD and sign descent
    "sgd", "sgdw", "noisy_sgd", "sign_sgd", "signum", "lion", "powersign", "addsign", "rprop",
    # per-coordinate adaptive
    "adagrad", "adadelta", "rmsprop", "adafactor", "sm3",
    # Adam and its variants
    "adam", "adamw", "nadam", "nadamw", "amsgrad", "adamax", "adamaxw", "radam", "adabound",
    "amsbound", "adabelief", "yogi", "adan", "adopt", "ademamix", "simplified_ademamix",
    "acprop", "madgrad",
    # layer-wise
    "lamb", "lars", "fromage", "novograd",
    # optimistic
    "optimistic_gradient_descent", "optimistic_adam", "optimistic_adam_v2",
    # step sizes from the loss, or free of tuning
    "polyak_sgd", "momo", "momo_adam", "dog", "dowg", "prodigy", "dadapt_adamw", "cocob",
    # schedule-free
    "schedule_free_sgd", "schedule_free_adamw",
    # curvature and matrix preconditioners
    "sophia", "muon", "shampoo", "soap", "lbfgs",
)

__all__ = [
    "GRAD",
    "OPTIMIZERS",
    "Primitive",
    "StepState",
    "Stream",
    "acprop",
    "adabelief",
    "adabound",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adam_variants",
    "adamax",
    "adamaxw",
    "adamw",
    "adan",
    "addsign",
    "ademamix",
    "ademamix_alpha_warmup",
    "ademamix_b3_warmup",
    "adopt",
    "amsbound",
    "amsgrad",
    "bounded_ratio",
    "chain",
    "cocob",
    "coin_betting",
    "covers",
    "curvature",
    "dadapt_adamw",
    "debias",
    "decoupled_weight_decay",
    "dog",
    "dowg",
    "ema",
    "ema_of_abs_max",
    "ema_of_cube",
    "ema_of_square",
    "factored_ema_of_square",
    "fisher",
    "fromage",
    "gradient_noise",
    "kfac",
    "kronecker",
    "l2_penalty",
    "lamb",
    "lars",
    "layerwise",
    "lbfgs",
    "learned",
    "lion",
    "lipschitz",
    "lipschitz_sgd",
    "madgrad",
    "momo",
    "momo_adam",
    "muon",
    "nadam",
    "nadam_momentum",
    "nadamw",
    "noisy_sgd",
    "novograd",
    "one_of",
    "optimistic",
    "optimistic_adam",
    "optimistic_adam_v2",
    "optimistic_gradient_descent",
    "orthogonal",
    "parallel",
    "parameter_free",
    "polyak",
    "polyak_sgd",
    "powersign",
    "primitive",
    "prodigy",
    "quasi_newton",
    "radam",
    "ratio",
    "rectified_ratio",
    "resilient",
    "rms_ratio",
    "rmsprop",
    "rprop",
    "running_max",
    "scale_by_learning_rate",
    "scale_by_lipschitz",
    "schedule_free",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "schedule_free_sgd",
    "schedules",
    "select",
    "sgd",
    "sgdw",
    "shampoo",
    "sign_agreement",
    "sign_of",
    "sign_sgd",
    "signum",
    "simplified_ademamix",
    "sm3",
    "soap",
    "sophia",
    "sum_of_squares",
    "trace",
    "yogi",
]
