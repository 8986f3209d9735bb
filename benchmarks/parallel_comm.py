"""Communication and step time of optlab.parallel's methods, side by side with synchronous
data parallel, in one run.

For each method (R replicas of the MNIST-1D MLP, batch B per replica):

* **bits/param/step**: what the method sends and receives per parameter and step, on average
  (``Parallel.bits_per_step``: 64 for a float32 all-reduce every step);
* **collectives in the compiled step**: the all-reduce / all-gather / ... operations XLA
  emitted for one training step on the ``replica × data`` mesh, with their bytes (a method
  that communicates every H steps has its collectives inside the conditional branch);
* **s per step**: wall time of ``--steps`` training steps inside one ``lax.scan`` (no Python
  loop: XLA:CPU deadlocks when collective steps are dispatched without waiting), median of
  ``--reps``, and its ratio to data parallel.

Simulated CPU devices (``--devices 8`` sets ``--xla_force_host_platform_device_count``)
prove the program is partitioned as intended, not speed: their "collectives" are memory
copies. With ``--coordinator HOST:PORT --num-processes N --process-id I`` the same script runs
as one of N processes joined by ``jax.distributed`` (gloo on CPU): real messages.

    python benchmarks/parallel_comm.py --devices 8            # one process, 8 CPU devices
    python benchmarks/parallel_comm.py --quick                # CI smoke test
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=0,
                   help="simulated CPU devices (default: those visible)")
    p.add_argument("--replicas", type=int, default=8, help="replicas R (default 8)")
    p.add_argument("--batch-size", type=int, default=32, help="per replica (default 32)")
    p.add_argument("--steps", type=int, default=50, help="steps per timed scan (default 50)")
    p.add_argument("--reps", type=int, default=5, help="timed scans (default 5)")
    p.add_argument("--quick", action="store_true", help="smoke test: 2 replicas, 5 steps, "
                   "1 rep, data_parallel and majority_vote")
    p.add_argument("--coordinator", default=None, metavar="HOST:PORT")
    p.add_argument("--num-processes", type=int, default=1)
    p.add_argument("--process-id", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.replicas, args.steps, args.reps = 2, 5, 1
    for name in ("replicas", "batch_size", "steps", "reps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


COLLECTIVE = re.compile(r"=\s*(.*?)\s(all-reduce|all-gather|reduce-scatter|collective-permute|"
                        r"all-to-all)(?:-start)?\(")
SHAPE = re.compile(r"\b([a-z]+\d*)\[([\d,]*)\]")
BYTES = {"f32": 4, "f16": 2, "bf16": 2, "s32": 4, "u32": 4, "f64": 8, "pred": 1, "s8": 1,
         "u8": 1}


def collectives(hlo: str) -> dict[str, int]:
    """Bytes of each kind of collective in a compiled HLO module (each op counted once; a
    combined op's tuple of results summed)."""
    out: dict[str, int] = {}
    for line in hlo.splitlines():
        found = COLLECTIVE.search(line)
        if not found:
            continue
        result, kind = found.groups()
        for dtype, dims in SHAPE.findall(result):
            n = 1
            for d in filter(None, dims.split(",")):
                n *= int(d)
            out[kind] = out.get(kind, 0) + n * BYTES.get(dtype, 4)
    return out


def methods(quick: bool, R: int):
    import optlab
    from optlab import parallel

    table = [
        ("data_parallel", lambda: parallel.data_parallel(optlab.sgd(0.05), R)),
        ("majority_vote", lambda: parallel.majority_vote(optlab.sgd(1e-3), R)),
        ("diloco H=10", lambda: parallel.diloco(optlab.adamw(1e-3), R, inner_steps=10)),
        ("fedavg H=10", lambda: parallel.fedavg(optlab.sgd(0.05), R, inner_steps=10)),
        ("easgd tau=4", lambda: parallel.easgd(optlab.sgd(0.05), R, period=4)),
        ("downpour 4/4", lambda: parallel.downpour(optlab.adagrad(0.05), R, n_fetch=4,
                                                   n_push=4)),
    ]
    return table[:2] if quick else table


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.devices:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_"
                                   f"platform_device_count={args.devices}")
    import jax

    if args.coordinator:
        jax.distributed.initialize(coordinator_address=args.coordinator,
                                   num_processes=args.num_processes,
                                   process_id=args.process_id)
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from optlab.parallel.training import parallel_mesh
    from optlab.tasks import load_dataset
    from optlab.train import _resolve_model as resolve_model
    from optlab.train import classification_loss

    R, B = args.replicas, args.batch_size
    mesh = parallel_mesh(R, B)
    data = load_dataset("mnist1d")
    graph, params, rest = nnx.split(resolve_model("mlp", data)(nnx.Rngs(0)), nnx.Param, ...)
    n_params = sum(x.size for x in jax.tree.leaves(params))
    rows = np.arange(args.steps * R * B) % len(data.y_train)  # passes over the data as needed
    x = jnp.asarray(data.x_train[rows].reshape(args.steps, R, B, -1))
    y = jnp.asarray(data.y_train[rows].reshape(args.steps, R, B))
    if mesh is not None:
        x = jax.device_put(x, NamedSharding(mesh, P(None, "replica", "data")))
        y = jax.device_put(y, NamedSharding(mesh, P(None, "replica", "data")))

    def loss(p, xb, yb):
        return classification_loss(nnx.merge(graph, p, rest), xb, yb)[0]

    grads_of = jax.vmap(jax.grad(loss))
    rank0 = jax.process_index() == 0
    if rank0:
        print(f"# parallel_comm: {jax.device_count()} x {jax.devices()[0].device_kind} "
              f"({jax.process_count()} process(es)), mesh "
              f"{dict(mesh.shape) if mesh is not None else 'none (one device)'}, MLP "
              f"{n_params} params, R={R} replicas x batch {B}, {args.steps} steps per scan, "
              f"median of {args.reps}")
        print("\n| method | bits/param/step | collectives in the compiled step (bytes) | "
              "s per step | / data_parallel |")
        print("|---|---|---|---|---|")
    baseline = None
    for name, build in methods(args.quick, R):
        method = build()

        def run(state, xs, method=method):
            def step(carry, inputs):
                s, k = carry
                xb, yb = inputs
                g = grads_of(method.replica_params(s), xb, yb)
                k, sub = jax.random.split(k)
                return (method.update(s, g, sub), k), None

            return jax.lax.scan(step, (state, jax.random.key(0)), xs)[0][0]

        state = jax.jit(method.init)(params)
        compiled = jax.jit(run).lower(state, (x, y)).compile()
        found = collectives(compiled.as_text())
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(state, (x, y)))
            times.append((time.perf_counter() - t0) / args.steps)
        t = statistics.median(times)
        baseline = baseline or t
        if rank0:
            kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(found.items())) or "none"
            print(f"| {name} | {method.bits_per_step:.3g} | {kinds} | {t:.4f} | "
                  f"{t / baseline:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
