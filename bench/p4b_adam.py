"""P4b of BENCHMARKS.md: mini-batch Adam on an MLP, MiniML's fit against a hand-written
optax `lax.scan` loop, side by side in one process.

Problem: MLP 64-100-10 (tanh) on `sklearn.datasets.load_digits` (all 1797 samples,
pixels / 16), softmax cross-entropy on integer labels (sum over the batch times N/B,
MiniML's mini-batch convention; no penalty), Adam lr 1e-3, batch 64 (28 steps per
epoch, the partial batch dropped), 50 epochs, float64, same initial parameters.

The optax reference compiles the whole 50-epoch training (a scan over epochs, each a
scan over batches with a fresh permutation) into one `jax.jit`. MiniML runs
``model.fit(X, y, optimizer=Adam(lr=1e-3), epochs=50, batch_size=64)``: compiled
chunks of up to 16 epochs per call (4 calls), one host report (history record) per
epoch, and the per-step protections against non-finite values. Both are warmed up
(compiled) first; then ``--repeats`` timed runs alternate between the two, with a
0.25 s pause before each, BLAS threads are pinned to 1 with threadpoolctl, and the
medians and their ratio are printed (with the median of the per-pair ratios and the
ratio of the minima, which a drifting machine load disturbs less).

Run: ``.venv/bin/python bench/p4b_adam.py [--repeats 25]``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits
from threadpoolctl import threadpool_info, threadpool_limits

import miniml
from miniml import MiniMLModel, MiniMLParam
from miniml.loss import CrossEntropyLogLoss
from miniml.optim import Adam

EPOCHS, BATCH, LR, HIDDEN = 50, 64, 1e-3, 100


class MLP(MiniMLModel):
    """64-100-10 tanh network returning logits."""

    def __init__(self) -> None:
        self.W1 = MiniMLParam((64, HIDDEN), rnd_scale=1 / 8)
        self.b1 = MiniMLParam((HIDDEN,), rnd_scale=0.0)
        self.W2 = MiniMLParam((HIDDEN, 10), rnd_scale=1 / 10)
        self.b2 = MiniMLParam((10,), rnd_scale=0.0)
        super().__init__(loss=CrossEntropyLogLoss(expect_labels=True))

    def _predict_kernel(self, X, buffer):
        hidden = jnp.tanh(X @ self.W1(buffer) + self.b1(buffer))
        return hidden @ self.W2(buffer) + self.b2(buffer)


def optax_training(n_samples: int):
    """The hand-written reference: all epochs in one jitted program."""
    n_batches = n_samples // BATCH
    tx = optax.adam(LR)
    scale = n_samples / BATCH

    def loss_fn(params, X, y):
        W1, b1, W2, b2 = params
        logits = jnp.tanh(X @ W1 + b1) @ W2 + b2
        log_p = jax.nn.log_softmax(logits, axis=-1)
        return -scale * jnp.take_along_axis(log_p, y[:, None], axis=-1).sum()

    grad_fn = jax.value_and_grad(loss_fn)

    @jax.jit
    def train(params, X, y, key):
        def epoch(carry, epoch_key):
            params, state = carry
            order = jax.random.permutation(epoch_key, n_samples)[: n_batches * BATCH]
            rows = order.reshape(n_batches, BATCH)

            def step(carry, batch_rows):
                params, state = carry
                loss, grads = grad_fn(params, X[batch_rows], y[batch_rows])
                updates, state = tx.update(grads, state, params)
                return (optax.apply_updates(params, updates), state), loss

            (params, state), losses = jax.lax.scan(step, (params, state), rows)
            return (params, state), losses.mean()

        keys = jax.random.split(key, EPOCHS)
        (params, _), epoch_losses = jax.lax.scan(epoch, (params, tx.init(params)), keys)
        return params, epoch_losses

    return train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=25)
    args = parser.parse_args()

    digits = load_digits()
    X = np.asarray(digits.data / 16.0, np.float64)
    y = np.asarray(digits.target, np.int64)
    model = MLP()
    model.randomize(seed=0)
    start = model.get_buffer()
    params0 = tuple(jnp.asarray(model.get_params()[n]) for n in ("W1", "b1", "W2", "b2"))
    X_dev, y_dev = jnp.asarray(X), jnp.asarray(y)
    train = optax_training(len(X))
    key = jax.random.key(0)

    def run_optax() -> float:
        params, losses = train(params0, X_dev, y_dev, key)
        jax.block_until_ready(params)
        return float(losses[-1])

    def run_miniml() -> float:
        model.set_buffer(start)
        result = model.fit(X, y, reg_lambda=0.0, optimizer=Adam(lr=LR), epochs=EPOCHS,
                           batch_size=BATCH, seed=0, verbose=0)  # fmt: skip
        return float(result.history[-1]["loss"])

    times: dict[str, list[float]] = {"miniml": [], "optax": []}
    runners = {"miniml": run_miniml, "optax": run_optax}
    with threadpool_limits(limits=1):
        last = {name: run() for name, run in runners.items()}  # warm-up: compiles both
        for repeat in range(args.repeats):
            order = ("miniml", "optax") if repeat % 2 == 0 else ("optax", "miniml")
            for name in order:
                time.sleep(0.25)  # as in bench.timing: idle threads of the previous run settle
                began = time.perf_counter()
                last[name] = runners[name]()
                times[name].append(time.perf_counter() - began)
        blas = [(i["internal_api"], i["num_threads"]) for i in threadpool_info()]

    accuracy = float(np.mean(np.argmax(np.asarray(model.predict(X)), axis=1) == y))
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"P4b mini-batch Adam, {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"jax {jax.__version__}, optax {optax.__version__}, miniml {miniml.__version__}, "
          f"BLAS threads while timing {blas}")  # fmt: skip
    for name in ("optax", "miniml"):
        spread = f"[{min(times[name]):.4f}, {max(times[name]):.4f}]"
        print(f"  {name:7s} median {medians[name]:.4f} s  min/max {spread}  "
              f"last epoch mean loss {last[name]:.2f}")  # fmt: skip
    print(f"  MiniML train accuracy after {EPOCHS} epochs: {accuracy:.4f}")
    # On a shared machine the load drifts: the ratio of each back-to-back pair and the
    # ratio of the fastest runs are less sensitive to it than the ratio of medians.
    pairs = zip(times["miniml"], times["optax"], strict=True)
    paired = statistics.median(mini / ref for mini, ref in pairs)
    fastest = min(times["miniml"]) / min(times["optax"])
    print(f"ratio MiniML / optax lax.scan: {medians['miniml'] / medians['optax']:.3f} "
          f"(medians; target <= 1.1); median of paired ratios {paired:.3f}; "
          f"ratio of minima {fastest:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
