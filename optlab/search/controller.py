"""The RNN controller of Bello et al. 2017 ("Neural Optimizer Search with Reinforcement
Learning") behind the ask / tell interface of :mod:`optlab.search.strategies`.

A recurrent network (Flax NNX LSTM) emits a program's ``5 · num_groups`` tokens one by one
(per group: o₁, o₂, u₁, u₂, b). Each token is sampled from a softmax over one shared
vocabulary (operands, group references, unary and binary functions) in which the choices
invalid at that position are masked: an operand position of group k admits the allowed
operands and the groups ``0 … k−1``. The sampled token's embedding is the next input.

Training is REINFORCE (Williams 1992) with a moving-average baseline, or PPO's clipped
objective (Schulman et al. 2017, a few epochs per batch; Bello et al. used PPO), plus an
entropy bonus, with Adam. Every ``batch_size`` told candidates form one batch and one policy
update; their log-probabilities are recomputed under the current parameters. The network
is a function of the seed and the tells, so :meth:`Controller.state_dict` stores only the
told history, and :meth:`~Strategy.from_state_dict` re-initialises the network from the
seed and replays it (same batches → same parameters → same future asks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from optlab._checks import check_choice, check_int, check_number
from optlab.search.language import BINARY, OPERANDS, UNARY
from optlab.search.program import Program
from optlab.search.strategies import Strategy, _from_json, _to_json

__all__ = ["ALGORITHMS", "Controller"]

ALGORITHMS = ("reinforce", "ppo")
_NEG = -1e9  # logit of a masked (invalid) choice


class _Policy(nnx.Module):
    """Embedding → LSTM cell → logits over the shared token vocabulary."""

    def __init__(self, vocab: int, embed: int, hidden: int, rngs: nnx.Rngs) -> None:
        self.embed = nnx.Embed(vocab + 1, embed, rngs=rngs)  # index ``vocab``: start token
        self.cell = nnx.LSTMCell(embed, hidden, rngs=rngs)
        self.head = nnx.Linear(hidden, vocab, rngs=rngs)
        self.start, self.hidden = vocab, hidden

    def step(self, carry: Any, token: jax.Array) -> tuple[Any, jax.Array]:
        carry, h = self.cell(carry, self.embed(token))
        return carry, self.head(h)

    def init_carry(self, n: int) -> Any:
        z = jnp.zeros((n, self.hidden))
        return z, z


@partial(jax.jit, static_argnums=0)
def _sample(graphdef: Any, params: Any, keys: jax.Array, mask: jax.Array) -> jax.Array:
    """Tokens [n, T] sampled autoregressively, one key per candidate ([n] keys)."""
    model = nnx.merge(graphdef, params)
    n, T = keys.shape[0], mask.shape[0]
    step_keys = jax.vmap(lambda k: jax.random.split(k, T))(keys).swapaxes(0, 1)  # [T, n]

    def body(state: Any, xs: Any) -> tuple[Any, jax.Array]:
        carry, tok = state
        m, k = xs
        carry, logits = model.step(carry, tok)
        tok = jax.vmap(jax.random.categorical)(k, jnp.where(m, logits, _NEG))
        return (carry, tok), tok

    init = (model.init_carry(n), jnp.full((n,), model.start))
    return jax.lax.scan(body, init, (mask, step_keys))[1].T


def _log_probs(graphdef: Any, params: Any, tokens: jax.Array,
               mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-sequence log-probability [n] and summed entropy [n] of told ``tokens`` [n, T]."""
    model = nnx.merge(graphdef, params)
    n = tokens.shape[0]
    inputs = jnp.concatenate([jnp.full((n, 1), model.start), tokens[:, :-1]], axis=1)

    def body(carry: Any, xs: Any) -> tuple[Any, tuple[jax.Array, jax.Array]]:
        m, inp, tok = xs
        carry, logits = model.step(carry, inp)
        lsm = jax.nn.log_softmax(jnp.where(m, logits, _NEG))
        logp = jnp.take_along_axis(lsm, tok[:, None], axis=1)[:, 0]
        return carry, (logp, -jnp.sum(jnp.where(m, jnp.exp(lsm) * lsm, 0.0), axis=1))

    _, (logp, ent) = jax.lax.scan(body, model.init_carry(n), (mask, inputs.T, tokens.T))
    return logp.sum(0), ent.sum(0)


_old_log_probs = jax.jit(lambda g, p, tok, m: _log_probs(g, p, tok, m)[0], static_argnums=0)


