"""The default models of the estimators: they start from zeros and share compiled code.

The default models are convex, so, like scikit-learn's linear models, they start from
all-zero parameters; their fits do not depend on ``random_state``.

MiniML caches a model's compiled objective and forward pass on the model instance,
and the estimators build a new model in every ``fit`` (scikit-learn clones them), so
each fit of a user's model compiles again. The default models are built here, from
fixed constructor arguments and one loss object per kind, so two of them with the same
``(kind, n_features, n_outputs, dtype)`` are the same computation: they share one
cache of compiled functions. Those functions take the parameter buffer as an argument
and read only the model's structure (parameter offsets and shapes, the loss), so the
sharing changes no result; it only skips recompiling in cross-validation and grid
searches.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from miniml.loss import BinaryCrossEntropyLogLoss, CrossEntropyLogLoss, squared_error_loss
from miniml.model import MiniMLModel
from miniml.nn.linear import Linear

__all__ = ["linear_regression_model", "logistic_regression_model"]

_BINARY_LOSS = BinaryCrossEntropyLogLoss()
_MULTINOMIAL_LOSS = CrossEntropyLogLoss(expect_labels=True)

_MAX_SHARED = 32
"""How many structures keep a shared cache (least recently used ones are dropped)."""

_shared: OrderedDict[tuple[Any, ...], dict[Any, Any]] = OrderedDict()
_lock = threading.Lock()


def _with_shared_cache(model: MiniMLModel, kind: str) -> MiniMLModel:
    """Start ``model`` at zeros and give it the compiled-function cache of its structure."""
    model.set_buffer(np.zeros(model.size, model.dtype))
    key = (kind, *model.params["W"].shape, model.dtype.name)
    with _lock:
        cache = _shared.get(key)
        if cache is None:
            cache = _shared[key] = {}
            if len(_shared) > _MAX_SHARED:
                _shared.popitem(last=False)
        else:
            _shared.move_to_end(key)
    model._compiled = cache
    return model


def linear_regression_model(n_features: int, n_outputs: int) -> MiniMLModel:
    r"""`MiniMLRegressor`'s default model: ridge regression.

    A `miniml.nn.Linear` layer :math:`\hat{y} = XW + b` with the sum-of-squares loss and
    the penalty :math:`\lambda \lVert W \rVert_2^2` (``b`` is not penalized), which is
    scikit-learn's ``Ridge(alpha=reg_lambda)``. It starts from zeros.

    Args:
        n_features: number of input features.
        n_outputs: number of targets.
    """
    return _with_shared_cache(Linear(n_features, n_outputs, loss=squared_error_loss), "ridge")


def logistic_regression_model(n_features: int, n_classes: int) -> MiniMLModel:
    r"""`MiniMLClassifier`'s default model: L2-penalized logistic regression.

    Two classes: one logit :math:`z = Xw + b` with `BinaryCrossEntropyLogLoss`. More
    classes: ``n_classes`` logits :math:`Z = XW + b` with the softmax cross-entropy
    ``CrossEntropyLogLoss(expect_labels=True)`` (multinomial, every class explicit, as
    in scikit-learn's ``LogisticRegression``). The penalty is
    :math:`\lambda \lVert W \rVert_2^2`, the intercepts are not penalized, and both
    losses sum over samples, so ``reg_lambda = 1 / (2 C)`` has the optimum of
    ``LogisticRegression(C=C)``. It starts from zeros, as ``LogisticRegression`` does.

    Args:
        n_features: number of input features.
        n_classes: number of classes (at least 2).
    """
    if n_classes == 2:
        return _with_shared_cache(Linear(n_features, 1, loss=_BINARY_LOSS), "binary")
    model = Linear(n_features, n_classes, loss=_MULTINOMIAL_LOSS)
    return _with_shared_cache(model, "multinomial")
