r"""Loss functions and regularizers.

A *loss* is any callable ``loss(y_true, y_pred) -> scalar``; a *regularizer* is any
callable ``reg(w) -> scalar``. Every loss shipped here declares its **reduction** in
the attribute ``reduction``:

* ``"sum"``: the loss adds up a term per element (MiniML's convention, e.g.
  ``squared_error_loss``). Twice the data gives twice the loss.
* ``"mean"``: the loss averages its terms over the elements of ``y_true``.

The reduction tells mini-batch training how to scale a batch loss so that its
gradient is an unbiased estimate of the full-batch objective's gradient, and tells
chunked evaluation how to combine chunks. A user loss without the attribute works for
full-batch fits; mini-batch and chunked fits ask for it with a clear error.

The total objective of a fit is

.. math::

    J(\theta) = \mathcal{L}(y, \hat{y}) + \lambda \sum_i s_i \mathcal{R}_i(w_i)
                + \lambda_a A(\theta)

with ``reg_lambda`` :math:`\lambda`, per-parameter ``reg_scale`` :math:`s_i` and,
for models that return an activity loss :math:`A`, ``active_reg_lambda``
:math:`\lambda_a`. No penalty is halved.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array as JXArray

from miniml.errors import MiniMLError

__all__ = [
    "BinaryCrossEntropyLogLoss",
    "CrossEntropyLogLoss",
    "LNormRegularization",
    "LossFunction",
    "LossFunctionBase",
    "RegLossFunction",
    "RegLossFunctionBase",
    "binary_cross_entropy_log_loss",
    "cross_entropy_loss",
    "mean_squared_error_loss",
    "reduction_of",
    "squared_error_loss",
]

LossFunction = Callable[[JXArray, JXArray], JXArray]
RegLossFunction = Callable[[JXArray], JXArray]
Reduction = Literal["sum", "mean"]


class LossFunctionBase(ABC):
    """Base class for parametrized losses.

    Subclasses implement ``__call__(y_true, y_pred)`` and set ``reduction``. They may
    override `validate` to check targets once, at the ``fit`` boundary, before any
    tracing (for example that class labels are in range).
    """

    reduction: Reduction = "sum"

    @abstractmethod
    def __call__(self, y_true: JXArray, y_pred: JXArray) -> JXArray:
        """Return the scalar loss of the predictions ``y_pred`` for targets ``y_true``."""

    def validate(self, y_true: Any, y_pred_shape: tuple[int, ...], where: str) -> None:
        """Check targets against the prediction shape; default: shapes must match."""
        _check_same_shape(np.shape(y_true), y_pred_shape, where, type(self).__name__)


class RegLossFunctionBase(ABC):
    """Base class for parametrized regularizers ``reg(w) -> scalar``."""

    @abstractmethod
    def __call__(self, w: JXArray) -> JXArray:
        """Return the scalar penalty of the parameter value ``w``."""


def _check_same_shape(
    y_shape: tuple[int, ...], pred_shape: tuple[int, ...], where: str, loss_name: str
) -> None:
    if tuple(y_shape) != tuple(pred_shape):
        hint = ""
        if len(y_shape) + 1 == len(pred_shape) and pred_shape[-1] == 1:
            hint = " Reshape y with y.reshape(-1, 1) so that it matches the predictions."
        elif len(pred_shape) + 1 == len(y_shape) and y_shape[-1] == 1:
            hint = " Flatten y with y.ravel() so that it matches the predictions."
        raise MiniMLError(
            f"{where}: {loss_name} needs y and the model's predictions to have the same "
            f"shape, but y has shape {tuple(y_shape)} and the predictions have shape "
            f"{tuple(pred_shape)}; MiniML never broadcasts them silently.{hint}"
        )


def _shape_validator(loss_name: str) -> Callable[[Any, tuple[int, ...], str], None]:
    """The boundary check of a loss that needs y and predictions of equal shape."""

    def validate(y_true: Any, y_pred_shape: tuple[int, ...], where: str) -> None:
        _check_same_shape(np.shape(y_true), y_pred_shape, where, loss_name)

    return validate


def _same_shape_in_trace(y_true: JXArray, y_pred: JXArray, name: str) -> None:
    if jnp.shape(y_true) != jnp.shape(y_pred):
        _check_same_shape(jnp.shape(y_true), jnp.shape(y_pred), name, name)


def squared_error_loss(y_true: JXArray, y_pred: JXArray) -> JXArray:
    r"""Sum of squared errors, MiniML's default loss (reduction ``"sum"``).

    .. math:: \mathcal{L}(y, \hat{y}) = \sum_i (y_i - \hat{y}_i)^2
    """
    _same_shape_in_trace(y_true, y_pred, "squared_error_loss")
    return jnp.sum((y_true - y_pred) ** 2)


squared_error_loss.reduction = "sum"  # type: ignore[attr-defined]
squared_error_loss.validate = _shape_validator("squared_error_loss")  # type: ignore[attr-defined]


def mean_squared_error_loss(y_true: JXArray, y_pred: JXArray) -> JXArray:
    r"""Mean squared error over all elements (reduction ``"mean"``; Keras' ``MSE``).

    .. math:: \mathcal{L}(y, \hat{y}) = \frac{1}{m} \sum_{i=1}^{m} (y_i - \hat{y}_i)^2

    where :math:`m` is the number of elements of ``y_true``.
    """
    _same_shape_in_trace(y_true, y_pred, "mean_squared_error_loss")
    return jnp.mean((y_true - y_pred) ** 2)


mean_squared_error_loss.reduction = "mean"  # type: ignore[attr-defined]
mean_squared_error_loss.validate = _shape_validator("mean_squared_error_loss")  # type: ignore[attr-defined]


def cross_entropy_loss(y_true: JXArray, y_pred: JXArray) -> JXArray:
    r"""Cross-entropy of predicted probabilities (reduction ``"sum"``).

    .. math:: \mathcal{L}(y, \hat{y}) = -\sum_i y_i \log \hat{y}_i

    with :math:`0 \log 0 = 0`. ``y_pred`` must hold probabilities (e.g. a softmax
    output); a zero probability for a true class gives an infinite loss, which stops a
    fit with a `NonFiniteWarning`. For unnormalized scores use `CrossEntropyLogLoss`,
    which is also numerically safer.
    """
    _same_shape_in_trace(y_true, y_pred, "cross_entropy_loss")
    # Not xlogy: its derivative at y_true = y_pred = 0 is 0/0, a NaN gradient for any
    # class whose predicted probability underflows to 0.
    present = y_true != 0
    return -jnp.sum(jnp.where(present, y_true * jnp.log(jnp.where(present, y_pred, 1.0)), 0.0))


cross_entropy_loss.reduction = "sum"  # type: ignore[attr-defined]
cross_entropy_loss.validate = _shape_validator("cross_entropy_loss")  # type: ignore[attr-defined]


class CrossEntropyLogLoss(LossFunctionBase):
    r"""Softmax cross-entropy on logits (reduction ``"sum"``).

    For one-hot (or probability) targets :math:`y` and logits :math:`z` along the
    last axis:

    .. math:: \mathcal{L}(y, z) = -\sum_{n} \sum_k y_{nk}
              \left(z_{nk} - \log \sum_j e^{z_{nj}}\right)

    Args:
        zero_ref: if True the model outputs one logit fewer than there are classes and
            a logit fixed at 0 is appended as the reference class (the multinomial
            logit parameterization).
        expect_labels: if True ``y_true`` holds integer class labels with the shape of
            the logits minus the last axis, and the loss is
            :math:`-\sum_n \log \mathrm{softmax}(z_n)_{y_n}`. Labels outside
            ``[0, n_classes)`` are rejected at the ``fit`` boundary.
    """

    def __init__(self, zero_ref: bool = False, expect_labels: bool = False) -> None:
        self.zero_ref = bool(zero_ref)
        self.expect_labels = bool(expect_labels)

    def _full_logits(self, z: JXArray) -> JXArray:
        if not self.zero_ref:
            return z
        return jnp.concatenate([z, jnp.zeros((*z.shape[:-1], 1), z.dtype)], axis=-1)

    def __call__(self, y_true: JXArray, y_pred: JXArray) -> JXArray:
        log_p = jax.nn.log_softmax(self._full_logits(y_pred), axis=-1)
        if self.expect_labels:
            labels = jnp.asarray(y_true).astype(jnp.int32)
            picked = jnp.take_along_axis(log_p, labels[..., None], axis=-1)
            return -jnp.sum(picked)
        _same_shape_in_trace(y_true, log_p, "CrossEntropyLogLoss")
        return -jnp.sum(y_true * log_p)

    def validate(self, y_true: Any, y_pred_shape: tuple[int, ...], where: str) -> None:
        n_classes = y_pred_shape[-1] + (1 if self.zero_ref else 0)
        full_shape = (*y_pred_shape[:-1], n_classes)
        if not self.expect_labels:
            _check_same_shape(np.shape(y_true), full_shape, where, "CrossEntropyLogLoss")
            return
        y_arr = np.asarray(y_true)
        if y_arr.shape != tuple(y_pred_shape[:-1]):
            raise MiniMLError(
                f"{where}: CrossEntropyLogLoss(expect_labels=True) needs integer labels of "
                f"shape {tuple(y_pred_shape[:-1])} (the logits' shape without the class "
                f"axis), but y has shape {y_arr.shape}."
            )
        if y_arr.dtype.kind not in "iu":
            raise MiniMLError(
                f"{where}: CrossEntropyLogLoss(expect_labels=True) needs integer class "
                f"labels, but y has dtype {y_arr.dtype}. Convert with y.astype(int)."
            )
        if y_arr.size and (y_arr.min() < 0 or y_arr.max() >= n_classes):
            raise MiniMLError(
                f"{where}: class labels must lie in [0, {n_classes}) for a model with "
                f"{n_classes} classes, but y ranges over [{y_arr.min()}, {y_arr.max()}]."
            )

    def __repr__(self) -> str:
        return f"CrossEntropyLogLoss(zero_ref={self.zero_ref}, expect_labels={self.expect_labels})"


class BinaryCrossEntropyLogLoss(LossFunctionBase):
    r"""Binary cross-entropy on logits (reduction ``"sum"``).

    For targets :math:`y \in [0, 1]` and logits :math:`z` of the same shape:

    .. math:: \mathcal{L}(y, z) = \sum_i \left[\log(1 + e^{z_i}) - y_i z_i\right]

    which equals :math:`-\sum_i [y_i \log \sigma(z_i) + (1 - y_i)\log(1 - \sigma(z_i))]`
    and is computed stably with ``softplus``.
    """

    def __call__(self, y_true: JXArray, y_pred: JXArray) -> JXArray:
        _same_shape_in_trace(y_true, y_pred, "BinaryCrossEntropyLogLoss")
        return jnp.sum(jax.nn.softplus(y_pred) - y_true * y_pred)

    def validate(self, y_true: Any, y_pred_shape: tuple[int, ...], where: str) -> None:
        super().validate(y_true, y_pred_shape, where)
        y_arr = np.asarray(y_true)
        if y_arr.size and (y_arr.min() < 0 or y_arr.max() > 1):
            raise MiniMLError(
                f"{where}: BinaryCrossEntropyLogLoss needs targets in [0, 1], but y ranges "
                f"over [{y_arr.min()}, {y_arr.max()}]."
            )

    def __repr__(self) -> str:
        return "BinaryCrossEntropyLogLoss()"


binary_cross_entropy_log_loss = BinaryCrossEntropyLogLoss()


class LNormRegularization(RegLossFunctionBase):
    r"""The :math:`L^p` penalty, optionally with the p-th root.

    .. math:: \mathcal{R}_p(w) = \sum_i |w_i|^p
              \qquad\text{or, with ``root=True``,}\qquad
              \mathcal{R}_p(w) = \Big(\sum_i |w_i|^p\Big)^{1/p}

    ``LNormRegularization(2)`` is the plain (not halved) squared Euclidean norm, so
    ``reg_lambda`` :math:`=\alpha` reproduces scikit-learn's ``Ridge(alpha)`` with
    MiniML's sum-of-squares loss.
    """

    def __init__(self, p: float = 2, root: bool = False) -> None:
        p_float = float(p)
        if not np.isfinite(p_float) or p_float <= 0:
            raise MiniMLError(
                f"LNormRegularization: p must be a positive finite number, got {p!r}."
            )
        self.p = p
        self.root = bool(root)

    def __call__(self, w: JXArray) -> JXArray:
        total = jnp.sum(w**2) if self.p == 2 else jnp.sum(jnp.abs(w) ** self.p)
        if not self.root:
            return total
        # The root's derivative is infinite at 0 (a zero-initialized bias): give the
        # subgradient 0 there instead of inf * 0 = NaN.
        positive = total > 0
        return jnp.where(positive, jnp.where(positive, total, 1.0) ** (1.0 / self.p), 0.0)

    def __repr__(self) -> str:
        return f"LNormRegularization(p={self.p}, root={self.root})"


def reduction_of(loss: Any, where: str) -> Reduction:
    """Return the declared reduction (``"sum"`` or ``"mean"``) of a loss callable.

    Raises:
        MiniMLError: if the loss does not declare one.
    """
    reduction = getattr(loss, "reduction", None)
    if reduction not in ("sum", "mean"):
        raise MiniMLError(
            f"{where}: needs to know whether the loss {loss!r} sums or averages over "
            f"samples, but it has no `reduction` attribute (found {reduction!r}). "
            'Set `my_loss.reduction = "sum"` or `"mean"` (or subclass LossFunctionBase).'
        )
    return reduction
