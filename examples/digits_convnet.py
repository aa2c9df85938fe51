"""A small convnet on scikit-learn's 8x8 digits: Adam, then L-BFGS-B.

Kormos' MNIST example trains a convnet with a stochastic optimizer and then continues
with a deterministic one. This script does the same on ``load_digits`` (1797 images,
8x8 pixels, 10 classes) with `miniml.nn` layers, channels last::

    Conv 3x3, 8 channels, "same" -> relu -> MaxPool 2x2 -> Flatten -> Linear(128, 10)

(4 channels with ``--quick``)

trained on softmax cross-entropy of the logits (`CrossEntropyLogLoss` with integer
labels) in one staged fit: a few Adam epochs on mini-batches, then L-BFGS-B on the full
training set from where Adam stopped. The test accuracy of every epoch/iteration is in
the history (``metrics=["accuracy"]`` on ``validation_data``). Saves
``digits_convnet.png``: the loss and test accuracy per iteration, and the confusion
matrix on the test set.

Run::

    .venv/bin/python examples/digits_convnet.py [--quick] [--out DIR]
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
from miniml.nn import Activation, Conv, Flatten, Linear, MaxPool, Stack, relu
from miniml.optim import Adam, ScipyOptimizer


def convnet(channels: int = 8) -> Stack:
    return Stack(
        [
            Conv(2, 1, channels, 3, padding="same", loss=None),  # (N, 8, 8, channels)
            Activation(relu),
            MaxPool(2, 2),  # (N, 4, 4, channels)
            Flatten(),  # (N, 16 * channels)
            Linear(16 * channels, 10, loss=None),  # logits
        ],
        loss=CrossEntropyLogLoss(expect_labels=True),
    )


def main(argv=None) -> dict:
    args = parse_args(argv, __doc__, quick_help="fewer epochs and iterations")
    started = time.perf_counter()
    # --quick: a narrower network (4 channels), fewer epochs and iterations.
    channels, adam_epochs, lbfgs_iterations = (4, 2, 25) if args.quick else (8, 20, 200)
    digits = load_digits()
    X = (digits.images / 16.0)[..., None]  # (N, 8, 8, 1): channels last, values in [0, 1]
    X_train, X_test, y_train, y_test = train_test_split(
        X, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    net = convnet(channels)
    net.randomize(seed=0)
    print(f"{len(X_train)} training and {len(X_test)} test images; {net.size} parameters")
    optimizer = [Adam(lr=2e-2), ScipyOptimizer("L-BFGS-B", {"maxiter": lbfgs_iterations})]
    with warnings.catch_warnings():
        # A fixed iteration budget: L-BFGS-B may stop at maxiter before its tolerance.
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = net.fit(
            X_train,
            y_train,
            reg_lambda=1e-2,
            optimizer=optimizer,
            epochs=adam_epochs,
            batch_size=128,
            validation_data=(X_test, y_test),
            metrics=["accuracy"],
        )
    history = res.history.to_pandas()
    adam_rows, lbfgs_rows = history[history.stage == "Adam"], history[history.stage != "Adam"]
    after_adam = float(adam_rows.val_accuracy.iloc[-1])
    predicted = np.argmax(np.asarray(net.predict(X_test)), axis=-1)
    accuracy = float(np.mean(predicted == y_test))
    print(f"test accuracy after {adam_epochs} Adam epochs: {after_adam:.4f}")
    print(
        f"test accuracy after {len(lbfgs_rows)} more L-BFGS-B iterations "
        f"(objective {res.loss:.3f}): {accuracy:.4f}"
    )

    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (y_test, predicted), 1)
    path = args.out / "digits_convnet.png"
    fig = Figure(figsize=(11, 4), layout="constrained")
    left, middle, right = fig.subplots(1, 3)
    res.history.plot(ax=left)
    left.set_title("objective (train) and val_loss (test)")
    middle.plot(np.arange(1, len(history) + 1), history.val_accuracy, marker=".")
    middle.set(xlabel="epoch / iteration", ylabel="test accuracy", title=" → ".join(res.stages))
    right.imshow(confusion, cmap="Blues")
    right.set(
        xlabel="predicted",
        ylabel="true",
        title=f"test accuracy {accuracy:.3f}",
        xticks=range(10),
        yticks=range(10),
    )
    fig.savefig(path, dpi=100)
    print(f"saved {path}  ({time.perf_counter() - started:.1f} s)")
    return {
        "accuracy_after_adam": after_adam,
        "accuracy": accuracy,
        "adam_loss": float(adam_rows.loss.iloc[-1]),
        "loss": res.loss,
        "plots": [path],
    }


if __name__ == "__main__":
    main()
