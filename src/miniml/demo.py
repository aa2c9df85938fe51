"""`make demo`: the same models fitted with several optimizers, side by side.

Run with ``python -m miniml.demo``. Data are synthetic and generated in-process.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from miniml import MiniMLModel, MiniMLParam, PredictMode
from miniml.errors import ConvergenceWarning
from miniml.loss import BinaryCrossEntropyLogLoss, LNormRegularization, mean_squared_error_loss
from miniml.optim import MiniMLOptimizer, ScipyOptimizer


class LogisticRegression(MiniMLModel):
    """``logit = X @ w + b`` with a binary cross-entropy loss and an L2 penalty on w."""

    def __init__(self, n_features: int) -> None:
        self.w = MiniMLParam((n_features, 1), reg_loss=LNormRegularization(2))
        self.b = MiniMLParam((1,))
        super().__init__(loss=BinaryCrossEntropyLogLoss())

    def _predict_kernel(
        self, X: Any, buffer: Any, rng_key: Any = None, mode: PredictMode = PredictMode.INFERENCE
    ) -> Any:
        return X @ self.w(buffer) + self.b(buffer)


class TwoLayerNet(MiniMLModel):
    """A tanh network ``tanh(X W1 + b1) W2 + b2`` for a smooth regression."""

    def __init__(self, n_in: int, n_hidden: int) -> None:
        self.W1 = MiniMLParam((n_in, n_hidden), rnd_scale=n_in**-0.5)
        self.b1 = MiniMLParam((n_hidden,), rnd_scale=0.0)
        self.W2 = MiniMLParam((n_hidden, 1), rnd_scale=n_hidden**-0.5)
        self.b2 = MiniMLParam((1,), rnd_scale=0.0)
        super().__init__(loss=mean_squared_error_loss)

    def _predict_kernel(
        self, X: Any, buffer: Any, rng_key: Any = None, mode: PredictMode = PredictMode.INFERENCE
    ) -> Any:
        hidden = jnp.tanh(X @ self.W1(buffer) + self.b1(buffer))
        return hidden @ self.W2(buffer) + self.b2(buffer)


def _classification(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    X = rng.normal(size=(5000, 20))
    logits = X @ rng.normal(size=20) + 0.5
    y = (rng.random(5000) < 1 / (1 + np.exp(-logits))).astype(float)[:, None]
    return X, y


def _regression(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    X = rng.uniform(-2, 2, size=(2000, 2))
    y = (np.sin(2 * X[:, 0]) * np.cos(X[:, 1]))[:, None] + 0.05 * rng.normal(size=(2000, 1))
    return X, y


OPTIMIZERS: dict[str, Callable[[], MiniMLOptimizer]] = {
    "L-BFGS-B": lambda: ScipyOptimizer("L-BFGS-B", {"maxiter": 500}),
    "BFGS": lambda: ScipyOptimizer("BFGS", {"maxiter": 500}),
    "CG": lambda: ScipyOptimizer("CG", {"maxiter": 500}),
    "Newton-CG": lambda: ScipyOptimizer("Newton-CG", {"maxiter": 200}),
    "trust-krylov": lambda: ScipyOptimizer("trust-krylov", {"maxiter": 200}),
    "Nelder-Mead": lambda: ScipyOptimizer("Nelder-Mead", {"maxiter": 2000}),
}


def _run(make_model: Callable[[], MiniMLModel], X: Any, y: Any, reg_lambda: float) -> None:
    print(f"{'optimizer':<14}{'final loss':>16}{'iterations':>12}{'f+g evals':>11}"
          f"{'time [s]':>10}  converged")  # fmt: skip
    for name, make_optimizer in OPTIMIZERS.items():
        model = make_model()
        model.randomize(seed=0)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            res = model.fit(X, y, reg_lambda=reg_lambda, optimizer=make_optimizer())
        elapsed = time.perf_counter() - start
        print(f"{name:<14}{res.loss:>16.8f}{res.n_iterations:>12d}"
              f"{res.n_function_evaluations:>11d}{elapsed:>10.3f}  {res.success}")  # fmt: skip


def main() -> None:
    rng = np.random.default_rng(0)
    print("MiniML demo: one model, several optimizers (times include the first compile).\n")
    X, y = _classification(rng)
    print("Logistic regression, n=5000, d=20, reg_lambda=1e-2:")
    _run(lambda: LogisticRegression(20), X, y, 1e-2)
    X, y = _regression(rng)
    print("\nTwo-layer tanh network (2-32-1), n=2000, mean squared error, reg_lambda=0:")
    _run(lambda: TwoLayerNet(2, 32), X, y, 0.0)


if __name__ == "__main__":
    main()
