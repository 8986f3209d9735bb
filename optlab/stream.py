"""The statistic stream: how several primitives read the same gradient.

``optax.chain`` passes one tree forward, so a plain chain of unary transforms cannot express
Adam, which needs two statistics (m, v) of the same gradient and then combines them. optlab
threads a :class:`Stream` through the chain instead:

* the first *accumulator* wraps the incoming gradient tree as ``Stream({"g": grads})``;
* each accumulator adds (or replaces) one named statistic, e.g. ``"m"`` or ``"v"``, whose
  state it owns — a statistic is stored once, however many combiners read it;
* a *combiner* reads named statistics and returns an ordinary update tree, after which any
  optax transform (clipping, weight decay, learning-rate scaling) can follow.

One optimizer keeps one step counter. Every optlab transform is a :class:`Primitive`: an
ordinary optax transform that, used on its own, keeps its own ``count`` (when it reads one),
and that :func:`chain` runs without one, passing the chain's single ``count`` instead — so
``optax.tree.get(state, "count")`` finds exactly one counter in any optlab optimizer.

A :class:`Stream` is a JAX pytree, so chains stay jit / vmap / scan / donate friendly; it only
lives inside one ``update`` call and is never part of the optimizer state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

GRAD = "g"
"""Name under which the incoming gradient is available to every primitive."""


class StreamError(ValueError):
    """A statistic is missing, produced twice, or does not match the params' structure."""


class MisplacedTransformError(TypeError):
    """A transform received a statistic stream where it needs a plain update tree."""


@jax.tree_util.register_pytree_with_keys_class
class Stream(Mapping[str, Any]):
    """An immutable mapping ``name -> tree`` of statistics of one gradient.

    A stream rebuilt by a pytree map (``jax.tree.map`` in an optax transform placed between
    an accumulator and a combiner) is marked, so the next optlab transform reports the
    misplaced transform instead of silently reading statistics it changed. Any unflattening
    marks it, also a ``jax.jit`` or ``lax.cond`` boundary that a stream crosses inside a custom
    transform; such code re-wraps it as ``Stream(dict(stream))``.
    """

    __slots__ = ("_rebuilt", "_stats")

    def __init__(self, stats: Mapping[str, Any], *, _rebuilt: bool = False):
        self._stats = dict(stats)
        self._rebuilt = _rebuilt

    # Mapping interface -------------------------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        try:
            return self._stats[name]
        except KeyError:
            raise StreamError(
                f"statistic {name!r} is not in the stream; available: {sorted(self._stats)}. "
                "Place the accumulator that produces it earlier in the chain."
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._stats)

    def __len__(self) -> int:
        return len(self._stats)

    def __repr__(self) -> str:
        return f"Stream({sorted(self._stats)})"

    @property
    def grad(self) -> Any:
        """The gradient tree that entered the chain."""
        return self[GRAD]

    def add(self, name: str, value: Any) -> Stream:
        """Returns a new stream with a *new* statistic; adding an existing name is an error."""
        if name in self._stats:
            raise StreamError(
                f"statistic {name!r} is produced twice in one chain; give each accumulator its "
                f"own name (already in the stream: {sorted(self._stats)})"
            )
        return Stream({**self._stats, name: value})

    def replace(self, name: str, value: Any) -> Stream:
        """Returns a new stream in which an existing statistic is replaced."""
        self[name]  # raises a clear error when missing
        return Stream({**self._stats, name: value})

    # pytree protocol ---------------------------------------------------------------------
    def tree_flatten_with_keys(self):
        names = sorted(self._stats)
        return [(jax.tree_util.DictKey(n), self._stats[n]) for n in names], tuple(names)

    @classmethod
    def tree_unflatten(cls, names, children):
        return cls(dict(zip(names, children, strict=True)), _rebuilt=True)


def _misplaced(stream: Stream, who: str, detail: str = "") -> MisplacedTransformError:
    return MisplacedTransformError(
        f"{who} received a statistic stream {stream!r}; it acts on plain update trees, so "
        "place it before the first accumulator or after the combiner in the chain" + detail
    )


