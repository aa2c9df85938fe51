"""Logistic regression with hand-made features, checked against scikit-learn.

Two classes in the plane separated by an ellipse: a linear boundary cannot separate
them, but logistic regression on quadratic features ``(x1, x2, x1^2, x2^2, x1 x2)``,
built inside the model's forward pass, can. The model returns logits and is fitted
with `BinaryCrossEntropyLogLoss` plus an L2 penalty on the weights (not the bias).

scikit-learn's ``LogisticRegression(C)`` minimizes ``C * sum(loss) + ||w||^2 / 2``;
dividing by ``C`` gives MiniML's objective with ``reg_lambda = 1 / (2 C)``, so both
must find the same coefficients. The script prints the largest difference, and the
test accuracy of the linear and the quadratic model. Saves ``logistic_features.png``:
both decision boundaries over the test points.

Run::

    .venv/bin/python examples/logistic_features.py [--quick] [--out DIR]
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from _example_cli import parse_args  # examples/_example_cli.py
from matplotlib.figure import Figure
from sklearn.linear_model import LogisticRegression

from miniml import MiniMLModel, MiniMLParam
from miniml.loss import BinaryCrossEntropyLogLoss, LNormRegularization


def quadratic_features(X):
    """``(x1, x2, x1^2, x2^2, x1 x2)``: the hand-made features."""
    x1, x2 = X[:, 0], X[:, 1]
    return jnp.stack([x1, x2, x1**2, x2**2, x1 * x2], axis=1)


def linear_features(X):
    return X


class FeatureLogistic(MiniMLModel):
    """Logits ``phi(X) @ w + b`` for a fixed feature map ``phi``."""

    def __init__(self, n_features: int, features=quadratic_features) -> None:
        self.features = features
        self.w = MiniMLParam((n_features,), reg_loss=LNormRegularization(2))
        self.b = MiniMLParam((1,))
        super().__init__(loss=BinaryCrossEntropyLogLoss())

    def _predict_kernel(self, X, buffer):
        return self.features(X) @ self.w(buffer) + self.b(buffer)

    def predict_proba(self, X):
        return jax.nn.sigmoid(self.predict(X))


def make_data(n: int, seed: int):
    """Points in a square; class 1 inside a tilted ellipse, with 5% of labels flipped."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 2))
    inside = (X[:, 0] / 1.5) ** 2 + X[:, 1] ** 2 + 0.6 * X[:, 0] * X[:, 1] < 1.0
    flip = rng.random(n) < 0.05
    return X, (inside ^ flip).astype(float)


def main(argv=None) -> dict:
    args = parse_args(argv, __doc__, quick_help="fewer samples")
    started = time.perf_counter()
    n = 300 if args.quick else 3000
    X_train, y_train = make_data(n, seed=0)
    X_test, y_test = make_data(n, seed=1)
    C = 10.0
    figures = {}
    models = {}
    for name, features, n_features in (
        ("linear", linear_features, 2),
        ("quadratic", quadratic_features, 5),
    ):
        model = FeatureLogistic(n_features, features)
        model.bind()  # start at zero: the problem is convex
        res = model.fit(X_train, y_train, reg_lambda=1 / (2 * C))
        accuracy = float(np.mean((np.asarray(model.predict(X_test)) > 0) == y_test))
        print(
            f"{name:>9} features: converged {res.success}, objective {res.loss:.4f}, "
            f"test accuracy {accuracy:.4f}"
        )
        figures[f"{name}_accuracy"] = accuracy
        models[name] = model

    # The same objective in scikit-learn: LogisticRegression(C) on the same features.
    Phi = np.asarray(quadratic_features(X_train))
    sklearn_model = LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(Phi, y_train)
    quadratic = models["quadratic"]
    difference = max(
        float(np.max(np.abs(quadratic.w.value - sklearn_model.coef_[0]))),
        float(abs(quadratic.b.value[0] - sklearn_model.intercept_[0])),
    )
    print(f"max |MiniML - sklearn LogisticRegression(C={C})| coefficient: {difference:.1e}")
    print("weights (x1, x2, x1^2, x2^2, x1 x2):", np.round(np.asarray(quadratic.w.value), 3))
    figures["sklearn_difference"] = difference

    path = args.out / "logistic_features.png"
    grid = np.linspace(-2, 2, 200)
    G1, G2 = np.meshgrid(grid, grid)
    points = np.c_[G1.ravel(), G2.ravel()]
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    for ax, (name, model) in zip(fig.subplots(1, 2), models.items(), strict=True):
        proba = np.asarray(model.predict_proba(points)).reshape(G1.shape)
        ax.contourf(G1, G2, proba, levels=20, cmap="RdBu_r", alpha=0.6)
        ax.contour(G1, G2, proba, levels=[0.5], colors="black")
        ax.scatter(X_test[:, 0], X_test[:, 1], c=y_test, cmap="RdBu_r", s=6, edgecolors="none")
        ax.set(
            title=f"{name} features: test accuracy {figures[f'{name}_accuracy']:.3f}",
            aspect="equal",
        )
    fig.savefig(path, dpi=100)
    print(f"saved {path}  ({time.perf_counter() - started:.1f} s)")
    figures["plots"] = [path]
    return figures


if __name__ == "__main__":
    main()
