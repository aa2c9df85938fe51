"""A residual MLP on scikit-learn's digits, composed from `miniml.nn` blocks.

A residual block computes ``x + g(x)``; in `miniml.nn` that is a `Parallel` of the
branch ``g`` and an `Identity`, summed::

    block = Parallel([Stack([Linear(d, d), Activation(relu), Linear(d, d)]), Identity()],
                     mode="sum")

The network maps the 64 pixels to a width of 32, applies two residual blocks (each
followed by a relu) and a linear layer to 10 logits, and is fitted with softmax
cross-entropy (`CrossEntropyLogLoss` with integer labels) plus an L2 penalty on the
weights by L-BFGS-B, MiniML's default optimizer. Prints the test accuracy and the
parameter names (dotted paths through the composition). Saves
``residual_mlp_digits.png``: the loss and test accuracy per iteration, and some
misclassified test digits.

Run::

    .venv/bin/python examples/residual_mlp_digits.py [--quick] [--out DIR]
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from _example_cli import parse_args  # examples/_example_cli.py
from matplotlib.figure import Figure
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from miniml import ConvergenceWarning
from miniml.loss import CrossEntropyLogLoss
from miniml.nn import Activation, Identity, Linear, Parallel, Stack, relu
from miniml.optim import ScipyOptimizer


def residual_block(width: int) -> Parallel:
    """``x + W2 relu(W1 x + b1) + b2``."""
    branch = Stack(
        [Linear(width, width, loss=None), Activation(relu), Linear(width, width, loss=None)]
    )
    return Parallel([branch, Identity()], mode="sum")


def residual_mlp(n_in: int, width: int, n_blocks: int, n_classes: int) -> Stack:
    layers = [Linear(n_in, width, loss=None), Activation(relu)]
    for _ in range(n_blocks):
        layers += [residual_block(width), Activation(relu)]
    layers.append(Linear(width, n_classes, loss=None))
    return Stack(layers, loss=CrossEntropyLogLoss(expect_labels=True))


def main(argv=None) -> dict:
    args = parse_args(argv, __doc__, quick_help="fewer L-BFGS-B iterations")
    started = time.perf_counter()
    maxiter = 40 if args.quick else 500
    digits = load_digits()
    X = digits.data / 16.0  # (N, 64), values in [0, 1]
    X_train, X_test, y_train, y_test = train_test_split(
        X, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    net = residual_mlp(64, 32, n_blocks=2, n_classes=10)
    net.randomize(seed=0)
    print(f"{net.size} parameters: {', '.join(net.param_names)}")
    with warnings.catch_warnings():
        # A fixed iteration budget: L-BFGS-B may stop at maxiter before its tolerance.
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = net.fit(
            X_train,
            y_train,
            reg_lambda=1e-2,
            optimizer=ScipyOptimizer("L-BFGS-B", {"maxiter": maxiter}),
            validation_data=(X_test, y_test),
            metrics=["accuracy"],
        )
    predicted = np.argmax(np.asarray(net.predict(X_test)), axis=-1)
    accuracy = float(np.mean(predicted == y_test))
    train_accuracy = float(np.mean(np.argmax(np.asarray(net.predict(X_train)), -1) == y_train))
    print(f"L-BFGS-B: {res.n_iterations} iterations, objective {res.loss:.3f}")
    print(f"accuracy: training {train_accuracy:.4f}, test {accuracy:.4f}")

    path = args.out / "residual_mlp_digits.png"
    fig = Figure(figsize=(12, 4), layout="constrained")
    left, middle, right = fig.subfigures(1, 3)
    ax = left.subplots()
    res.history.plot(ax=ax)
    ax.set_title("objective (train) and val_loss (test)")
    ax = middle.subplots()
    ax.plot(np.arange(1, len(res.history) + 1), res.history.column("val_accuracy"))
    ax.set(
        xlabel="iteration",
        ylabel="test accuracy",
        ylim=(0, 1),
        title=f"test accuracy {accuracy:.3f}",
    )
    wrong = np.flatnonzero(predicted != y_test)[:8]
    right.suptitle("misclassified test digits (true → predicted)")
    for ax, index in zip(right.subplots(2, 4).ravel(), wrong, strict=False):
        ax.imshow(X_test[index].reshape(8, 8), cmap="gray_r")
        ax.set_title(f"{y_test[index]} → {predicted[index]}")
        ax.set_axis_off()
    fig.savefig(path, dpi=100)
    print(f"saved {path}  ({time.perf_counter() - started:.1f} s)")
    return {
        "accuracy": accuracy,
        "train_accuracy": train_accuracy,
        "loss": res.loss,
        "param_names": net.param_names,
        "plots": [path],
    }


if __name__ == "__main__":
    main()