@partial(jax.jit, static_argnums=(0, 1))
def _update(graphdef: Any, tx: optax.GradientTransformation, params: Any, opt_state: Any,
            tokens: jax.Array, adv: jax.Array, old_logp: jax.Array, mask: jax.Array,
            hyper: jax.Array, ppo: bool) -> tuple[Any, Any]:
    """One gradient step on the REINFORCE or PPO-clip loss minus the entropy bonus;
    ``hyper`` = (entropy_coef, clip)."""
    def loss(p: Any) -> jax.Array:
        logp, ent = _log_probs(graphdef, p, tokens, mask)
        ratio = jnp.exp(logp - old_logp)
        clipped = jnp.clip(ratio, 1.0 - hyper[1], 1.0 + hyper[1])
        surrogate = jnp.where(ppo, jnp.minimum(ratio * adv, clipped * adv), logp * adv)
        return -jnp.mean(surrogate) - hyper[0] * jnp.mean(ent)

    grads = jax.grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


class Controller(Strategy):
    """Bello et al. 2017's controller: an LSTM policy over program tokens, trained by policy
    gradient on the told rewards (ask a batch, tell it, one policy update).

    Args:
      num_groups, seed, operands, unaries, binaries: as for every :class:`Strategy`.
      hidden: LSTM units (32); embed: token embedding size (32).
      learning_rate: Adam's step size (0.01).
      batch_size: told candidates per policy update (32).
      algorithm: ``"reinforce"`` (Williams 1992, moving-average baseline) or ``"ppo"``
        (Schulman et al. 2017, clipped objective, ``ppo_epochs`` steps per batch).
      entropy_coef: weight of the entropy bonus (0.01).
      baseline_decay: decay of the baseline, an EMA of batch mean rewards (0.9).
      ppo_epochs, clip: PPO's steps per batch (4) and clip range ε (0.2).

    Advantages are (reward − baseline) / the batch's reward std. Diverged rewards (NaN,
    −inf) count as the batch's lowest finite reward (0 if none).
    """

    name = "controller"

    def __init__(self, num_groups: int = 2, seed: int = 0, *, hidden: int = 32,
                 embed: int = 32, learning_rate: float = 0.01, batch_size: int = 32,
                 algorithm: str = "reinforce", entropy_coef: float = 0.01,
                 baseline_decay: float = 0.9, ppo_epochs: int = 4, clip: float = 0.2,
                 **space: Sequence[str] | None) -> None:
        super().__init__(num_groups, seed, **space)
        check_int("hidden", hidden, low=1)
        check_int("embed", embed, low=1)
        check_number("learning_rate", learning_rate, low=0.0, low_inclusive=False)
        check_int("batch_size", batch_size, low=1)
        check_choice("algorithm", algorithm, ALGORITHMS)
        check_number("entropy_coef", entropy_coef, low=0.0)
        check_number("baseline_decay", baseline_decay, low=0.0, high=1.0,
                     high_inclusive=False)
        check_int("ppo_epochs", ppo_epochs, low=1)
        check_number("clip", clip, low=0.0, low_inclusive=False)
        self.hidden, self.embed, self.batch_size = int(hidden), int(embed), int(batch_size)
        self.learning_rate, self.algorithm = float(learning_rate), algorithm
        self.entropy_coef, self.baseline_decay = float(entropy_coef), float(baseline_decay)
        self.ppo_epochs, self.clip = int(ppo_epochs), float(clip)
        G = self.num_groups
        names = {"operands": [o.name for o in OPERANDS], "unaries": [u.name for u in UNARY],
                 "binaries": [b.name for b in BINARY]}
        self._vocab: list[Any] = [*names["operands"], *range(G), *names["unaries"],
                                  *names["binaries"]]
        self._index = {(type(v), v): k for k, v in enumerate(self._vocab)}
        allowed = {k: set(self.space[k] or v) for k, v in names.items()}
        kinds = (["operands"] * len(names["operands"]) + ["ref"] * G
                 + ["unaries"] * len(names["unaries"]) + ["binaries"] * len(names["binaries"]))
        mask = np.zeros((5 * G, len(self._vocab)), bool)
        for g in range(G):
            for j, want in enumerate(("operands", "operands", "unaries", "unaries",
                                      "binaries")):
                mask[5 * g + j] = [(kind == want and v in allowed[want])
                                   or (kind == "ref" and j < 2 and v < g)
                                   for kind, v in zip(kinds, self._vocab, strict=True)]
        self._mask = jnp.asarray(mask)
        model = _Policy(len(self._vocab), self.embed, self.hidden, nnx.Rngs(self.seed))
        self._graphdef, self._params = nnx.split(model)
        self._tx = _optimizer(self.learning_rate)
        self._opt_state = self._tx.init(self._params)
        self.baseline: float | None = None
        self.history: list[tuple[Program, float]] = []  # every told candidate, in order
        self._pending: list[tuple[Program, float]] = []  # told, not yet in an update

    # -- sampling ---------------------------------------------------------------------
    def ask(self, n: int) -> list[Program]:
        """``n`` programs sampled from the current policy (candidate i from key (seed, i))."""
        check_int("n", n, low=1)
        start = max(self.issued, self.told)
        keys = [self._key(np.random.default_rng([self.seed, i]))
                for i in range(start, start + n)]
        size = max(8, 1 << (n - 1).bit_length())  # padded: few compiled shapes
        keys = jnp.stack(keys + [keys[0]] * (size - n))  # rows are independent
        tokens = np.asarray(_sample(self._graphdef, self._params, keys, self._mask))
        self.issued = start + n
        return [self._decode(row) for row in tokens[:n]]

    def _propose(self, i: int, rng: np.random.Generator) -> Program:
        keys = jnp.stack([self._key(rng)] * 8)
        return self._decode(np.asarray(_sample(self._graphdef, self._params, keys,
                                               self._mask))[0])

    @staticmethod
    def _key(rng: np.random.Generator) -> jax.Array:
        return jax.random.key_data(jax.random.key(int(rng.integers(2**31))))

    def _decode(self, row: np.ndarray) -> Program:
        toks = [self._vocab[int(k)] for k in row]
        return Program(tuple(tuple(toks[5 * g:5 * g + 5]) for g in range(self.num_groups)))

    def _encode(self, program: Program) -> list[int]:
        try:
            return [self._index[(type(v), v)] for g in program.groups for v in g]
        except KeyError as e:  # pragma: no cover - Program validates tokens
            raise ValueError(f"program {program} has a token outside the vocabulary") from e

    # -- learning ---------------------------------------------------------------------
    def _observe(self, program: Program, reward: float) -> None:
        self.history.append((program, reward))
        self._pending.append((program, reward))
        if len(self._pending) == self.batch_size:
            self._learn(self._pending)
            self._pending = []

    def _learn(self, batch: list[tuple[Program, float]]) -> None:
        """One policy update on a batch (REINFORCE: one step; PPO: ``ppo_epochs``)."""
        r = np.array([rew for _, rew in batch], float)
        finite = np.isfinite(r)
        r[~finite] = r[finite].min() if finite.any() else 0.0
        mean = float(r.mean())
        baseline = mean if self.baseline is None else self.baseline
        adv = jnp.asarray((r - baseline) / (r.std() + 1e-8), jnp.float32)
        self.baseline = self.baseline_decay * baseline + (1 - self.baseline_decay) * mean
        tokens = jnp.asarray([self._encode(p) for p, _ in batch], jnp.int32)
        old = _old_log_probs(self._graphdef, self._params, tokens, self._mask)
        ppo = self.algorithm == "ppo"
        hyper = jnp.asarray([self.entropy_coef, self.clip], jnp.float32)
        for _ in range(self.ppo_epochs if ppo else 1):
            self._params, self._opt_state = _update(
                self._graphdef, self._tx, self._params, self._opt_state, tokens, adv, old,
                self._mask, hyper, ppo)

    def probability(self, program: Program) -> float:
        """The policy's probability of sampling ``program`` now."""
        tokens = jnp.asarray([self._encode(program)], jnp.int32)
        return float(jnp.exp(_old_log_probs(self._graphdef, self._params, tokens,
                                            self._mask)[0]))

    # -- state ------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "hidden": self.hidden, "embed": self.embed,
                "learning_rate": self.learning_rate, "batch_size": self.batch_size,
                "algorithm": self.algorithm, "entropy_coef": self.entropy_coef,
                "baseline_decay": self.baseline_decay, "ppo_epochs": self.ppo_epochs,
                "clip": self.clip}

    def _state(self) -> dict[str, Any]:
        return {"history": [[p.to_json(), _to_json(r)] for p, r in self.history]}

    def _load(self, state: Mapping[str, Any]) -> None:
        for p, r in state["history"]:  # replays the updates on the fresh network
            self._observe(Program.from_json(p), _from_json(r))


_TX: dict[float, optax.GradientTransformation] = {}


def _optimizer(learning_rate: float) -> optax.GradientTransformation:
    """One optax Adam per learning rate, so the jitted update compiles once per shape."""
    if learning_rate not in _TX:
        _TX[learning_rate] = optax.adam(learning_rate)
    return _TX[learning_rate]