def as_stream(updates: Any, who: str = "an optlab transform") -> Stream:
    """Wraps a plain update tree as the gradient of a new stream (a stream passes through).

    Raises the misplacement error for a stream that a non-optlab transform has mapped over.
    """
    if not isinstance(updates, Stream):
        return Stream({GRAD: updates})
    if updates._rebuilt:
        raise MisplacedTransformError(
            f"a transform that is not an optlab primitive sits between an accumulator and the "
            f"combiner: it acted on the whole statistic stream {updates!r} before {who} read "
            "it. Transforms of plain update trees (optax.scale, clipping, ...) go before the "
            "first accumulator or after the combiner in the chain"
        )
    return updates


def expect_plain(updates: Any, who: str) -> None:
    """Raises a clear error when a transform that acts on plain trees receives a stream."""
    if isinstance(updates, Stream):
        raise _misplaced(updates, who)


def check_same_structure(tree: Any, reference: Any, what: str, reference_what: str) -> None:
    """Raises ``ValueError`` when two trees do not have the same structure (trace time only)."""
    got, want = jax.tree.structure(tree), jax.tree.structure(reference)
    if got != want:
        raise StreamError(
            f"{what} tree does not match {reference_what}: expected structure {want}, got {got}"
        )


Mask = Any | Callable[[Any], Any] | None
"""Which leaves a transform applies to: a tree of bools like the params, a function
``params -> that tree``, or None (all leaves), as optax's ``mask`` arguments."""


def require_params(params: Any, who: str, *, like: Any = None, extra: str = "") -> None:
    """Refuses ``params=None`` in ``update`` with an error naming the transform ``who``; with
    ``like`` (the updates), also checks that the params have its tree structure."""
    if params is None:
        raise ValueError(f"{who} needs params: call update(updates, state, params{extra})")
    if like is not None:
        check_same_structure(params, like, f"{who}: params", "the updates")


def tree_map(fn, tree: Any, *rest: Any) -> Any:
    """``jax.tree.map`` that passes ``None`` leaves of ``tree`` through untouched."""
    return jax.tree.map(
        lambda x, *ys: None if x is None else fn(x, *ys), tree, *rest, is_leaf=lambda x: x is None
    )


class _Several:
    """Several results for one leaf; not a pytree, so a tree map keeps it as one leaf."""

    def __init__(self, values: tuple[Any, ...]):
        self.values = values


def tree_map_n(fn, n: int, tree: Any, *rest: Any) -> tuple[Any, ...]:
    """:func:`tree_map` of a function returning ``n`` values per leaf: ``n`` trees."""
    several = tree_map(lambda *a: _Several(tuple(fn(*a))), tree, *rest)
    return tuple(tree_map(lambda s, i=i: s.values[i], several) for i in range(n))


def cast_like(tree: Any, reference: Any) -> Any:
    """Casts every leaf of ``tree`` to the dtype of the matching leaf of ``reference``.

    Keeps optimizer state dtypes fixed across updates, so jitted steps never recompile. A leaf
    that already has the dtype is returned as it is (no cast in the jaxpr).
    """
    return tree_map(lambda x, r: x if x.dtype == r.dtype else x.astype(r.dtype), tree, reference)


def _leaf_inner(a: jax.Array, b: jax.Array) -> jax.Array:
    """⟨a, b⟩ = Σ conj(a)·b over all axes, as one contraction (no flattening).

    A contraction rather than ``sum(a * b)``: it rounds exactly as optax's ``tree.vdot``, which
    the L-BFGS trajectory (through the line search's accept/reject decisions) is sensitive to.
    On a mesh with explicit axes the contraction of sharded axes needs its output sharding
    named: replicated (optax's ``tree.vdot`` ravels instead on JAX ≥ 0.10, where its version
    check compares strings, and fails on explicitly sharded leaves).
    """
    if jnp.iscomplexobj(a):
        a = jnp.conj(a)
    mesh = jax.typeof(a).sharding.mesh
    explicit = jax.sharding.AxisType.Explicit in getattr(mesh, "axis_types", ())
    out_sharding = jax.sharding.NamedSharding(mesh, jax.P()) if explicit else None
    return jnp.tensordot(a, b, a.ndim, precision=jax.lax.Precision.HIGHEST,
                         out_sharding=out_sharding)


