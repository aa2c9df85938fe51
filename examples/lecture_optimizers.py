"""The optax/torch optimizer lecture, redone with MiniML.

Least squares on ``make_regression`` data (10 000 samples, 20 features, 4 of them
informative, a column of ones prepended): the exact optimum from ``numpy.linalg.lstsq``,
then full-batch gradient descent, mini-batch SGD and Adam with several batch sizes and
learning rates, Adam with an exponentially decaying learning rate, and finally L-BFGS-B,
which reaches the optimum in a handful of iterations. The loss is the lecture's sum of
squared errors, ``sum((y - X @ beta)**2)``, MiniML's default ``squared_error_loss``.

One difference in convention: the lecture differentiates the *sum over the batch*, so
its gradients shrink with the batch size. MiniML scales a sum loss by ``N / B`` so that
a batch gradient estimates the full-data gradient and a learning rate means the same
for every batch size. The lecture's learning rate ``eta`` at batch size ``B`` is MiniML's
``lr = eta * B / N``; both runs take the same steps (only the shuffling differs). Adam
is invariant to that scale, so its learning rates carry over unchanged.

Saves ``lecture_optimizers.png``: the loss after every epoch (the exact full-data
objective, measured by passing the training data as ``validation_data``) against the
least-squares optimum.

Run::

    .venv/bin/python examples/lecture_optimizers.py [--quick] [--out DIR]
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from _example_cli import parse_args  # examples/_example_cli.py
from matplotlib.figure import Figure
from sklearn.datasets import make_regression

from miniml import MiniMLModel, MiniMLParam
from miniml.optim import SGD, Adam, ScipyOptimizer, exponential_decay, linear_schedule

# The lecture's published figures (lm_loss, and the losses its runs printed).
LECTURE = {"lm_loss": 10105.859508383426, "gd_loss": 10244.7649, "torch_gd_loss": 10195.1335}


class LinearRegression(MiniMLModel):
    """``y_hat = X @ beta``; the loss is the default sum of squared errors."""

    def __init__(self, n_features: int) -> None:
        self.beta = MiniMLParam((n_features,))
        super().__init__()

    def _predict_kernel(self, X, buffer):
        return X @ self.beta(buffer)


def make_data() -> tuple[np.ndarray, np.ndarray]:
    """The lecture's data set, with a column of ones for the intercept."""
    X, y = make_regression(
        n_samples=10000, n_features=20, n_informative=4, bias=3, noise=1, random_state=1234
    )
    return np.c_[np.ones(len(y)), X], y


def lstsq_loss(X: np.ndarray, y: np.ndarray) -> float:
    """The exact optimum, as the lecture's ``LinearRegression(fit_intercept=False)``."""
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    return float(np.sum((y - X @ beta) ** 2))


def fit_from_zero(model, X, y, optimizer, epochs=None, batch_size=None):
    """Fit from ``beta = 0`` as the lecture does; return the final loss and the curve.

    The curve holds the exact objective at the start and after every epoch.
    """
    model.set_buffer(np.zeros(model.size))
    start = float(np.sum(y**2))
    res = model.fit(
        X,
        y,
        reg_lambda=0.0,
        optimizer=optimizer,
        epochs=epochs,
        batch_size=batch_size,
        validation_data=(X, y),
    )
    curve = [start, *res.history.column("val_loss")]
    return res, curve


