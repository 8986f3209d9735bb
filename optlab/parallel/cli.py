"""``optlab train``'s parallel flags: ``--parallel NAME --replicas R [--inner-steps H] ...``
and ``--delay τ`` (asynchronous SGD through :func:`stale_gradients`)."""

from __future__ import annotations

import argparse
import functools
from typing import Any

from optlab.parallel import registry
from optlab.parallel.training import Replicas

# flag → (the option it sets, the methods that take it)
FLAGS = {
    "inner_steps": ("--inner-steps", ("diloco", "fedavg")),
    "period": ("--period", ("easgd", "eamsgd")),
    "n_fetch": ("--n-fetch", ("downpour",)),
    "n_push": ("--n-push", ("downpour",)),
    "adversaries": ("--adversaries", ("majority_vote",)),
}


def add_flags(p: argparse.ArgumentParser, int_at_least) -> None:
    g = p.add_argument_group("parallel training (optlab.parallel)")
    g.add_argument("--parallel", default=None, metavar="METHOD",
                   help="train every run as --replicas replicas: "
                   f"{', '.join(registry.METHODS)} (default: none, one model)")
    g.add_argument("--replicas", type=int_at_least(1), default=None, metavar="R",
                   help="replicas of --parallel, each on its own --batch-size batch "
                   "(default: 4)")
    g.add_argument("--non-iid", action="store_true",
                   help="each replica trains on its own label shard (default: off, iid)")
    for dest, (flag, methods) in FLAGS.items():
        option = registry.options(methods[0])[dest]
        g.add_argument(flag, dest=dest, type=int_at_least(0 if dest == "adversaries" else 1),
                       default=None, metavar="N",
                       help=f"{' / '.join(methods)}: {dest} (default: {option})")
    g.add_argument("--parallel-arg", action="append", default=[], metavar="NAME=VALUE",
                   help="another option of the --parallel method, e.g. outer_momentum=0.9 "
                   "(`optlab train --parallel NAME --parallel-arg help=1` lists them; "
                   "default: none)")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="join a run of --num-processes processes (jax.distributed; one per "
                   "host or GPU), process 0 listening at HOST:PORT (default: one process)")
    g.add_argument("--num-processes", type=int_at_least(1), default=None, metavar="N",
                   help="processes in the run (with --coordinator; default: 1)")
    g.add_argument("--process-id", type=int_at_least(0), default=None, metavar="I",
                   help="this process's rank, 0..N-1 (with --coordinator; default: 0)")
    g.add_argument("--delay", type=int_at_least(0), default=None, metavar="TAU",
                   help="asynchronous SGD: apply every gradient TAU steps late "
                   "(optlab.parallel.stale_gradients in front of the optimizer; "
                   "default: none)")


def distributed(args: argparse.Namespace, error) -> int:
    """Joins the processes of a multi-process run (``jax.distributed.initialize``) when
    ``--coordinator`` is given; returns this process's rank. Call before any JAX work."""
    flags = {"--coordinator": args.coordinator, "--num-processes": args.num_processes,
             "--process-id": args.process_id}
    if all(v is None for v in flags.values()):
        return 0
    missing = [k for k, v in flags.items() if v is None]
    if missing:
        error(f"{', '.join(missing)}: --coordinator, --num-processes and --process-id go "
              "together")
    host, colon, port = args.coordinator.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        error(f"--coordinator {args.coordinator!r}: expected HOST:PORT, e.g. 127.0.0.1:12355")
    if args.process_id >= args.num_processes:
        error(f"--process-id must be in [0, {args.num_processes - 1}] (--num-processes "
              f"{args.num_processes}), got {args.process_id}")
    import jax

    jax.distributed.initialize(coordinator_address=args.coordinator,
                               num_processes=args.num_processes, process_id=args.process_id)
    return args.process_id


def agree(ok: bool, error) -> None:
    """After process 0's checks of ``--out`` (the other processes write nothing), every
    process of a multi-process run learns whether they passed, so that none is left waiting
    in a collective for a process that exited: process 0 passes ``ok``; elsewhere ``error``
    is called when process 0 refused the run. A no-op in a single process."""
    import jax

    if jax.process_count() == 1:
        return
    import numpy as np
    from jax.experimental import multihost_utils

    verdict = multihost_utils.broadcast_one_to_all(np.int32(ok))
    if jax.process_index() > 0 and not int(verdict):
        error("process 0 refused this run (its error names the reason); nothing was written")


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text in ("True", "False"):
        return text == "True"
    return text


def replicas(args: argparse.Namespace, error) -> Replicas | None:
    """The ``Replicas`` of the flags (None without ``--parallel``); ``error(message)`` raises
    the CLI's error."""
    given = {dest: getattr(args, dest) for dest in FLAGS if getattr(args, dest) is not None}
    if args.parallel is None:
        stray = [FLAGS[d][0] for d in given] + [
            flag for flag, on in (("--replicas", args.replicas is not None),
                                  ("--non-iid", args.non_iid),
                                  ("--parallel-arg", bool(args.parallel_arg))) if on]
        if stray:
            error(f"{', '.join(stray)} need{'s' if len(stray) == 1 else ''} --parallel METHOD")
        return None
    if args.delay is not None:
        error("--delay and --parallel are alternatives: --delay simulates asynchronous SGD on "
              "one model; --parallel downpour simulates asynchronous replicas")
    name = args.parallel.strip().lower()
    if name not in registry.METHODS:
        error(f"--parallel {args.parallel!r}: choose from {', '.join(registry.METHODS)}")
    for dest in given:
        flag, methods = FLAGS[dest]
        if name not in methods:
            error(f"{flag} applies to --parallel {' or '.join(methods)}, not {name}")
    options = dict(given)
    for item in args.parallel_arg:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            error(f"--parallel-arg {item!r}: expected NAME=VALUE")
        if key.strip() == "help":
            allowed = registry.options(name)
            error(f"--parallel {name} options: "
                  + ", ".join(f"{k}={v!r}" for k, v in allowed.items()))
        if key.strip() in FLAGS:
            error(f"--parallel-arg {key}: use {FLAGS[key.strip()][0]}")
        options[key.strip()] = _number(value.strip())
    try:
        return registry.make(name, 4 if args.replicas is None else args.replicas,
                             iid=not args.non_iid, options_=options)
    except (TypeError, ValueError) as e:
        error(f"--parallel {name}: {e}")
    return None


def with_delay(factory, delay: int | None):
    """The optimizer factory with ``stale_gradients(delay)`` in front (unchanged for None)."""
    if not delay:
        return factory
    return functools.partial(_delayed, factory, delay)


def _delayed(factory, delay: int, **hyperparams):
    from optlab.parallel.staleness import stale_gradients
    from optlab.stream import chain

    return chain(stale_gradients(delay), factory(**hyperparams))