def tree_inner(x: Any, y: Any) -> jax.Array:
    """Re⟨x, y⟩ summed over the leaves of two trees (each leaf: :func:`_leaf_inner`)."""
    parts = [_leaf_inner(a, b) for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y),
                                                 strict=True)]
    return jnp.real(sum(parts[1:], parts[0])) if parts else jnp.zeros([])


def lowest_dtype(tree: Any) -> Any:
    """``optax.tree.dtype(tree, "lowest")``, also for abstract leaves (``ShapeDtypeStruct``):
    the dtype of scalar statistics in optax's step-size estimators."""
    return optax.tree.dtype(jax.tree.map(lambda x: jnp.zeros((), x.dtype), tree), "lowest")


def empty_init(params: Any) -> optax.EmptyState:
    """The ``step_init`` of a stateless primitive."""
    del params
    return optax.EmptyState()


def own_copy(x: Any) -> Any:
    """A copy of an array in its own buffer (params and a state holding a copy of them may
    both be donated); an abstract array (``jax.ShapeDtypeStruct``) is its own abstract copy."""
    return x if isinstance(x, jax.ShapeDtypeStruct) else jnp.copy(x)


def zeros_like(tree: Any, dtype: Any = None, fill: Any = 0.0) -> Any:
    """A tree of ``fill`` with the shape, dtype (or ``dtype``) *and sharding* of ``tree``.

    ``jnp.full_like`` keeps the sharding of each leaf (also of a ``jax.ShapeDtypeStruct``), so
    the state built by ``init`` has the type that ``update`` returns.
    """
    return tree_map(lambda p: jnp.full_like(p, fill, dtype=dtype), tree)


def scalar_as(x: Any, *leaves: jax.Array) -> Any:
    """A scalar hyperparameter in the promoted dtype of ``leaves``.

    Python numbers stay weakly typed; arrays (schedules, injected hyperparameters) are cast, so
    a float32 schedule value does not promote bfloat16 updates, nor demote float64 ones.
    """
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return x
    dtype = jnp.result_type(*leaves)
    return x if getattr(x, "dtype", None) == dtype else jnp.asarray(x).astype(dtype)


def per_dtype(fn: Callable[[Any], Any]) -> Callable[..., Any]:
    """Memoises a per-leaf scalar by dtype within one trace.

    ``get(*leaves)`` returns ``fn(dtype)`` cast like :func:`scalar_as` to the promoted dtype of
    ``leaves`` (pass every operand the scalar multiplies, e.g. the gradient and a bfloat16
    state, so β is not rounded to the state's precision). A step-dependent scalar (a bias
    correction 1 − βᵗ, a schedule value) is then computed once per dtype, not once per leaf:
    a 500-leaf tree gets one ``pow``, as in optax.
    """
    cache: dict[Any, Any] = {}

    def get(*leaves: jax.Array) -> Any:
        key = jnp.result_type(*leaves)
        if key not in cache:
            cache[key] = scalar_as(fn(key), *leaves)
        return cache[key]

    return get


def increment(count: jax.Array) -> jax.Array:
    """Step counter increment that saturates instead of overflowing int32."""
    max_int = jnp.iinfo(count.dtype).max
    return jnp.where(count < max_int, count + 1, max_int)


def abs_sq(x: jax.Array) -> jax.Array:
    """|x|² element-wise, real for complex x."""
    return (x * jnp.conj(x)).real if jnp.iscomplexobj(x) else x * x


def new_count() -> jax.Array:
    """A step counter: 0 before the first update."""
    return jnp.zeros([], jnp.int32)


# ------------------------------------------------------------------------------------------
# Primitives and the chain: one step counter per optimizer
# ------------------------------------------------------------------------------------------


class StepState(NamedTuple):
    """State of an optlab transform that reads the step and is used on its own (outside
    :func:`chain`): the step count (0 before the first update) and the transform's state."""

    count: jax.Array
    inner: Any


StepInit = Callable[[Any], Any]
StepUpdate = Callable[..., tuple[Any, Any]]


