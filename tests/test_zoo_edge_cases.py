"""Edge cases found in review: traced hyperparameters, basis alignment, argument ranges."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optlab
from optlab import kronecker


def _steps(tx, params, n=3):
    state = tx.init(params)
    step = jax.jit(lambda p, s, g: tx.update(g, s, p))
    for i in range(n):
        grads = jax.tree.map(lambda p, i=i: jnp.cos(3.0 * p + i), params)
        updates, state = step(params, state, grads)
        params = optax.apply_updates(params, updates)
    return params


def test_shampoo_sum_of_factors_with_a_traced_b2():
    """b2 = 1 (sums, Gupta et al.) decided at run time when b2 is injected (traced)."""
    params = {"w": jnp.arange(12.0).reshape(4, 3) / 10, "b": jnp.ones(3)}
    plain = _steps(optlab.shampoo(0.1, b2=1.0, graft="adagrad"), params)
    injected = optax.inject_hyperparams(optlab.shampoo, static_args=("graft",))(
        learning_rate=0.1, b2=1.0, graft="adagrad")
    np.testing.assert_allclose(_steps(injected, params)["w"], plain["w"], rtol=1e-5, atol=1e-6)


def test_eigh_refresh_keeps_columns_in_their_slots():
    """SOAP's V is stored per column: a refreshed basis must keep each direction's slot."""
    a = jnp.diag(jnp.array([1.0, 2.0]))
    for basis in (kronecker._eigh_basis_aligned, kronecker._qr_basis):
        q = basis(a, jnp.eye(2))
        np.testing.assert_allclose(jnp.abs(q), jnp.eye(2), atol=1e-6)


def test_soap_eigh_refresh_agrees_with_qr_when_the_eigenvalue_order_flips():
    """Diagonal gradients: the factors' eigenbasis is the identity, up to order and sign. The
    larger eigenvalue moves from axis 1 to axis 0 after two steps; a refresh by eigh must keep
    each direction in its slot (as QR does), or V is applied to the wrong direction."""
    tx = {m: optlab.soap(0.05, b1=0.0, precondition_frequency=1, eigenbasis_method=m)
          for m in ("qr", "eigh")}
    out = {}
    for method, t in tx.items():
        params = jnp.zeros((2, 2))
        state = t.init(params)
        for i in range(8):
            g = jnp.diag(jnp.array([1.0, 3.0] if i < 2 else [5.0, 0.1]))
            updates, state = t.update(g, state, params)
            params = params + updates
        out[method] = params
    np.testing.assert_allclose(out["eigh"], out["qr"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("build", "match"), [
    (lambda: optlab.radam(0.01, threshold=3.0), "threshold"),
    (lambda: optlab.shampoo(0.01, eps=0.0), "eps"),
    (lambda: optlab.momo(weight_decay=lambda c: 0.1), "weight_decay"),
    (lambda: optlab.momo_adam(weight_decay=lambda c: 0.1), "weight_decay"),
    (lambda: optlab.prodigy(weight_decay=lambda c: 0.1), "weight_decay"),
    (lambda: optlab.dadapt_adamw(weight_decay=lambda c: 0.1), "weight_decay"),
    (lambda: optlab.polyak_sgd(scaling=-1.0), "scaling"),
])
def test_out_of_range_arguments_are_refused_by_name(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()


def test_adopt_without_clipping_accepts_no_clip_function():
    """As optax: ``clip_value_fn`` is only read with ``use_clipping=True``."""
    tx = optlab.adopt(0.01, use_clipping=False, clip_value_fn=None)
    ours = _steps(tx, {"w": jnp.ones(3)})
    theirs = _steps(optax.contrib.adopt(0.01, use_clipping=False, clip_value_fn=None),
                    {"w": jnp.ones(3)})
    np.testing.assert_allclose(ours["w"], theirs["w"], rtol=1e-6)