def main(argv=None) -> dict:
    args = parse_args(argv, __doc__, quick_help="fewer runs (a few seconds)")
    started = time.perf_counter()
    # --quick keeps every section but runs fewer batch sizes (each new batch size
    # compiles a new training epoch); its SGD runs are full-batch only.
    sgd_batches = [10000] if args.quick else [10, 100, 1000, 10000]
    adam_batches = [50] if args.quick else [10, 25, 50, 100]

    X, y = make_data()
    n, k = X.shape
    lm_loss = lstsq_loss(X, y)
    print(f"least-squares optimum (numpy lstsq): {lm_loss:.6f}  (lecture: {LECTURE['lm_loss']})")
    model = LinearRegression(k)
    model.bind()
    figures = {"lm_loss": lm_loss}
    curves = {}

    # -- Full-batch gradient descent: optax.sgd(1e-5) on all 10 000 samples, 30 steps.
    res, curve = fit_from_zero(model, X, y, SGD(lr=1e-5), epochs=30)
    # The history's loss of an epoch is measured before its step (like the lecture's
    # gd_loss list); res.loss is the objective after the last step (the torch loop's).
    figures["gd_loss_before_last_step"] = res.history.column("loss")[-1]
    figures["gd_loss"] = res.loss
    curves["GD (lr=1e-5)"] = curve
    print(
        f"full-batch GD, lr=1e-5, 30 steps: loss before the last step "
        f"{figures['gd_loss_before_last_step']:.4f} (lecture {LECTURE['gd_loss']}), "
        f"after it {res.loss:.4f} (lecture {LECTURE['torch_gd_loss']})"
    )

    # -- SGD, 30 epochs: the lecture's fixed small rate, then rates adjusted per batch.
    for title, rates in (
        ("fixed LR (small)", dict.fromkeys(sgd_batches, 1e-5)),
        ("adjusted LR", {10: 0.005, 100: 0.001, 1000: 0.0001, 10000: 0.00001}),
    ):
        print(f"SGD, {title}, 30 epochs:")
        for batch in sgd_batches:
            lr = rates[batch] * batch / n  # the lecture's rate in MiniML's convention
            res, curve = fit_from_zero(model, X, y, SGD(lr=lr), epochs=30, batch_size=batch)
            key = f"sgd_{'fixed' if title.startswith('fixed') else 'adjusted'}_mb{batch}"
            figures[key] = res.loss
            if title == "adjusted LR" and batch < n:  # batch == n is the GD run above
                curves[f"SGD mb={batch}"] = curve
            print(
                f"  mb={batch:>5}: lecture lr {rates[batch]:g} = MiniML lr {lr:g}: "
                f"loss {res.loss:.4f}"
            )

    # -- Adam: lr=1 for 2 epochs, then lr=0.1 for 10 (the same compiled epochs: a
    # float learning rate is a traced value, so changing it compiles nothing).
    for lr, epochs in ((1.0, 2), (0.1, 10)):
        print(f"Adam, lr={lr}, {epochs} epochs:")
        for batch in adam_batches:
            optimizer = Adam(lr=lr, beta1=0.9, beta2=0.999, eps=1e-8)
            res, curve = fit_from_zero(model, X, y, optimizer, epochs=epochs, batch_size=batch)
            figures[f"adam_lr{lr:g}_mb{batch}"] = res.loss
            if lr == 0.1:
                curves[f"Adam lr=0.1 mb={batch}"] = curve
            print(f"  mb={batch:>3}: loss {res.loss:.4f}")

    # -- Learning-rate schedules (evaluated per mini-batch step, as in optax).
    schedule = linear_schedule(init_value=1.0, end_value=0.0, transition_steps=5)
    print("linear_schedule(1, 0, 5):", [round(float(schedule(step)), 6) for step in range(6)])
    decay = exponential_decay(init_value=1.0, transition_steps=100, decay_rate=0.9)
    print("Adam, exponential_decay(1, 100, 0.9), 2 epochs:")
    for batch in adam_batches:
        res, curve = fit_from_zero(model, X, y, Adam(lr=decay), epochs=2, batch_size=batch)
        figures[f"adam_decay_mb{batch}"] = res.loss
        curves[f"Adam decay mb={batch}"] = curve
        print(f"  mb={batch:>3}: loss {res.loss:.4f}")

    # -- What MiniML is for: a full-batch quasi-Newton method reaches the optimum.
    res, _ = fit_from_zero(model, X, y, ScipyOptimizer("L-BFGS-B"))
    figures["lbfgs_loss"], figures["lbfgs_iterations"] = res.loss, res.n_iterations
    print(f"L-BFGS-B: loss {res.loss:.6f} in {res.n_iterations} iterations")

    path = args.out / "lecture_optimizers.png"
    plot(curves, lm_loss, path)
    figures["plots"] = [path]
    print(f"saved {path}  ({time.perf_counter() - started:.1f} s)")
    return figures


def plot(curves: dict[str, list[float]], lm_loss: float, path: Path) -> None:
    """Loss (top) and relative excess over the optimum (bottom) per epoch."""
    fig = Figure(figsize=(11, 7), layout="constrained")
    axes = fig.subplots(2, 2, sharex="col")
    for column, prefix in enumerate((("GD", "SGD"), ("Adam",))):
        for label, curve in curves.items():
            if label.startswith(prefix):
                epochs = np.arange(len(curve))
                axes[0, column].plot(epochs, curve, label=label, marker=".")
                excess = np.maximum((np.asarray(curve) - lm_loss) / lm_loss, 1e-12)
                axes[1, column].plot(epochs, excess, label=label, marker=".")
        axes[0, column].axhline(lm_loss, color="black", linestyle="--", label="lstsq optimum")
        axes[0, column].set(yscale="log", ylabel="sum of squared errors")
        axes[1, column].set(yscale="log", xlabel="epoch", ylabel="(loss - optimum) / optimum")
        axes[0, column].legend(fontsize="small")
    axes[0, 0].set_title("gradient descent and SGD (adjusted learning rates)")
    axes[0, 1].set_title("Adam: lr=0.1 and exponential decay")
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