class Primitive(optax.GradientTransformationExtraArgs):
    """An optax transform that can run on a shared step counter.

    ``init`` / ``update`` are those of any optax transform. In addition,
    ``step_init(params)`` builds the state *without* a counter and
    ``step_update(updates, state, params, count, **extra)`` reads the step ``count`` (number
    of completed updates) from the caller; :func:`chain` uses these, so a chain of any number
    of primitives keeps one ``count``. ``counted`` says whether ``step_update`` reads it.
    """

    step_init: StepInit
    step_update: StepUpdate
    counted: bool

    def _replace(self, **fields) -> optax.GradientTransformationExtraArgs:
        """A plain optax transform with ``fields`` replaced (it keeps its own counter: the
        counter-free ``step_init`` / ``step_update`` no longer describe it)."""
        return optax.GradientTransformationExtraArgs(*tuple.__iter__(self))._replace(**fields)


def primitive(step_init: StepInit, step_update: StepUpdate, *, counted: bool) -> Primitive:
    """Builds a :class:`Primitive` from its counter-free ``step_init`` / ``step_update``.

    Used on its own, a primitive that reads the step keeps ``StepState(count, inner)``; one
    that does not keeps its state as it is (``count`` is then ``None`` in ``step_update``).
    """
    if counted:
        def init_fn(params):
            return StepState(new_count(), step_init(params))

        def update_fn(updates, state, params=None, **extra):
            out, inner = step_update(updates, state.inner, params, state.count, **extra)
            return out, StepState(increment(state.count), inner)
    else:
        init_fn = step_init

        def update_fn(updates, state, params=None, **extra):
            return step_update(updates, state, params, None, **extra)

    p = Primitive(init_fn, update_fn)
    p.step_init, p.step_update, p.counted = step_init, step_update, counted
    return p


def _describe(tx: Any) -> str:
    fn = getattr(tx, "update", None)
    name = getattr(fn, "__qualname__", None) or type(tx).__name__
    return name.split(".<locals>")[0]


def _run_foreign(index: int, tx, updates, state, params, extra):
    """Runs a non-optlab transform of a chain, turning its failure on a stream into the
    misplacement message."""
    update = optax.with_extra_args_support(tx).update
    if not isinstance(updates, Stream):
        return update(updates, state, params, **extra)
    who = f"transform #{index} of the chain ({_describe(tx)})"
    try:
        out, new_state = update(updates, state, params, **extra)
    except (StreamError, MisplacedTransformError):
        raise  # raised by an optlab primitive inside it (e.g. an optax.chain of combiners)
    except (TypeError, ValueError) as e:
        raise _misplaced(updates, who, f" (it failed with {type(e).__name__}: {e})") from e
    if isinstance(out, Stream) and out._rebuilt:
        raise _misplaced(updates, who)
    return out, new_state


def chain(*transforms: optax.GradientTransformation) -> Primitive:
    """``optax.chain`` with one step counter shared by every optlab primitive in it.

    Any optax transform may be part of the chain; one placed between an accumulator and the
    combiner (where it would act on the whole statistic stream) is reported with a clear
    error. The state is ``StepState(count, (state_1, ..., state_n))`` when some primitive reads
    the step, else the tuple of states, as ``optax.chain``'s. A chain is itself a primitive, so
    chains nest and still share one counter.
    """
    transforms = tuple(transforms)
    for i, tx in enumerate(transforms):
        if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
            raise TypeError(f"chain: argument #{i} is not a GradientTransformation, got "
                            f"{type(tx).__name__}")
    counted = any(isinstance(tx, Primitive) and tx.counted for tx in transforms)

    def step_init(params):
        return tuple(tx.step_init(params) if isinstance(tx, Primitive) else tx.init(params)
                     for tx in transforms)

    def step_update(updates, state, params, count, **extra):
        new_state = []
        for i, (tx, s) in enumerate(zip(transforms, state, strict=True)):
            if isinstance(tx, Primitive):
                updates, s = tx.step_update(updates, s, params, count, **extra)
            else:
                updates, s = _run_foreign(i, tx, updates, s, params, extra)
            new_state.append(s)
        return updates, tuple(new_state)

    return primitive(step_init, step_update, counted=counted)
