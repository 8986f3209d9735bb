"""Training throughput of optlab.train, measured side by side in one process.

1. Steps per second of ``optlab.train``'s loop (one ``lax.scan`` per epoch, donated)
   vs a per-step Python loop: ``nnx.jit`` with ``nnx.Optimizer`` (the Flax-idiomatic way) and
   ``jax.jit`` of a functional split/merge step with donated buffers. Same model, optimizer,
   data, batch size and per-epoch evaluation on the validation and test sets.
2. A grid of K runs (K learning rates) in one compiled program — the runs mapped one after
   another inside it (``run_batch=1``, the default: a run's result does not depend on the
   grid) or all K vmapped (``run_batch=K``) — vs the same K runs as K ``train`` calls, with
   and without compilation.
3. Compile time of one training program.

Usage: python benchmarks/train_throughput.py [--quick] [--models mlp,cnn1d] [--epochs N]
       [--task mnist1d | --random-images N --models wrn]   (the GPU run: WRN on CIFAR-sized data)
Ratios are what to quote; absolute times depend on the (shared, noisy) machine.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import optlab
from optlab.tasks import load_dataset, make_model, random_images
from optlab.train import classification_loss, train


def per_step_loop(data, model_name: str, lr: float, epochs: int, batch_size: int,
                  style: str) -> tuple[float, float]:
    """(seconds of the first epoch incl. compile, seconds per later epoch) of a per-step
    Python loop, with evaluation on val and test after every epoch like optlab.train."""
    model = make_model(model_name, data.input_shape, data.num_classes, rngs=nnx.Rngs(0))
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    evals = [(jnp.asarray(xe), jnp.asarray(ye)) for xe, ye in
             ((data.x_val, data.y_val), (data.x_test, data.y_test)) if len(ye)]
    steps = len(data.y_train) // batch_size
    tx = optlab.adam(lr)

    if style == "nnx":
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

        @nnx.jit
        def step(model, optimizer, xb, yb):
            model.train()
            (loss, _), grads = nnx.value_and_grad(classification_loss, has_aux=True)(
                model, xb, yb)
            optimizer.update(model, grads)
            return loss

        @nnx.jit
        def evaluate(model, xe, ye):
            model.eval()
            return classification_loss(model, xe, ye)

        def run_step(xb, yb):
            return step(model, optimizer, xb, yb)

        def run_eval(xe, ye):
            return evaluate(model, xe, ye)
    else:
        model.train()
        graph_train, params, rest = nnx.split(model, nnx.Param, ...)
        model.eval()
        graph_eval = nnx.split(model, nnx.Param, ...)[0]
        carry = {"params": params, "rest": rest, "opt": tx.init(params)}

        @functools.partial(jax.jit, donate_argnums=0)
        def fstep(carry, xb, yb):
            def loss_fn(p):
                m = nnx.merge(graph_train, p, carry["rest"], copy=True)
                loss, _ = classification_loss(m, xb, yb)
                return loss, nnx.split(m, nnx.Param, ...)[2]

            (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(carry["params"])
            updates, opt = tx.update(grads, carry["opt"], carry["params"])
            return {"params": optax.apply_updates(carry["params"], updates), "rest": rest,
                    "opt": opt}, loss

        @jax.jit
        def fevaluate(carry, xe, ye):
            return classification_loss(nnx.merge(graph_eval, carry["params"], carry["rest"]),
                                       xe, ye)

        state = {"carry": carry}

        def run_step(xb, yb):
            state["carry"], loss = fstep(state["carry"], xb, yb)
            return loss

        def run_eval(xe, ye):
            return fevaluate(state["carry"], xe, ye)

    times = []
    rng = np.random.default_rng(0)
    for _ in range(epochs):
        t0 = time.perf_counter()
        order = jnp.asarray(rng.permutation(len(data.y_train)))
        for i in range(steps):
            idx = order[i * batch_size:(i + 1) * batch_size]
            loss = run_step(x[idx], y[idx])
        for xe, ye in evals:
            jax.block_until_ready(run_eval(xe, ye))
        jax.block_until_ready(loss)
        times.append(time.perf_counter() - t0)
    return times[0], statistics.median(times[1:])


def scan_loop(data, model_name, lrs, epochs, batch_size, unroll=1, run_batch=1):
    return train(data, model_name, optlab.adam, hyperparams={"learning_rate": lrs},
                 epochs=epochs, batch_size=batch_size, progress=False, unroll=unroll,
                 run_batch=run_batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke run: tiny sizes")
    parser.add_argument("--models", default="mlp,cnn1d")
    parser.add_argument("--task", default="mnist1d")
    parser.add_argument("--random-images", type=int, default=0,
                        help="use N random CIFAR-sized images instead of --task")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--grid", type=int, default=8, help="K runs in the grid comparison")
    parser.add_argument("--sections", default="1,2",
                        help="comma-separated sections to run: 1 loop, 2 grid (default: 1,2)")
    args = parser.parse_args()
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    if not sections or not sections <= {"1", "2"}:
        parser.error(f"--sections: expected a comma-separated subset of 1,2, got "
                     f"{args.sections!r}")
    if args.quick:
        args.epochs, args.grid = 2, 2
        args.models = "mlp" if args.models == parser.get_default("models") else args.models
    if args.random_images:
        data = random_images(args.random_images, n_test=max(args.batch_size, 1000))
    else:
        data = load_dataset(args.task)
    steps = len(data.y_train) // args.batch_size
    device = f"{jax.device_count()} x {jax.devices()[0].device_kind}"
    print(f"# train_throughput: {data.summary()}, batch {args.batch_size}, "
          f"{steps} steps/epoch, {args.epochs} epochs, device {device}")
    lrs = list(np.geomspace(1e-4, 1e-2, args.grid))

    if "1" in sections:
        loop_section(data, args, lrs, steps)
    if "2" in sections:
        grid_section(data, args, lrs, steps)


def loop_section(data, args, lrs, steps) -> None:
    print("\n## 1. loop: steps/s after the first epoch (per-epoch eval included)")
    print("| model | optlab.train scan | per-step jax.jit split/merge | per-step nnx.jit "
          "nnx.Optimizer | scan / nnx.jit | scan / jax.jit | compile s (scan) | images/s (scan) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        _, f_epoch = per_step_loop(data, name, lrs[0], args.epochs, args.batch_size, "jax")
        _, n_epoch = per_step_loop(data, name, lrs[0], args.epochs, args.batch_size, "nnx")
        fs, ns = steps / f_epoch, steps / n_epoch
        # unroll=True only matters on CPU (conv gradients in XLA:CPU loops); see RESULTS.md
        unrolls = (1, True) if jax.default_backend() == "cpu" and not args.quick else (1,)
        for unroll in unrolls:
            r = scan_loop(data, name, lrs[:1], args.epochs, args.batch_size, unroll)
            scan = steps / statistics.median(r.epoch_seconds[1:] or r.epoch_seconds)
            label = name + (" (unroll=True)" if unroll is True else "")
            print(f"| {label} | {scan:.0f} | {fs:.0f} | {ns:.0f} | {scan / ns:.2f} | "
                  f"{scan / fs:.2f} | {r.compile_time:.2f} | {scan * args.batch_size:.0f} |",
                  flush=True)


def grid_section(data, args, lrs, steps) -> None:
    print(f"\n## 2. grid of K = {args.grid} learning rates: one program (runs mapped, or "
          "vmapped) vs K train calls")
    print("| model | grid | grid wall s | sequential wall s | speed-up (wall) | grid s/epoch | "
          "sequential s/epoch | speed-up (excl. compile) | final-loss difference |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        t0 = time.perf_counter()
        seq = [scan_loop(data, name, [lr], args.epochs, args.batch_size) for lr in lrs]
        seq_wall = time.perf_counter() - t0
        seq_epoch = sum(statistics.median(s.epoch_seconds[1:] or s.epoch_seconds)
                        for s in seq)
        seq_loss = np.array([s.history["train_loss"][0, -1] for s in seq])
        for label, run_batch in (("mapped", 1), ("vmapped", args.grid)):
            t0 = time.perf_counter()
            g = scan_loop(data, name, lrs, args.epochs, args.batch_size, run_batch=run_batch)
            grid_wall = time.perf_counter() - t0
            grid_epoch = statistics.median(g.epoch_seconds[1:] or g.epoch_seconds)
            # max relative difference of the final train loss, grid vs the runs one by one
            drift = np.max(np.abs(g.history["train_loss"][:, -1] - seq_loss) / seq_loss)
            print(f"| {name} | {label} | {grid_wall:.2f} | {seq_wall:.2f} | "
                  f"{seq_wall / grid_wall:.2f} | {grid_epoch:.3f} | {seq_epoch:.3f} | "
                  f"{seq_epoch / grid_epoch:.2f} | {drift:.1e} |", flush=True)


if __name__ == "__main__":
    main()
