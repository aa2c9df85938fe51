"""The compiled objective of a model: value, gradient, Hessian-vector product, Hessian.

Every function is pure in ``(theta, base, data, hyper)``:

* ``theta``: the trainable parameters as one flat vector;
* ``base``: the full buffer that supplies frozen parameters (None when all train);
* ``data``: ``(X, y)``;
* ``hyper``: `Hyper` values (``reg_lambda``, ...), traced, never baked in.

The value is ``data_scale * (loss(y, f(X)) + active_reg_lambda * activity)
+ reg_lambda * sum_i reg_scale_i * R_i(w_i)``.

Objectives are cached on the model per trainable set and static forward-pass options,
and `jax.jit` caches executables per input shapes, so fitting again with new data of
the same shapes or new hyper-parameter values compiles nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array as JXArray

from miniml._chunked import chunked_functions
from miniml.loss import reduction_of
from miniml.param import split_parameter_views

if TYPE_CHECKING:
    from miniml.model import MiniMLModel

__all__ = ["Hyper", "Objective", "objective_for"]


class Hyper(NamedTuple):
    """Values of the objective that may change between fits without recompiling.

    Inside compiled code every field is a jax array; the host may build them from numpy
    values, which compiled calls take through their fast path.
    """

    reg_lambda: JXArray
    active_reg_lambda: JXArray
    reg_scales: JXArray
    rng_key: JXArray
    data_scale: JXArray
    """Factor on the data terms (loss and activity), not on the penalty: 1 for a
    full-batch fit, ``N / B`` for a mini-batch of a sum-reduced loss."""


class Objective:
    """Compiled functions of one model for one set of trainable parameters.

    Attributes:
        raw_value: the un-jitted ``value(theta, base, data, hyper)``, for optimizers
            that compile whole loops around it.
        value: ``value(theta, base, data, hyper) -> scalar``.
        value_and_grad: fused value and gradient (one pass).
        value_and_grad_packed: the same as one vector ``[value, *gradient]``, for the
            host (one device-to-host copy per evaluation instead of two), and ``theta``
            as the device array the call made of it.
        hvp: ``hvp(theta, vector, base, data, hyper)``, forward-over-reverse.
        hessian: dense Hessian (only built when a method asks for it).
        cache: a dict where optimizers keep compiled loops built on this objective.
    """

    def __init__(
        self,
        model: MiniMLModel,
        trainable: np.ndarray | None,
        static: tuple[Any, ...],
        chunk_size: int | None = None,
        reduction: str | None = None,
    ) -> None:
        self.trainable = trainable
        self.chunk_size = chunk_size
        # Optimizers keep their compiled loops here, so they share the objective's life.
        self.cache: dict[Any, Any] = {}
        if chunk_size is None:
            value = _objective_function(model, trainable, dict(static))
            grad = jax.grad(value)

            def hvp(theta: JXArray, vector: JXArray, *args: Any) -> JXArray:
                return jax.jvp(lambda t: grad(t, *args), (theta,), (vector,))[1]

            value_and_grad = jax.value_and_grad(value)
        else:
            assert reduction in ("sum", "mean")
            value, value_and_grad, hvp = chunked_functions(
                model, trainable, dict(static), reduction
            )
        self.raw_value: Callable[..., JXArray] = value
        self.value = jax.jit(value)
        self.value_and_grad = jax.jit(value_and_grad)

        def value_and_grad_packed(theta: JXArray, *args: Any) -> tuple[JXArray, JXArray]:
            # A device-to-host copy costs 15-40 µs, as much as evaluating a small
            # model, so SciPy's value and gradient travel together. Returning theta
            # costs ~1 µs and spares the fit a host-to-device copy of the final point
            # (0.1-0.3 ms, the transfer machinery being cold by then).
            value, grad = value_and_grad(theta, *args)
            return jnp.concatenate([value.reshape(1), grad]), theta

        self.value_and_grad_packed = jax.jit(value_and_grad_packed)
        self.hvp = jax.jit(hvp)
        self.hessian = jax.jit(jax.hessian(value))


def _objective_function(
    model: MiniMLModel, trainable: np.ndarray | None, static_kwargs: dict[str, Any]
) -> Callable[..., JXArray]:
    from miniml.model import PredictMode, split_kernel_output

    loss = model.loss_function
    assert loss is not None  # fit_model checks this before building an objective

    def value(theta: JXArray, base: JXArray | None, data: Any, hyper: Hyper) -> JXArray:
        buffer = theta if trainable is None else base.at[trainable].set(theta)  # type: ignore[union-attr]
        X, y = data
        with split_parameter_views(buffer, model):
            out = model._predict_kernel(
                X, buffer, rng_key=hyper.rng_key, mode=PredictMode.TRAIN, **static_kwargs
            )
            penalty = hyper.reg_lambda * model._regularization(buffer, hyper.reg_scales)
        y_pred, activity = split_kernel_output(out)
        data_term = loss(y, y_pred)
        if activity is not None:
            data_term = data_term + hyper.active_reg_lambda * activity
        total = hyper.data_scale * data_term + penalty
        return jnp.asarray(total, buffer.dtype).reshape(())

    return value


def objective_for(
    model: MiniMLModel,
    frozen: frozenset[str],
    static: tuple[Any, ...],
    chunk_size: int | None = None,
) -> Objective:
    """The cached `Objective` of ``model`` with the parameters in ``frozen`` fixed.

    With ``chunk_size`` the objective expects chunked data (see `miniml._chunked`).
    """
    key = ("objective", frozen, static, chunk_size)
    objective = model._compiled.get(key)
    if objective is None:
        trainable = None
        if frozen:
            trainable = np.concatenate(
                [
                    np.arange(p.offset, p.offset + p.size)
                    for name, p in model.params.items()
                    if name not in frozen
                ]
            )
        reduction = None
        if chunk_size is not None:
            reduction = reduction_of(model.loss_function, f"{type(model).__name__}.fit")
        objective = Objective(model, trainable, static, chunk_size, reduction)
        model._compiled[key] = objective
    return objective
