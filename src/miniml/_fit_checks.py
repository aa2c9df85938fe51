"""Checks of `fit`'s arguments at the public boundary, before anything is traced.

Shared by `miniml.fitting.fit_model`, `miniml.batched.fit_batched` and the PyTorch-style
loop; each check raises a `MiniMLError` that names the caller (``where``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from miniml.callbacks import Callback
from miniml.data import describe
from miniml.errors import MiniMLError
from miniml.objective import Hyper, objective_for
from miniml.optim.base import FitOptions, MiniMLOptimizer

if TYPE_CHECKING:
    from miniml.model import MiniMLModel

__all__ = [
    "check_callbacks",
    "check_prediction_shape",
    "check_strength",
    "fit_options",
    "frozen_names",
    "resolve_stages",
    "warn_if_zero_start_is_stuck",
]


def check_strength(value: Any, name: str, where: str) -> float:
    if isinstance(value, str | bytes | bool):  # float("1") and float(True) would pass
        raise MiniMLError(f"{where}: {name} must be a number, got {value!r}; e.g. {name}=0.1.")
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise MiniMLError(
            f"{where}: {name} must be a number, got {value!r}; e.g. {name}=0.1."
        ) from err
    if not math.isfinite(number) or number < 0:
        raise MiniMLError(f"{where}: {name} must be finite and >= 0, got {value!r}.")
    return number


def frozen_names(model: MiniMLModel, returned: Any, where: str) -> frozenset[str]:
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


def check_prediction_shape(
    model: MiniMLModel, data: Any, y: Any, static: tuple, where: str
) -> None:
    """Trace the forward pass abstractly to give shape errors a clear message.

    The traced output shape is kept per input shape, so that repeated fits of the same
    shapes skip the trace (it costs milliseconds, as much as a small fit).
    """
    from miniml.model import PredictMode, split_kernel_output

    X = data
    leaves, treedef = jax.tree.flatten(X)
    key = ("prediction_shape", treedef, tuple((x.shape, x.dtype) for x in leaves), static)
    pred = model._compiled.get(key)
    if pred is None:

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
        model._compiled[key] = pred
    validate = getattr(model.loss_function, "validate", None)
    if callable(validate) and hasattr(pred, "shape"):
        validate(y, tuple(pred.shape), where)
    _check_scalar_loss(model, y, pred, key, where)


def _check_scalar_loss(model: MiniMLModel, y: Any, pred: Any, key: Any, where: str) -> None:
    """A loss that returns an array (e.g. unreduced squared errors) would fail deep in
    the objective with a reshape error; say so here, once per shape."""
    loss = model.loss_function
    y_leaves = jax.tree.leaves(y)
    if loss is None:
        return
    loss_key = ("loss_shape", key, tuple((leaf.shape, leaf.dtype) for leaf in y_leaves))
    if loss_key in model._compiled:
        return
    y_like = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), y)
    try:
        value = jax.eval_shape(loss, y_like, pred)
    except Exception:  # the loss's own errors surface, as before, when the fit traces it
        return
    shape = getattr(value, "shape", None)
    if shape is not None and math.prod(shape) != 1:  # one element reshapes to a scalar
        name = getattr(loss, "__name__", type(loss).__name__)
        raise MiniMLError(
            f"{where}: the loss {name} returned an array of shape {shape} for targets like "
            f"{describe(y)}; a loss must return a scalar (a 0-d array). Reduce it, e.g. "
            "jnp.sum((y_pred - y_true) ** 2) or jnp.mean(...)."
        )
    model._compiled[loss_key] = True


def fit_options(
    epochs: Any, batch_size: Any, shuffle: Any, seed: Any, n_samples: int, where: str
) -> FitOptions:
    if epochs is not None and (
        isinstance(epochs, bool) or not isinstance(epochs, int | np.integer) or epochs < 1
    ):
        raise MiniMLError(
            f"{where}: epochs must be a positive int (passes over the data), got {epochs!r}; "
            "pass e.g. epochs=10, or None for the optimizer's default."
        )
    if batch_size is not None:
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, int | np.integer)
            or batch_size < 1
        ):
            raise MiniMLError(
                f"{where}: batch_size must be a positive int, got {batch_size!r}; pass e.g. "
                f"batch_size={min(32, n_samples)}, or None for full batches."
            )
        if batch_size > n_samples:
            raise MiniMLError(
                f"{where}: batch_size={batch_size} is larger than the {n_samples} samples; "
                f"use batch_size <= {n_samples} (or None for full batches)."
            )
    if not isinstance(shuffle, bool):
        raise MiniMLError(
            f"{where}: shuffle must be True or False, got {shuffle!r}; pass shuffle=False to "
            "walk the samples in order."
        )
    if (
        isinstance(seed, bool) or not isinstance(seed, int | np.integer)
        or not 0 <= seed < 2**63
    ):  # fmt: skip
        raise MiniMLError(
            f"{where}: seed must be an int in [0, 2**63), got {seed!r}; pass e.g. seed=0."
        )
    return FitOptions(
        epochs=None if epochs is None else int(epochs),
        batch_size=None if batch_size is None else int(batch_size),
        shuffle=shuffle,
        seed=int(seed),
    )


def resolve_stages(optimizer: Any, where: str) -> list[tuple[str, MiniMLOptimizer]]:
    """One optimizer, a SciPy method name, or a list of them (a staged fit)."""
    import optax

    from miniml.optim.scipy import ScipyOptimizer
    from miniml.optim.stochastic import OptaxOptimizer

    # An optax transformation is a NamedTuple: one optimizer, not a list of stages.
    is_stages = isinstance(optimizer, list | tuple) and not isinstance(
        optimizer, optax.GradientTransformation
    )
    items = list(optimizer) if is_stages else [optimizer]
    if not items:
        raise MiniMLError(f"{where}: optimizer is an empty list; give at least one stage.")
    stages: list[tuple[str, MiniMLOptimizer]] = []
    for item in items:
        if item is None:
            item = ScipyOptimizer()
        elif isinstance(item, str):
            item = ScipyOptimizer(item)
        elif isinstance(item, optax.GradientTransformation):
            item = OptaxOptimizer(item)  # any optax transformation is an optimizer
        if not isinstance(item, MiniMLOptimizer):
            raise MiniMLError(
                f"{where}: optimizer must be a MiniMLOptimizer (e.g. ScipyOptimizer(...) or "
                f"Adam(...)), a SciPy method name, or a list of them; got {item!r}."
            )
        stages.append((item.name, item))
    labels = [label for label, _ in stages]
    return [
        (f"{label}#{labels[:i].count(label) + 1}" if labels.count(label) > 1 else label, opt)
        for i, (label, opt) in enumerate(stages)
    ]


def check_callbacks(callbacks: Any, where: str) -> list[Callback]:
    if callbacks is None:
        return []
    items = [callbacks] if isinstance(callbacks, Callback) else list(callbacks)
    for item in items:
        if not isinstance(item, Callback):
            raise MiniMLError(
                f"{where}: callbacks must be Callback objects (subclass miniml.callbacks."
                f"Callback or use LambdaCallback), got {item!r}."
            )
    return items


def warn_if_zero_start_is_stuck(
    model: MiniMLModel, frozen: frozenset[str], static: tuple, data: Any, hyper: Hyper,
    where: str,
) -> None:  # fmt: skip
    """Warn when the all-zero start of a never-randomized model gives some parameter
    tensors an exactly zero gradient (e.g. the symmetric start of a neural network)."""
    buffer = model.get_buffer(copy=False)
    if bool(jnp.any(buffer != 0)):
        return
    objective = objective_for(model, frozenset(), static)
    _, grad = objective.value_and_grad(buffer, None, data, hyper)
    stuck = [
        name for name, p in model.params.items()
        if name not in frozen and p.size > 1 and not bool(jnp.any(p(grad) != 0))
    ]  # fmt: skip
    if stuck:
        warnings.warn(
            f"{where}: the model was never randomized and starts from all zeros, where "
            f"the parameters {stuck} have an exactly zero gradient, so gradient-based "
            "optimizers may never move them. Call model.randomize(seed=...) before fit.",
            UserWarning,
            stacklevel=3,
        )
