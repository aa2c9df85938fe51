"""The `fit` driver: validate, build the cached objective, run the optimizer, write back.

It owns the steps around an optimizer; the model owns structure and the forward pass,
and optimizers see only a `Problem`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from miniml.data import as_data, describe, signature_of
from miniml.errors import MiniMLError
from miniml.objective import Hyper, objective_for
from miniml.optim.base import FitOptions, FitResult, MiniMLOptimizer, Problem, TrainableSlice
from miniml.predict import split_kwargs

if TYPE_CHECKING:
    from miniml.model import MiniMLModel

__all__ = ["fit_model"]


def _check_strength(value: Any, name: str, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise MiniMLError(f"{where}: {name} must be a number, got {value!r}.") from err
    if not math.isfinite(number) or number < 0:
        raise MiniMLError(f"{where}: {name} must be finite and >= 0, got {value!r}.")
    return number


def _frozen_names(model: MiniMLModel, returned: Any, where: str) -> frozenset[str]:
    if returned is None:
        return frozenset()
    if isinstance(returned, str) or not isinstance(returned, Iterable):
        raise MiniMLError(
            f"{where}: _pre_fit must return a set of parameter names, got {returned!r}."
        )
    names = frozenset(returned)
    unknown = sorted(n for n in names if n not in model.params)
    if unknown:
        raise MiniMLError(
            f"{where}: _pre_fit returned unknown parameter names {unknown}; the model's "
            f"parameters are {model.param_names}."
        )
    return names


def _check_prediction_shape(
    model: MiniMLModel, data: Any, y: Any, static: tuple, where: str
) -> None:
    """Trace the forward pass abstractly once to give shape errors a clear message."""
    from miniml.model import PredictMode, split_kernel_output

    X = data

    def forward(buffer: Any) -> Any:
        out = model._predict_kernel(
            X, buffer, rng_key=jax.random.key(0), mode=PredictMode.TRAIN, **dict(static)
        )
        return split_kernel_output(out)[0]

    try:
        pred = jax.eval_shape(forward, jax.ShapeDtypeStruct((model.size,), model.dtype))
    except MiniMLError:
        raise
    except Exception as err:
        raise MiniMLError(
            f"{where}: the forward pass failed for X like {describe(X)}: "
            f"{type(err).__name__}: {err}"
        ) from err
    validate = getattr(model.loss_function, "validate", None)
    if callable(validate) and hasattr(pred, "shape"):
        validate(y, tuple(pred.shape), where)


def _fit_options(
    epochs: Any, batch_size: Any, shuffle: Any, seed: Any, n_samples: int, where: str
) -> FitOptions:
    if epochs is not None and (not isinstance(epochs, int | np.integer) or epochs < 1):
        raise MiniMLError(f"{where}: epochs must be a positive int, got {epochs!r}.")
    if batch_size is not None:
        if not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise MiniMLError(f"{where}: batch_size must be a positive int, got {batch_size!r}.")
        if batch_size > n_samples:
            raise MiniMLError(
                f"{where}: batch_size={batch_size} is larger than the {n_samples} samples; "
                f"use batch_size <= {n_samples} (or None for full batches)."
            )
    if not isinstance(shuffle, bool):
        raise MiniMLError(f"{where}: shuffle must be True or False, got {shuffle!r}.")
    if not isinstance(seed, int | np.integer):
        raise MiniMLError(f"{where}: seed must be an int, got {seed!r}.")
    return FitOptions(
        epochs=None if epochs is None else int(epochs),
        batch_size=None if batch_size is None else int(batch_size),
        shuffle=shuffle,
        seed=int(seed),
    )


def fit_model(
    model: MiniMLModel,
    X: Any,
    y: Any,
    reg_lambda: float = 1.0,
    optimizer: MiniMLOptimizer | None = None,
    *,
    active_reg_lambda: float = 1.0,
    predict_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    epochs: int | None = None,
    batch_size: int | None = None,
    shuffle: bool = True,
) -> FitResult:
    """Fit ``model`` to ``(X, y)``; see `MiniMLModel.fit`.

    Keyword Args:
        active_reg_lambda: weight of the activity loss a forward pass may return in a
            `PredictKernelOutput`.
        predict_kwargs: extra keyword arguments of the forward pass.
        seed: seeds shuffling and the random keys handed to the forward pass in
            training mode (on the SciPy path one key for the whole fit, so the objective
            is deterministic for line searches).
        epochs: passes over the data, for stochastic optimizers.
        batch_size: mini-batch size, for stochastic optimizers.
        shuffle: reshuffle samples every epoch (stochastic optimizers).
    """
    from miniml.optim.scipy import ScipyOptimizer

    where = f"{type(model).__name__}.fit"
    model._require_initialized("fit")
    if model.root is not model:
        raise MiniMLError(
            f"{where}: this model is part of a {type(model.root).__name__}; fit the "
            "outermost model instead."
        )
    if model.loss_function is None:
        raise MiniMLError(
            f"{where}: the model has no loss (it was declared with loss=None), so there is "
            "nothing to minimize. Pass one to super().__init__(loss=...)."
        )
    if model.size == 0:
        raise MiniMLError(
            f"{where}: the model has no parameters to fit; declare MiniMLParam attributes "
            "(or child models) before calling super().__init__()."
        )
    if optimizer is None:
        optimizer = ScipyOptimizer()
    if not isinstance(optimizer, MiniMLOptimizer):
        raise MiniMLError(
            f"{where}: optimizer must be a MiniMLOptimizer (e.g. ScipyOptimizer(...)), got "
            f"{optimizer!r}."
        )
    reg = _check_strength(reg_lambda, "reg_lambda", where)
    active_reg = _check_strength(active_reg_lambda, "active_reg_lambda", where)
    dtype = model.dtype
    X_data, n_x = as_data(X, "X", where, dtype)
    y_data, n_y = as_data(y, "y", where, dtype)
    if n_x != n_y:
        raise MiniMLError(
            f"{where}: X has {n_x} samples but y has {n_y}; X and y must have the same "
            "first dimension."
        )
    _, static = split_kwargs(predict_kwargs or {}, where)
    if any(isinstance(v, jax.Array | np.ndarray) for v in (predict_kwargs or {}).values()):
        raise MiniMLError(
            f"{where}: array-valued predict_kwargs are not supported in fit; put per-sample "
            "arrays into X (a tuple or dict of arrays)."
        )
    model.bind()
    frozen = _frozen_names(model, model._pre_fit(X_data, y_data), where)
    if len(frozen) == len(model.params):
        raise MiniMLError(
            f"{where}: _pre_fit fixed every parameter ({sorted(frozen)}); nothing is left "
            "to optimize."
        )
    _check_prediction_shape(model, X_data, y_data, static, where)

    objective = objective_for(model, frozen, static)
    buffer = model.get_buffer(copy=False)
    trainable = objective.trainable
    x0 = np.asarray(buffer if trainable is None else buffer[trainable])
    layout, start = [], 0
    for name, param in model.params.items():
        if name not in frozen:
            layout.append(TrainableSlice(name, param.shape, start))
            start += param.size
    hyper = Hyper(
        reg_lambda=jnp.asarray(reg, dtype),
        active_reg_lambda=jnp.asarray(active_reg, dtype),
        reg_scales=jnp.asarray(model._reg_scales()),
        rng_key=jax.random.key(int(seed)),
        data_scale=jnp.asarray(1.0, dtype),
    )
    base = None if trainable is None else buffer
    options = _fit_options(epochs, batch_size, shuffle, seed, n_x, where)
    reduction = getattr(model.loss_function, "reduction", None)
    problem = Problem(
        objective,
        x0,
        base,
        (X_data, y_data),
        hyper,
        layout,
        n_x,
        options,
        loss_reduction=reduction if reduction in ("sum", "mean") else None,
    )
    outcome = optimizer.minimize(problem)

    theta = jnp.asarray(np.asarray(outcome.x), dtype)
    if not bool(jnp.all(jnp.isfinite(theta))):
        raise MiniMLError(
            f"{where}: optimizer {optimizer.name} returned non-finite parameters; they were "
            "not written into the model. A MiniMLOptimizer must return a finite point."
        )
    model.set_buffer(theta if trainable is None else buffer.at[trainable].set(theta))
    model._miniml_input_signature = (signature_of(X_data), describe(X_data))
    return FitResult(
        success=outcome.success,
        message=outcome.message,
        objective_value=float(outcome.fun),
        n_iterations=outcome.n_iterations,
        n_function_evaluations=outcome.n_function_evaluations,
        n_jacobian_evaluations=outcome.n_jacobian_evaluations,
        n_hessian_evaluations=outcome.n_hessian_evaluations,
        x_opt=model.get_buffer(copy=True),
        status=outcome.status,
        optimizer=optimizer.name,
    )
