"""A linear model, MiniML style: declare the parameters, fit, save, load.

The model of MiniML's documentation, ``y = X A + b`` with an L2 penalty on ``A``, on
synthetic data with 8 inputs and 3 outputs. It shows:

* fitting with the default optimizer (SciPy's L-BFGS-B) and checking the result
  against scikit-learn's ``Ridge(alpha)``, which minimizes the same objective
  ``sum((y - X A - b)^2) + alpha * ||A||^2`` when ``reg_lambda = alpha``;
* MiniML's "batch fitting" recipe: a few L-BFGS-B iterations per batch with a
  regularization strength that changes from batch to batch (the compiled objective is
  reused, so only the first batch compiles);
* saving the model to a ``.npz`` file and loading it back.

Saves ``linear_model.png``: fitted against true coefficients, and the loss of each
batch of the recipe.

Run::

    .venv/bin/python examples/linear_model.py [--quick] [--out DIR]
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from _example_cli import parse_args  # examples/_example_cli.py
from matplotlib.figure import Figure
from sklearn.linear_model import Ridge

from miniml import ConvergenceWarning, MiniMLModel, MiniMLParam
from miniml.loss import LNormRegularization
from miniml.optim import ScipyOptimizer


class LinearModel(MiniMLModel):
    def __init__(self, n_in: int, n_out: int) -> None:
        self.A = MiniMLParam((n_in, n_out), reg_loss=LNormRegularization(2))
        self.b = MiniMLParam((n_out,))  # the intercept is not penalized
        super().__init__()  # last: discovers the parameters above

    def _predict_kernel(self, X, buffer):
        return X @ self.A(buffer) + self.b(buffer)


def main(argv=None) -> dict:
    args = parse_args(argv, __doc__, quick_help="fewer samples and batches")
    started = time.perf_counter()
    n_samples, n_batches = (200, 4) if args.quick else (2000, 10)
    n_in, n_out, alpha = 8, 3, 1.0
    rng = np.random.default_rng(0)
    A_true, b_true = rng.normal(size=(n_in, n_out)), rng.normal(size=n_out)
    X = rng.normal(size=(n_samples, n_in))
    y = X @ A_true + b_true + 0.1 * rng.normal(size=(n_samples, n_out))

    model = LinearModel(n_in, n_out)
    model.randomize(seed=0)
    res = model.fit(X, y, reg_lambda=alpha)
    print(f"L-BFGS-B: converged {res.success}, loss {res.loss:.6f}, {res.n_iterations} iterations")
    ridge = Ridge(alpha=alpha).fit(X, y)
    coef_error = max(
        float(np.max(np.abs(model.A.value - ridge.coef_.T))),
        float(np.max(np.abs(model.b.value - ridge.intercept_))),
    )
    print(f"max |MiniML - sklearn Ridge(alpha={alpha})| over A and b: {coef_error:.1e}")
    print(f"max |A - A_true|: {np.max(np.abs(model.A.value - A_true)):.3f}")

    # MiniML's batch-fitting recipe: five iterations per batch, a decreasing penalty.
    recipe = LinearModel(n_in, n_out)
    recipe.randomize(seed=0)
    optimizer = ScipyOptimizer(method="L-BFGS-B", options={"maxiter": 5})
    batch_losses = []
    with warnings.catch_warnings():
        # Five iterations per batch do not converge, on purpose (MiniML's recipe).
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i, (X_batch, y_batch) in enumerate(
            zip(np.array_split(X, n_batches), np.array_split(y, n_batches), strict=True)
        ):
            batch_res = recipe.fit(
                X_batch, y_batch, reg_lambda=alpha / (i + 1), optimizer=optimizer
            )
            batch_losses.append(batch_res.loss)
            print(f"Batch {i + 1} | Loss = {batch_res.loss:.4f}")
    recipe_mse = float(np.mean((np.asarray(recipe.predict(X)) - y) ** 2))
    print(f"batch recipe: mean squared error on all data {recipe_mse:.4f}")

    path_npz = args.out / "linear_model.npz"
    model.save(path_npz)
    loaded = LinearModel.load(path_npz)
    roundtrip = float(np.max(np.abs(np.asarray(loaded.predict(X)) - np.asarray(model.predict(X)))))
    print(
        f"saved and loaded {path_npz}: parameters {loaded.param_names}, "
        f"max prediction difference {roundtrip:.1e}"
    )

    path = args.out / "linear_model.png"
    fig = Figure(figsize=(10, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.scatter(A_true.ravel(), np.asarray(model.A.value).ravel(), label="A")
    left.scatter(b_true, np.asarray(model.b.value), marker="s", label="b")
    left.axline((0, 0), slope=1, color="black", linestyle="--")
    left.set(
        xlabel="true coefficient",
        ylabel="fitted coefficient",
        title=f"L-BFGS-B, reg_lambda={alpha}",
    )
    left.legend()
    right.plot(np.arange(1, n_batches + 1), batch_losses, marker="o")
    right.set(
        xlabel="batch", ylabel="loss after 5 iterations", yscale="log", title="batch fitting recipe"
    )
    fig.savefig(path, dpi=100)
    print(f"saved {path}  ({time.perf_counter() - started:.1f} s)")
    return {
        "loss": res.loss,
        "success": res.success,
        "ridge_error": coef_error,
        "recipe_mse": recipe_mse,
        "roundtrip_error": roundtrip,
        "noise_variance": 0.01,
        "plots": [path],
    }


if __name__ == "__main__":
    main()
