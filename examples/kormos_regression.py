"""Kormos' linear-regression examples, with MiniML.

Kormos (a Keras front end to ``scipy.optimize.minimize``) fits a 50-weight linear model
without bias to 1000 noiseless samples, minimizing the mean squared error plus
``1e-3 * ||w||^2`` from ``w = 1``. This script runs its four fits:

1. L-BFGS-B (``maxcor=3``) and its history table (``res.history.to_pandas()``: loss,
   gradient norm, evaluation counts, validation loss and mean absolute error);
2. Newton-CG, which gets exact Hessian-vector products and drives the gradient norm
   much lower in as many iterations;
3. Adam alone, mini-batches of 32 (Keras' default), from a random start;
4. a staged fit: a few Adam epochs, then L-BFGS-B from where Adam stopped
   (``optimizer=[Adam(...), ScipyOptimizer("L-BFGS-B")]``, one history with a
   ``stage`` column).

The exact optimum is ridge regression's closed form, printed for comparison. Saves
``kormos_regression.png`` (objective minus optimum per iteration, every fit) and
``kormos_staged_history.png`` (``History.plot`` of the staged fit).

Run::

    .venv/bin/python examples/kormos_regression.py [--quick] [--out DIR]
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from _example_cli import parse_args  # examples/_example_cli.py
from matplotlib.figure import Figure

from miniml import MiniMLModel, MiniMLParam
from miniml.loss import LNormRegularization, mean_squared_error_loss
from miniml.optim import Adam, ScipyOptimizer

RANK, REG_LAMBDA = 50, 1e-3


class Regression(MiniMLModel):
    """Keras' ``Dense(1, use_bias=False, kernel_regularizer=L2(1e-3))`` with MSE."""

    def __init__(self, rank: int) -> None:
        self.kernel = MiniMLParam((rank, 1), reg_loss=LNormRegularization(2))
        super().__init__(loss=mean_squared_error_loss)

    def _predict_kernel(self, X, buffer):
        return X @ self.kernel(buffer)


def make_data():
    """Kormos' data: ``np.random.seed(1)``, true weights, training and validation sets."""
    np.random.seed(1)
    w = np.random.normal(size=RANK)
    X = np.random.normal(size=(1000, RANK))
    y = np.expand_dims(X.dot(w), axis=1)
    X_val = np.random.normal(size=(1000, RANK))
    y_val = np.expand_dims(X_val.dot(w), axis=1)
    return w, X, y, X_val, y_val


def ridge_optimum(X, y) -> float:
    """The minimum of ``mean((X w - y)^2) + lambda ||w||^2``, from the normal equations."""
    n = len(X)
    w = np.linalg.solve(X.T @ X / n + REG_LAMBDA * np.eye(X.shape[1]), X.T @ y / n)
    return float(np.mean((X @ w - y) ** 2) + REG_LAMBDA * np.sum(w**2))


def show(title: str, res) -> None:
    print(f"\n{title}: {res.message}")
    table = res.history.to_pandas().drop(columns=["time"]).dropna(axis=1, how="all")
    with pd.option_context("display.width", 140, "display.max_columns", None):
        print(table)


def main(argv=None) -> dict:
    args = parse_args(argv, __doc__, quick_help="fewer Adam epochs")
    started = time.perf_counter()
    adam_epochs, warmup_epochs = (10, 5) if args.quick else (150, 20)
    w, X, y, X_val, y_val = make_data()
    optimum = ridge_optimum(X, y)
    print(f"optimum of the objective (ridge normal equations): {optimum:.10f}")
    fit_args = {
        "reg_lambda": REG_LAMBDA,
        "validation_data": (X_val, y_val),
        "metrics": ["mean_absolute_error"],
    }
    model = Regression(RANK)
    model.bind()
    figures = {"optimum": optimum}
    histories = {}

    # 1. L-BFGS-B from w = 1 (Keras' kernel_initializer="ones"), Kormos' maxcor=3.
    model.set_buffer(np.ones(RANK))
    res = model.fit(X, y, optimizer=ScipyOptimizer("L-BFGS-B", {"maxcor": 3}), **fit_args)
    show("L-BFGS-B", res)
    weights = np.asarray(model.kernel.value).ravel()
    figures["lbfgs_loss"], figures["lbfgs_grad"] = res.loss, res.history.column("grad")[-1]
    figures["lbfgs_weight_error"] = float(np.max(np.abs(weights - w)))
    print(f"max |w_fit - w_true| = {figures['lbfgs_weight_error']:.2e} (Kormos asserts 1e-2)")
    histories["L-BFGS-B"] = res.history

    # 2. Newton-CG: the same model and start; MiniML passes exact Hessian-vector products.
    model.set_buffer(np.ones(RANK))
    res = model.fit(X, y, optimizer=ScipyOptimizer("Newton-CG"), **fit_args)
    show("Newton-CG", res)
    figures["newton_loss"], figures["newton_grad"] = res.loss, res.history.column("grad")[-1]
    figures["newton_hessp_evals"] = res.history.column("hessp_evals")[-1]
    print(
        f"final gradient norm: Newton-CG {figures['newton_grad']:.1e}, "
        f"L-BFGS-B {figures['lbfgs_grad']:.1e}"
    )
    histories["Newton-CG"] = res.history

    # 3. Adam alone from a random start (Kormos resets the weights with np.random.random).
    start = np.random.default_rng(0).random(RANK)
    model.set_buffer(start)
    res = model.fit(X, y, optimizer=Adam(lr=1e-2), epochs=adam_epochs, batch_size=32, **fit_args)
    show(f"Adam (lr=1e-2, batch 32), {adam_epochs} epochs", res)
    figures["adam_loss"] = res.loss
    histories["Adam"] = res.history

    # 4. Staged: Adam for a few epochs (mini-batches of 32), then L-BFGS-B on the full
    # data from where Adam stopped.
    model.set_buffer(start)
    res = model.fit(
        X,
        y,
        optimizer=[Adam(lr=1e-2), ScipyOptimizer("L-BFGS-B")],
        epochs=warmup_epochs,
        batch_size=32,
        **fit_args,
    )
    show(f"Adam ({warmup_epochs} epochs) then L-BFGS-B", res)
    figures["staged_loss"], figures["staged_stages"] = res.loss, res.stages
    histories["Adam → L-BFGS-B"] = res.history

    paths = [args.out / "kormos_regression.png", args.out / "kormos_staged_history.png"]
    plot(histories, optimum, paths[0])
    res.history.plot(paths[1])
    figures["plots"] = paths
    print(f"\nsaved {', '.join(map(str, paths))}  ({time.perf_counter() - started:.1f} s)")
    return figures


def plot(histories: dict, optimum: float, path: Path) -> None:
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    for label, history in histories.items():
        excess = np.maximum(np.asarray(history.column("loss")) - optimum, 1e-16)
        ax.plot(np.arange(1, len(excess) + 1), excess, label=label, marker=".")
    ax.set(
        yscale="log",
        xscale="log",
        xlabel="iteration / epoch",
        ylabel="objective - optimum",
        title="Kormos' regression: every optimizer",
    )
    ax.legend()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
