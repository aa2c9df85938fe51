r"""Validation metrics: JAX functions ``metric(y_true, y_pred) -> scalar``.

Metrics run inside the compiled validation step, on the device. Any JAX-traceable
callable ``(y_true, y_pred) -> scalar`` is a metric; its history column is
``val_<name>`` where the name is its ``__name__`` (or ``name`` attribute). The
built-in ones can also be given by name (``"mse"``, ``"mae"``, ``"r2"``,
``"accuracy"``, ``"log_loss"``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array as JXArray

from miniml.data import check_no_masked_entries
from miniml.errors import MiniMLError

__all__ = [
    "Accuracy",
    "LogLoss",
    "accuracy",
    "log_loss",
    "mean_absolute_error",
    "mean_squared_error",
    "r2_score",
    "resolve_metrics",
]

Metric = Callable[[JXArray, JXArray], JXArray]


def _per_sample(y_true: JXArray, y_pred: JXArray, name: str) -> tuple[JXArray, JXArray]:
    """Both as ``(n, values per sample)``, so ``(n,)`` and ``(n, 1)`` compare element by
    element instead of broadcasting to ``(n, n)``; other mismatches are errors."""
    y_true, y_pred = _without_masks(y_true, y_pred, name)
    y_true, y_pred = jnp.asarray(y_true), jnp.asarray(y_pred)
    if y_true.shape[:1] != y_pred.shape[:1] or y_true.size != y_pred.size:
        raise MiniMLError(
            f"{name}: y_true has shape {tuple(y_true.shape)} and y_pred "
            f"{tuple(y_pred.shape)}; they must hold the same number of values per sample."
        )
    n = y_true.shape[0] if y_true.ndim else 1
    return jnp.reshape(y_true, (n, -1)), jnp.reshape(y_pred, (n, -1))


def mean_squared_error(y_true: JXArray, y_pred: JXArray) -> JXArray:
    r""":math:`\frac{1}{m}\sum_i (y_i - \hat y_i)^2` over all elements."""
    y_true, y_pred = _per_sample(y_true, y_pred, "mean_squared_error")
    return jnp.mean((y_true - y_pred) ** 2)


def mean_absolute_error(y_true: JXArray, y_pred: JXArray) -> JXArray:
    r""":math:`\frac{1}{m}\sum_i |y_i - \hat y_i|` over all elements."""
    y_true, y_pred = _per_sample(y_true, y_pred, "mean_absolute_error")
    return jnp.mean(jnp.abs(y_true - y_pred))


def r2_score(y_true: JXArray, y_pred: JXArray) -> JXArray:
    r"""Coefficient of determination, averaged over outputs like scikit-learn's
    ``r2_score(multioutput="uniform_average")``:
    :math:`1 - \sum_n (y_n - \hat y_n)^2 / \sum_n (y_n - \bar y)^2` per output column.
    """
    y_true, y_pred = _per_sample(y_true, y_pred, "r2_score")
    residual = jnp.sum((y_true - y_pred) ** 2, axis=0)
    total = jnp.sum((y_true - jnp.mean(y_true, axis=0)) ** 2, axis=0)
    # A constant column scores 1 when predicted exactly and 0 otherwise, as scikit-learn
    # does (force_finite), instead of NaN or -inf.
    constant = total == 0
    score = 1.0 - residual / jnp.where(constant, 1.0, total)
    return jnp.mean(jnp.where(constant, jnp.where(residual == 0, 1.0, 0.0), score))


def _without_masks(y_true: Any, y_pred: Any, name: str) -> tuple[Any, Any]:
    # Masked arrays as fit takes them: used when nothing is masked, refused otherwise.
    return (check_no_masked_entries(y_true, "y_true", name),
            check_no_masked_entries(y_pred, "y_pred", name))  # fmt: skip


def _class_predictions(y_pred: JXArray, threshold: float) -> JXArray:
    if y_pred.ndim >= 2 and y_pred.shape[-1] > 1:
        return jnp.argmax(y_pred, axis=-1)
    flat = y_pred.reshape(y_pred.shape[0], *y_pred.shape[1:-1]) if y_pred.ndim >= 2 else y_pred
    return (flat > threshold).astype(jnp.int32)


def _class_labels(y_true: JXArray, n_pred_dims: int) -> JXArray:
    # A 1-D y_true is one label per sample, whatever the predictions' rank.
    if y_true.ndim >= 2 and y_true.ndim == n_pred_dims and y_true.shape[-1] > 1:
        return jnp.argmax(y_true, axis=-1)  # one-hot or probabilities
    if y_true.ndim >= 2 and y_true.ndim == n_pred_dims and y_true.shape[-1] == 1:
        return y_true[..., 0].astype(jnp.int32)
    return y_true.astype(jnp.int32)


class Accuracy:
    """Fraction of correctly classified samples.

    Multi-class predictions (last axis > 1) are scored by ``argmax``; single-column
    binary predictions count as class 1 when above ``threshold`` (0.5 for
    probabilities; use 0.0 for logits). Targets may be labels or one-hot rows.
    """

    def __init__(self, threshold: float = 0.5, name: str = "accuracy") -> None:
        self.threshold = float(threshold)
        self.name = name

    def __call__(self, y_true: JXArray, y_pred: JXArray) -> JXArray:
        y_true, y_pred = _without_masks(y_true, y_pred, self.name)
        predicted = _class_predictions(y_pred, self.threshold)
        labels = _class_labels(y_true, y_pred.ndim)
        return jnp.mean((predicted == labels.reshape(predicted.shape)).astype(y_pred.dtype))


class LogLoss:
    r"""Mean cross-entropy, like scikit-learn's ``log_loss``.

    Multi-class: :math:`-\frac1N\sum_n \log p_{n,y_n}`; one column: binary
    :math:`-\frac1N\sum_n [y_n\log p_n + (1-y_n)\log(1-p_n)]`. With
    ``from_logits=True`` the predictions are logits (softmax / sigmoid applied here);
    probabilities are clipped to :math:`[\epsilon, 1-\epsilon]` (machine epsilon of their
    dtype), as scikit-learn does, so a confident mistake costs a large finite loss.
    """

    def __init__(self, from_logits: bool = False, name: str = "log_loss") -> None:
        self.from_logits = bool(from_logits)
        self.name = name

    def __call__(self, y_true: JXArray, y_pred: JXArray) -> JXArray:
        y_true, y_pred = _without_masks(y_true, y_pred, self.name)
        if not self.from_logits:  # scikit-learn clips probabilities to [eps, 1 - eps]
            eps = jnp.finfo(jnp.result_type(y_pred, jnp.float32)).eps
            y_pred = jnp.clip(y_pred, eps, 1 - eps)
        if y_pred.ndim >= 2 and y_pred.shape[-1] > 1:
            log_p = jax.nn.log_softmax(y_pred, axis=-1) if self.from_logits else jnp.log(y_pred)
            labels = _class_labels(y_true, y_pred.ndim)
            return -jnp.mean(jnp.take_along_axis(log_p, labels[..., None], axis=-1))
        z = y_pred.reshape(y_pred.shape[0], -1)
        t = y_true.reshape(z.shape).astype(z.dtype)
        if self.from_logits:
            return jnp.mean(jax.nn.softplus(z) - t * z)
        return -jnp.mean(jax.scipy.special.xlogy(t, z) + jax.scipy.special.xlogy(1 - t, 1 - z))


accuracy = Accuracy()
log_loss = LogLoss()

_BY_NAME: dict[str, Metric] = {
    "mse": mean_squared_error,
    "mean_squared_error": mean_squared_error,
    "mae": mean_absolute_error,
    "mean_absolute_error": mean_absolute_error,
    "r2": r2_score,
    "accuracy": accuracy,
    "log_loss": log_loss,
}


def _metric_name(metric: Any) -> str:
    name = getattr(metric, "name", None) or getattr(metric, "__name__", None)
    if not isinstance(name, str) or name == "<lambda>":
        raise MiniMLError(
            f"fit: metric {metric!r} has no usable name for its history column; give it a "
            "`name` attribute or use a named function."
        )
    return name


def resolve_metrics(metrics: Sequence[Any] | None, where: str) -> dict[str, Metric]:
    """Turn ``metrics=[...]`` into ``{column suffix: callable}``."""
    if metrics is None:
        return {}
    if isinstance(metrics, str) or callable(metrics):
        metrics = [metrics]
    resolved: dict[str, Metric] = {}
    for metric in metrics:
        if isinstance(metric, str):
            if metric not in _BY_NAME:
                raise MiniMLError(
                    f"{where}: unknown metric {metric!r}; built-in metrics are "
                    f"{sorted(_BY_NAME)}, or pass a function (y_true, y_pred) -> scalar."
                )
            name, function = metric, _BY_NAME[metric]
        elif callable(metric):
            name, function = _metric_name(metric), metric
        else:
            raise MiniMLError(
                f"{where}: a metric must be a name or a callable (y_true, y_pred) -> scalar, "
                f"got {metric!r}."
            )
        if name in resolved:
            raise MiniMLError(f"{where}: two metrics are named {name!r}.")
        resolved[name] = function
    return resolved
