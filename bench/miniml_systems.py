"""MiniML's rows: ``model.fit`` with `ScipyOptimizer` (L-BFGS-B) and with the compiled
`LBFGS`, on the same objectives as the peers (see `bench.problems`).

Fits receive the data as device arrays, converted once at set-up exactly as the
hand-written JAX peers do, so that no row pays a host-to-device copy of X per fit. The
timed fit still includes MiniML's input validation (shapes, dtypes, finiteness) and
result bookkeeping (history, counts), not only the optimizer. A user who passes numpy
arrays pays one copy of X per fit on top (about 50 ms for P3's 80 MB here).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bench.problems import CLASSES, HIDDEN, Spec
from bench.timing import Runner
from miniml import MiniMLModel, MiniMLParam
from miniml.loss import LNormRegularization, mean_squared_error_loss, squared_error_loss
from miniml.optim import LBFGS, ScipyOptimizer

__all__ = ["miniml_runners", "model_for"]


def mean_log_loss(y_true: Any, z: Any) -> Any:
    """Mean logistic loss on logits ``z``: mean(log(1 + e^z) - y z)."""
    return jnp.mean(jax.nn.softplus(z) - y_true * z)


def half_mean_squared_error(y_true: Any, y_pred: Any) -> Any:
    """0.5 mean((y_pred - y_true)^2)."""
    return 0.5 * jnp.mean((y_pred - y_true) ** 2)


def mean_label_cross_entropy(labels: Any, logits: Any) -> Any:
    """Mean softmax cross-entropy of integer class labels."""
    log_p = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=1))


for _loss in (mean_log_loss, half_mean_squared_error, mean_label_cross_entropy):
    _loss.reduction = "mean"  # type: ignore[attr-defined]


class LinearW(MiniMLModel):
    """``X @ w`` (P1, P2, P3, P5)."""

    def __init__(self, n_features: int, loss: Any, penalized: bool) -> None:
        self.w = MiniMLParam((n_features,), reg_loss=LNormRegularization(2) if penalized else None)
        super().__init__(loss=loss)

    def _predict_kernel(self, X: Any, buffer: Any) -> Any:
        return X @ self.w(buffer)


class TanhMLP(MiniMLModel):
    """``tanh(X W1 + b1) W2 + b2`` with L2 penalties on W1 and W2 (P4a)."""

    def __init__(self, n_in: int) -> None:
        self.W1 = MiniMLParam((n_in, HIDDEN), reg_loss=LNormRegularization(2))
        self.b1 = MiniMLParam((HIDDEN,))
        self.W2 = MiniMLParam((HIDDEN, CLASSES), reg_loss=LNormRegularization(2))
        self.b2 = MiniMLParam((CLASSES,))
        super().__init__(loss=mean_label_cross_entropy)

    def _predict_kernel(self, X: Any, buffer: Any) -> Any:
        return jnp.tanh(X @ self.W1(buffer) + self.b1(buffer)) @ self.W2(buffer) + self.b2(buffer)


def model_for(spec: Spec) -> tuple[MiniMLModel, float]:
    """The MiniML model of ``spec`` and its ``reg_lambda``.

    MiniML's L2 penalty is the plain sum of squares times ``reg_lambda``, so a halved
    penalty ``reg/2 ‖w‖²`` takes ``reg_lambda = reg / 2``.
    """
    d = spec.X.shape[1]
    if spec.kind == "mlp":
        return TanhMLP(d), spec.reg / 2
    if spec.kind == "ls_sum":
        return LinearW(d, squared_error_loss, penalized=False), 0.0
    if spec.kind == "mse_l2":
        return LinearW(d, mean_squared_error_loss, penalized=True), spec.reg
    if spec.kind == "logistic":
        return LinearW(d, mean_log_loss, penalized=True), spec.reg / 2
    return LinearW(d, half_mean_squared_error, penalized=False), 0.0


def miniml_runners(spec: Spec) -> list[Runner]:
    """MiniML's ScipyOptimizer and compiled LBFGS paths on ``spec``."""
    optimizers = [
        (
            "MiniML ScipyOptimizer",
            ScipyOptimizer(
                "L-BFGS-B", options={"maxiter": spec.maxiter, "gtol": spec.gtol, "ftol": spec.ftol}
            ),
        ),
        ("MiniML LBFGS (compiled)", LBFGS(maxiter=spec.maxiter, gtol=spec.gtol, ftol=spec.ftol)),
    ]
    runners = []
    # Data and start on the device once, as the optax loop's are: every fit restarts
    # from ``w0`` without a host-to-device copy (a model's buffer lives on the device).
    X, y, w0 = jax.device_put(spec.X), jax.device_put(spec.y), jax.device_put(spec.w0)
    for label, optimizer in optimizers:
        model, reg_lambda = model_for(spec)
        model.bind()

        def fit(
            model: MiniMLModel = model, optimizer: Any = optimizer, reg_lambda: float = reg_lambda
        ) -> tuple[np.ndarray, int | None, int | None]:
            model.set_buffer(w0)
            result = model.fit(X, y, reg_lambda=reg_lambda, optimizer=optimizer)
            return (
                np.asarray(model.get_buffer(copy=False)),
                result.n_iterations,
                (result.n_function_evaluations),
            )

        runners.append(Runner(label, fit))
    return runners
