"""One representative configuration of every optlab optimizer, for tests that cover the zoo."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

import optlab
from optlab import schedules

ZOO: dict[str, callable] = {
    "sgd": lambda: optlab.sgd(0.01),
    "sgd_momentum": lambda: optlab.sgd(0.01, momentum=0.9),
    "sgd_nesterov": lambda: optlab.sgd(0.01, momentum=0.9, nesterov=True),
    "sgdw": lambda: optlab.sgdw(0.01, weight_decay=1e-3),
    "noisy_sgd": lambda: optlab.noisy_sgd(0.01, key=0),
    "sign_sgd": lambda: optlab.sign_sgd(0.01),
    "signum": lambda: optlab.signum(0.01),
    "adagrad": lambda: optlab.adagrad(0.1),
    "adadelta": lambda: optlab.adadelta(),
    "rmsprop": lambda: optlab.rmsprop(0.01),
    "rmsprop_centered_momentum": lambda: optlab.rmsprop(0.01, centered=True, momentum=0.9),
    "adam": lambda: optlab.adam(0.01),
    "adamw": lambda: optlab.adamw(schedules.cosine_decay(0.01, 100), weight_decay=1e-2),
    "nadam": lambda: optlab.nadam(0.01),
    "nadam_torch": lambda: optlab.nadam(0.01, momentum_decay=0.004),
    "amsgrad": lambda: optlab.amsgrad(0.01),
    "amsgrad_torch": lambda: optlab.amsgrad(0.01, debias_before_max=False),
    "adamax": lambda: optlab.adamax(0.01),
    "radam": lambda: optlab.radam(0.01),
    "adabound": lambda: optlab.adabound(0.01),
    "amsbound": lambda: optlab.amsbound(0.01),
    "adafactor": lambda: optlab.adafactor(min_dim_size_to_factor=2),
    "lion": lambda: optlab.lion(0.001),
    "powersign": lambda: optlab.powersign(0.01, sign_decay=schedules.linear_sign_decay(100)),
    "addsign": lambda: optlab.addsign(0.01, sign_decay=schedules.cosine_sign_decay(100)),
    # Adam's variants
    "adabelief": lambda: optlab.adabelief(0.01),
    "adamaxw": lambda: optlab.adamaxw(0.01, weight_decay=1e-3),
    "nadamw": lambda: optlab.nadamw(0.01, weight_decay=1e-3),
    "yogi": lambda: optlab.yogi(0.01),
    "adan": lambda: optlab.adan(0.01, weight_decay=1e-3),
    "adopt": lambda: optlab.adopt(0.01),
    "ademamix": lambda: optlab.ademamix(
        0.01, b3=optlab.ademamix_b3_warmup(0.9, 0.9999, 100),
        alpha=optlab.ademamix_alpha_warmup(5.0, 100)),
    "simplified_ademamix": lambda: optlab.simplified_ademamix(0.01, alpha=1.0),
    "acprop": lambda: optlab.acprop(0.01),
    "madgrad": lambda: optlab.madgrad(0.01),
    # layer-wise, optimistic, factored, resilient
    "lamb": lambda: optlab.lamb(0.01, weight_decay=0.01),
    "lars": lambda: optlab.lars(0.1, weight_decay=1e-4),
    "fromage": lambda: optlab.fromage(0.01),
    "novograd": lambda: optlab.novograd(0.01, weight_decay=1e-3),
    "optimistic_gradient_descent": lambda: optlab.optimistic_gradient_descent(0.01),
    "optimistic_adam": lambda: optlab.optimistic_adam(0.01),
    "optimistic_adam_v2": lambda: optlab.optimistic_adam_v2(0.01),
    "sm3": lambda: optlab.sm3(0.1),
    "rprop": lambda: optlab.rprop(0.01),
    # step sizes from the loss, or free of tuning
    "polyak_sgd": lambda: with_loss(optlab.polyak_sgd(), "value"),
    "momo": lambda: with_loss(optlab.momo(), "value"),
    "momo_adam": lambda: with_loss(optlab.momo_adam(), "value"),
    "dog": lambda: optlab.dog(),
    "dowg": lambda: optlab.dowg(),
    "prodigy": lambda: optlab.prodigy(),
    "dadapt_adamw": lambda: optlab.dadapt_adamw(),
    "cocob": lambda: optlab.cocob(),
    # schedule-free, curvature, matrix preconditioners, quasi-Newton
    "schedule_free_sgd": lambda: optlab.schedule_free_sgd(0.01),
    "schedule_free_adamw": lambda: optlab.schedule_free_adamw(0.01),
    "sophia": lambda: with_loss(optlab.sophia(0.01), "obj_fn"),
    "muon": lambda: optlab.muon(0.01),
    "shampoo": lambda: optlab.shampoo(0.01, precondition_frequency=2),
    "soap": lambda: optlab.soap(precondition_frequency=2),
    "lbfgs": lambda: with_loss(optlab.lbfgs(), "value", "grad", "value_fn"),
}


def _loss(params) -> jax.Array:
    """A fixed loss of the params, 0.5‖θ‖² in float32, for optimizers that read one."""
    return 0.5 * sum(jnp.sum(jnp.square(x.astype(jnp.float32)))
                     for x in jax.tree.leaves(params))


def with_loss(tx: optax.GradientTransformation, *names: str):
    """``tx`` with optax's extra arguments ``names`` supplied from :func:`_loss` (value of the
    params, grad = the updates, value_fn / obj_fn = the loss), so that zoo-wide tests call
    ``update(updates, state, params)`` alone. The state is ``tx``'s own."""

    def update(updates, state, params=None, **extra):
        values = {"value": _loss(params), "grad": updates, "value_fn": _loss, "obj_fn": _loss}
        return tx.update(updates, state, params, **{k: values[k] for k in names}, **extra)

    return optax.GradientTransformationExtraArgs(tx.init, update)


def make(name: str) -> optax.GradientTransformation:
    return ZOO[name]()


def state_signature(state):
    """Structure, shapes and dtypes of an optimizer state: what must never change."""
    return jax.tree.structure(state), [(x.shape, x.dtype) for x in jax.tree.leaves(state)]
