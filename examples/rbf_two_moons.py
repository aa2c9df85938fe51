"""A radial basis function network on scikit-learn's two moons.

`miniml.nn.RBFLayer` computes ``H W`` with ``H_j = phi(||s_j * (x - c_j)||)``: Gaussian
bumps around learned centers ``c_j`` with learned per-axis scales ``s_j``, combined by
learned weights ``W``. Here it outputs one logit per point and is fitted with
`BinaryCrossEntropyLogLoss` (the layer takes the loss directly) by L-BFGS-B, with the
centers started at random training points (the classic RBF-network recipe).

`RBFLayer` declares no penalty on its parameters (``reg_lambda`` would change nothing),
and on nearly separable data the logistic loss keeps decreasing as the weights grow, so
the fit is regularized by early stopping instead: `EarlyStopping` watches the loss on a
separate validation sample and ends the fit with the best parameters it saw.

Prints the test accuracy of the RBF network next to a linear logistic regression
(scikit-learn), which cannot follow the moons. Saves ``rbf_two_moons.png``: the decision
regions, the test points and the centers before and after the fit.

Run::

    .venv/bin/python examples/rbf_two_moons.py [--quick] [--out DIR]
"""

from __future__ import annotations

import time

import numpy as np
from _example_cli import parse_args  # examples/_example_cli.py
from matplotlib.figure import Figure
from sklearn.datasets import make_moons
from sklearn.linear_model import LogisticRegression

from miniml.callbacks import EarlyStopping
from miniml.loss import BinaryCrossEntropyLogLoss
from miniml.nn import RBFLayer, gaussian_rbf


def main(argv=None) -> dict:
    args = parse_args(argv, __doc__, quick_help="fewer samples")
    started = time.perf_counter()
    n = 300 if args.quick else 2000
    X_train, y_train = make_moons(n_samples=n, noise=0.2, random_state=0)
    X_val, y_val = make_moons(n_samples=n, noise=0.2, random_state=2)
    X_test, y_test = make_moons(n_samples=2000, noise=0.2, random_state=1)

    n_centers = 12
    net = RBFLayer(
        2, 1, n_centers, rbf=gaussian_rbf, projection="scaling", loss=BinaryCrossEntropyLogLoss()
    )
    net.randomize(seed=0)
    start = np.random.default_rng(0).choice(len(X_train), n_centers, replace=False)
    net.set_params({"centers": X_train[start]})
    initial_centers = np.asarray(net.params["centers"].value).copy()
    res = net.fit(
        X_train,
        y_train[:, None],
        reg_lambda=0.0,
        validation_data=(X_val, y_val[:, None]),
        metrics=["accuracy"],
        callbacks=[EarlyStopping(monitor="val_loss", patience=10)],
    )
    accuracy = float(np.mean((np.asarray(net.predict(X_test))[:, 0] > 0) == y_test))
    linear = LogisticRegression().fit(X_train, y_train)
    linear_accuracy = float(linear.score(X_test, y_test))
    print(
        f"RBF network ({n_centers} Gaussian centers, {net.size} parameters): "
        f"L-BFGS-B ran {res.n_iterations} iterations"
    )
    print(f"  {res.stop_reason}")
    print(
        f"test accuracy: RBF network {accuracy:.4f}, linear logistic regression "
        f"{linear_accuracy:.4f}"
    )

    path = args.out / "rbf_two_moons.png"
    G1, G2 = np.meshgrid(np.linspace(-2, 3, 200), np.linspace(-1.5, 2, 150))
    logits = np.asarray(net.predict(np.c_[G1.ravel(), G2.ravel()])).reshape(G1.shape)
    centers = np.asarray(net.params["centers"].value)
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    ax.contourf(G1, G2, 1 / (1 + np.exp(-logits)), levels=20, cmap="RdBu_r", alpha=0.6)
    ax.contour(G1, G2, logits, levels=[0.0], colors="black")
    ax.scatter(X_test[:, 0], X_test[:, 1], c=y_test, cmap="RdBu_r", s=8, edgecolors="none")
    ax.scatter(*initial_centers.T, marker="x", color="grey", label="centers at start")
    ax.scatter(
        *centers.T, marker="*", s=150, color="gold", edgecolors="black", label="fitted centers"
    )
    for before, after in zip(initial_centers, centers, strict=True):
        ax.annotate("", after, before, arrowprops={"arrowstyle": "->", "color": "grey"})
    ax.set(
        title=f"RBF network on two moons: test accuracy {accuracy:.3f}",
        aspect="equal",
        xlim=(-2, 3),
        ylim=(-1.5, 2),
    )
    ax.legend(loc="lower left")
    fig.savefig(path, dpi=100)
    print(f"saved {path}  ({time.perf_counter() - started:.1f} s)")
    return {
        "accuracy": accuracy,
        "linear_accuracy": linear_accuracy,
        "n_iterations": res.n_iterations,
        "stopped_early": res.stop_reason is not None,
        "plots": [path],
    }


if __name__ == "__main__":
    main()
