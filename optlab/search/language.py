"""Bello et al. (2017)'s optimizer search space: operands, unary and binary functions.

A program (:mod:`optlab.search.program`) is a list of 5-token groups ``(o₁, o₂, u₁, u₂, b)``
computing ``b(u₁(o₁), u₂(o₂))``; this module defines what the tokens mean and how each is
evaluated on one parameter leaf. Facts and their sources are in REFERENCES.md ("Optimizer
search"); the choices made where the paper could not be checked are:

* **Moments.** m̂ = EMA(g, 0.9), v̂ = EMA(g², 0.999), γ̂ = EMA(g³, 0.999) are bias-corrected
  (the hat of Kingma & Ba), so the "Adam" operand is exactly Adam's update and
  ``sign(m̂)`` is unchanged (sign is scale-free). ``SearchConfig(debias=False)`` uses the raw
  averages, as TF-contrib's PowerSign / AddSign do for m.
* **Decays.** ld, cd, rd are optlab's :func:`~optlab.schedules.linear_sign_decay`,
  :func:`~optlab.schedules.cosine_sign_decay` (n = 0.5) and
  :func:`~optlab.schedules.restart_sign_decay` of the step (0 at the first update) over
  ``decay_steps``; rd's number of periods is unknown (ENOS uses 20): ``restart_periods``,
  default 1 (TF-contrib's default).
* **Noise.** ε ~ N(0, 0.01²) and the annealed noise N(0, 1/(1+t)^0.55) (a variance, t the
  step, as in Neelakantan et al.) are drawn per element and step from the transform's key.
* **drop(x, p)** is inverted dropout, rescaled by 1/(1−p) like ``tf.nn.dropout`` (the paper's
  framework); ``SearchConfig(drop_rescale=False)`` keeps the unscaled mask.
* **Protected numerics**, defined for every input: log|x| and x^y use max(|x|, tiny) (x^y is
  |x|^y, never NaN); √|x|; x/(y + 1e-8) is 0 where y + 1e-8 is 0. Overflow to ±inf is not
  masked: the search marks such a run diverged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from optlab import schedules

__all__ = [
    "BINARY",
    "OPERANDS",
    "UNARY",
    "Binary",
    "BinaryFn",
    "Context",
    "Leaf",
    "Node",
    "Operand",
    "SearchConfig",
    "Unary",
    "UnaryFn",
    "binary",
    "operand",
    "unary",
]


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """The search space's free settings (see the module docstring for the defaults' sources).

    Args:
      beta1, beta2, beta3: decays of m̂, v̂, γ̂ (0.9, 0.999, 0.999).
      debias: bias-correct m̂, v̂, γ̂.
      eps: ε of the Adam and RMSProp operands (1e-8).
      noise_scale: standard deviation of the noise operand (0.01).
      anneal_gamma: exponent of the annealed noise's variance 1/(1+t)^γ (0.55).
      decay_steps: T of the decay operands ld, cd, rd.
      restart_periods: number of periods of rd.
      drop_rescale: rescale drop(x, p) by 1/(1−p).
    """

    beta1: float = 0.9
    beta2: float = 0.999
    beta3: float = 0.999
    debias: bool = True
    eps: float = 1e-8
    noise_scale: float = 0.01
    anneal_gamma: float = 0.55
    decay_steps: int = 10_000
    restart_periods: float = 1.0
    drop_rescale: bool = True


@dataclasses.dataclass(frozen=True)
class Context:
    """What an operand reads on one parameter leaf at one step."""

    g: jax.Array
    stats: dict[str, jax.Array]  # "m", "v", "gamma" as the program needs them
    w: jax.Array | None  # the parameter leaf (weight operands)
    count: jax.Array  # completed updates: 0 at the first
    noise: jax.Array | None  # standard normal draws shaped like g, [2, *g.shape]
    config: SearchConfig


# ------------------------------------------------------------------------------------------
# Operands
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Operand:
    """An operand token: ``name`` (tokens, JSON), ``formula`` (how it prints), the moment
    statistics it reads, and whether it needs the params, the step or random numbers."""

    name: str
    formula: str
    fn: Callable[[Context], jax.Array] = dataclasses.field(compare=False, repr=False)
    stats: frozenset[str] = frozenset()
    params: bool = False
    step: bool = False
    random: bool = False
    doc: str = ""


def _decay(kind: str) -> Callable[[Context], jax.Array]:
    def fn(c: Context) -> jax.Array:
        T, n = c.config.decay_steps, c.config.restart_periods
        sched = {"ld": lambda: schedules.linear_sign_decay(T),
                 "cd": lambda: schedules.cosine_sign_decay(T, num_periods=0.5),
                 "rd": lambda: schedules.restart_sign_decay(T, num_periods=n)}[kind]()
        return jnp.broadcast_to(sched(c.count).astype(c.g.dtype), c.g.shape)
    return fn


def _ones(value: float) -> Callable[[Context], jax.Array]:
    return lambda c: jnp.full_like(c.g, value)


def _adam(c: Context) -> jax.Array:
    return c.stats["m"] / (jnp.sqrt(c.stats["v"]) + c.config.eps)


def _rmsprop(c: Context) -> jax.Array:
    return c.g / (jnp.sqrt(c.stats["v"]) + c.config.eps)


def _annealed(c: Context) -> jax.Array:
    t = c.count.astype(c.g.dtype)
    return c.noise[1] * jnp.sqrt((1.0 + t) ** (-c.config.anneal_gamma))


M, V, GAMMA = frozenset({"m"}), frozenset({"v"}), frozenset({"gamma"})

OPERANDS: tuple[Operand, ...] = (
    Operand("g", "g", lambda c: c.g, doc="the gradient"),
    Operand("g2", "g^2", lambda c: c.g * c.g, doc="g²"),
    Operand("g3", "g^3", lambda c: c.g * c.g * c.g, doc="g³"),
    Operand("m", "m", lambda c: c.stats["m"], stats=M, doc="m̂ = EMA(g, β₁)"),
    Operand("v", "v", lambda c: c.stats["v"], stats=V, doc="v̂ = EMA(g², β₂)"),
    Operand("gamma", "gamma", lambda c: c.stats["gamma"], stats=GAMMA,
            doc="γ̂ = EMA(g³, β₃)"),
    Operand("sign_g", "sign(g)", lambda c: jnp.sign(c.g), doc="sign(g)"),
    Operand("sign_m", "sign(m)", lambda c: jnp.sign(c.stats["m"]), stats=M, doc="sign(m̂)"),
    Operand("one", "1", _ones(1.0), doc="the constant 1"),
    Operand("two", "2", _ones(2.0), doc="the constant 2"),
    Operand("noise", "noise", lambda c: c.config.noise_scale * c.noise[0], random=True,
            doc="ε ~ N(0, 0.01²)"),
    Operand("w1e-4", "1e-4 * w", lambda c: 1e-4 * c.w, params=True, doc="10⁻⁴ w"),
    Operand("w1e-3", "1e-3 * w", lambda c: 1e-3 * c.w, params=True, doc="10⁻³ w"),
    Operand("w1e-2", "1e-2 * w", lambda c: 1e-2 * c.w, params=True, doc="10⁻² w"),
    Operand("w1e-1", "1e-1 * w", lambda c: 1e-1 * c.w, params=True, doc="10⁻¹ w"),
    Operand("adam", "m / (sqrt(v) + eps)", _adam, stats=M | V,
            doc="Adam's update m̂/(√v̂ + ε)"),
    Operand("rmsprop", "g / (sqrt(v) + eps)", _rmsprop, stats=V,
            doc="RMSProp's update g/(√v̂ + ε)"),
    Operand("ld", "ld", _decay("ld"), step=True, doc="linear decay 1 − t/T"),
    Operand("cd", "cd", _decay("cd"), step=True, doc="cosine decay ½(1 + cos(2πnt/T)), n = 0.5"),
    Operand("rd", "rd", _decay("rd"), step=True,
            doc="restart decay ½(1 + cos(π((nt) mod T)/T))"),
    Operand("anneal", "anneal", _annealed, step=True, random=True,
            doc="annealed noise N(0, 1/(1+t)^0.55)"),
)


# ------------------------------------------------------------------------------------------
# Functions
# ------------------------------------------------------------------------------------------


def _tiny(x: jax.Array) -> jax.Array:
    return jnp.finfo(x.dtype).tiny


def _safe_abs(x: jax.Array) -> jax.Array:
    return jnp.maximum(jnp.abs(x), _tiny(x))


def _drop(p: float) -> Callable[..., jax.Array]:
    def fn(x: jax.Array, key: jax.Array, config: SearchConfig) -> jax.Array:
        keep = jax.random.bernoulli(key, 1.0 - p, x.shape)
        kept = x / (1.0 - p) if config.drop_rescale else x
        return jnp.where(keep, kept, jnp.zeros_like(x))
    return fn


@dataclasses.dataclass(frozen=True)
class UnaryFn:
    """A unary function token; ``template`` prints it with ``{x}`` for the argument. A random
    one (dropout) is called as ``fn(x, key, config)``, the others as ``fn(x)``."""

    name: str
    template: str
    fn: Callable[..., jax.Array] = dataclasses.field(compare=False, repr=False)
    random: bool = False


UNARY: tuple[UnaryFn, ...] = (
    UnaryFn("id", "{x}", lambda x: x),
    UnaryFn("neg", "-{x}", lambda x: -x),
    UnaryFn("exp", "exp({x})", jnp.exp),
    UnaryFn("log", "log(abs({x}))", lambda x: jnp.log(_safe_abs(x))),
    UnaryFn("sqrt", "sqrt(abs({x}))", lambda x: jnp.sqrt(jnp.abs(x))),
    *(UnaryFn(f"clip{c}", f"clip({{x}}, {c})", lambda x, c=float(c): jnp.clip(x, -c, c))
      for c in ("1e-5", "1e-4", "1e-3")),
    *(UnaryFn(f"drop{p}", f"drop({{x}}, {p})", _drop(float(p)), random=True)
      for p in ("0.1", "0.3", "0.5")),
    UnaryFn("sign", "sign({x})", jnp.sign),
)


@dataclasses.dataclass(frozen=True)
class BinaryFn:
    """A binary function token; ``template`` prints it with ``{x}``, ``{y}``; ``commutative``
    lets the canonical form sort its arguments."""

    name: str
    template: str
    fn: Callable[[jax.Array, jax.Array], jax.Array] = dataclasses.field(compare=False,
                                                                         repr=False)
    commutative: bool = False


def _div(x: jax.Array, y: jax.Array) -> jax.Array:
    den = y + 1e-8
    safe = jnp.where(den == 0, jnp.ones_like(den), den)
    return jnp.where(den == 0, jnp.zeros_like(x), x / safe)


BINARY: tuple[BinaryFn, ...] = (
    BinaryFn("add", "{x} + {y}", jnp.add, commutative=True),
    BinaryFn("sub", "{x} - {y}", jnp.subtract),
    BinaryFn("mul", "{x} * {y}", jnp.multiply, commutative=True),
    BinaryFn("div", "{x} / ({y} + 1e-8)", _div),
    BinaryFn("pow", "abs({x}) ^ {y}", lambda x, y: jnp.power(_safe_abs(x), y)),
    BinaryFn("keep", "{x}", lambda x, y: x),
)


def _index(items: tuple[Any, ...]) -> dict[str, Any]:
    return {item.name: item for item in items}


_OPERANDS, _UNARY, _BINARY = _index(OPERANDS), _index(UNARY), _index(BINARY)


def _lookup(table: dict[str, Any], kind: str, name: str) -> Any:
    try:
        return table[name]
    except KeyError:
        from optlab._checks import unknown_name

        raise unknown_name(kind, name, table) from None


def operand(name: str) -> Operand:
    """The operand named ``name`` (``"g"``, ``"sign_m"``, ``"adam"``, ...)."""
    return _lookup(_OPERANDS, "operand", name)


def unary(name: str) -> UnaryFn:
    """The unary function named ``name`` (``"exp"``, ``"clip1e-3"``, ``"drop0.5"``, ...)."""
    return _lookup(_UNARY, "unary function", name)


def binary(name: str) -> BinaryFn:
    """The binary function named ``name`` (``"add"``, ``"div"``, ``"keep"``, ...)."""
    return _lookup(_BINARY, "binary function", name)


# ------------------------------------------------------------------------------------------
# Expression trees
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Leaf:
    """An operand."""

    operand: str


@dataclasses.dataclass(frozen=True)
class Unary:
    fn: str
    x: Node


@dataclasses.dataclass(frozen=True)
class Binary:
    fn: str
    x: Node
    y: Node


Node = Leaf | Unary | Binary
