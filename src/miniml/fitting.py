"""The `fit` driver: validate the inputs, run the optimizer stages, assemble the result.

It owns the steps around the optimizers; each stage's `Problem` and write-back are a
`miniml._stage_runner.StageRunner`'s, the model owns structure and the forward pass,
and optimizers see only a `Problem`.
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from miniml._fit_checks import (
    check_callbacks,
    check_prediction_shape,
    check_strength,
    fit_options,
    frozen_names,
    resolve_stages,
    warn_if_zero_start_is_stuck,
)
from miniml._stage_runner import StageRunner
from miniml.data import as_data, signature_of, to_device
from miniml.distributed import check_equal_local_samples, check_shardable_samples, resolve_mesh
from miniml.errors import MiniMLError
from miniml.loss import reduction_of
from miniml.metrics import resolve_metrics
from miniml.monitor import FitMonitor, Validator, check_validation_freq
from miniml.objective import Hyper
from miniml.optim.base import FitResult, OptimizerResult
from miniml.predict import split_kwargs

if TYPE_CHECKING:
    from miniml.model import MiniMLModel

__all__ = ["FIT_OPTIONS", "fit_model"]


@functools.lru_cache(maxsize=64)
def _device_hyper(
    reg: float, active_reg: float, reg_scales: tuple[float, ...], seed: int, dtype: np.dtype
) -> Hyper:
    """A fit's `Hyper` values on the device, made once per set of values.

    As numpy values every compiled call would copy them to the device again (~10 µs
    per evaluation); jax arrays are immutable, so fits with equal values share them.
    """
    host: Any = np.asarray  # Hyper's fields are typed as what compiled code sees
    return jax.device_put(
        Hyper(
            reg_lambda=host(reg, dtype),
            active_reg_lambda=host(active_reg, dtype),
            reg_scales=host(reg_scales, dtype),
            rng_key=_random_key(seed),
            data_scale=host(1.0, dtype),
        )
    )


@functools.lru_cache(maxsize=64)
def _random_key(seed: int) -> Any:
    """``jax.random.key(seed)``, made once per seed (keys are immutable)."""
    return random_keys([seed])[0]


def random_keys(seeds: Any) -> Any:
    """``jax.random.key(s)`` for each seed ``s`` in [0, 2**63) (as fit checks).

    For the default threefry generator the key data of a seed is its high and low 32-bit
    words; wrapping them directly gives the same keys without compiling JAX's seeding
    program (~35 ms of a cold start) and without 64-bit integers on the device, so
    seeds >= 2**31 stay exact with JAX's 64-bit mode off.
    """
    values = np.asarray(seeds, np.uint64)
    impl = jax.config.jax_default_prng_impl  # type: ignore[attr-defined]  # not in stubs
    if impl == "threefry2x32":
        words = np.stack([values >> np.uint64(32), values & np.uint64(0xFFFFFFFF)], axis=-1)
        return jax.random.wrap_key_data(to_device(words.astype(np.uint32)), impl=impl)
    return jnp.stack([jax.random.key(int(s)) for s in values])


def fit_model(
    model: MiniMLModel,
    X: Any,
    y: Any,
    reg_lambda: float = 1.0,
    optimizer: Any = None,
    *,
    active_reg_lambda: float = 1.0,
    predict_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    epochs: int | None = None,
    batch_size: int | None = None,
    shuffle: bool = True,
    validation_data: tuple[Any, Any] | None = None,
    metrics: Any = None,
    validation_freq: int = 1,
    callbacks: Any = None,
    verbose: int | bool | None = None,
    stage_hook: Any = None,
    chunk_size: int | None = None,
    devices: Any = None,
) -> FitResult:
    """Fit ``model`` to ``(X, y)``; see `MiniMLModel.fit`.

    Keyword Args:
        active_reg_lambda: weight of the activity loss a forward pass may return in a
            `PredictKernelOutput`.
        predict_kwargs: extra static keyword arguments of the forward pass.
        seed: seeds shuffling and the random keys handed to the forward pass in
            training mode (on the SciPy path one key for the whole fit, so the objective
            is deterministic for line searches).
        epochs: passes over the data, for stochastic optimizers.
        batch_size: mini-batch size for stochastic optimizers; in a fit with only
            full-batch optimizers (SciPy, compiled L-BFGS) the chunk size of exact
            chunked evaluation, as in Kormos, unless ``chunk_size`` is given. In a
            staged fit with a stochastic stage it is that stage's mini-batch size only.
        chunk_size: evaluate the full-batch objective, gradient and Hessian-vector
            products exactly in chunks of this many samples, so that models whose
            activations do not fit in memory can still use L-BFGS.
        devices: data-parallel fitting for full-batch optimizers: a device count, a
            list of jax devices or a 1-D `jax.sharding.Mesh` with axis ``"data"``; the
            samples are sharded over them (see `miniml.distributed`).
        shuffle: reshuffle samples every epoch (stochastic optimizers).
        validation_data: ``(X_val, y_val)`` evaluated (in inference mode) every
            ``validation_freq`` iterations into the history's ``val_*`` columns.
        metrics: metric names or functions ``(y_true, y_pred) -> scalar`` for
            ``validation_data`` (see `miniml.metrics`).
        validation_freq: evaluate validation data every this many iterations/epochs.
        callbacks: `Callback` objects (e.g. `EarlyStopping`).
        verbose: progress bar: None shows it when stderr is a terminal, 0/False never,
            1/True always.
        stage_hook: for staged fits, ``hook(model, stage_index, previous_result)`` runs
            before every stage after the first and may return a set of parameter names
            to keep fixed in that stage (None keeps ``_pre_fit``'s choice).

    A list of optimizers runs as stages, each starting where the previous stopped,
    with one history labelled by stage. ``epochs`` and ``batch_size`` then apply to the
    stochastic stages. A KeyboardInterrupt ends the fit gracefully: the model keeps the
    last recorded finite parameters (or the best ones, with `EarlyStopping`), a
    warning is issued and the result has ``interrupted=True``.
    """
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
    stages = resolve_stages(optimizer, where)
    reg = check_strength(reg_lambda, "reg_lambda", where)
    active_reg = check_strength(active_reg_lambda, "active_reg_lambda", where)
    dtype = model.dtype
    X_data, n_x = as_data(X, "X", where, dtype)
    y_data, n_y = as_data(y, "y", where, dtype)
    if n_x != n_y:
        raise MiniMLError(
            f"{where}: X has {n_x} samples but y has {n_y}; X and y must have the same "
            "first dimension."
        )
    if any(isinstance(v, jax.Array | np.ndarray) for v in (predict_kwargs or {}).values()):
        raise MiniMLError(
            f"{where}: array-valued predict_kwargs are not supported in fit; put per-sample "
            "arrays into X (a tuple or dict of arrays)."
        )
    _, static = split_kwargs(predict_kwargs or {}, where)
    options = fit_options(epochs, batch_size, shuffle, seed, n_x, where)
    stochastic = [getattr(opt, "stochastic", False) for _, opt in stages]
    if len(stages) > 1 and epochs is not None and not any(stochastic):
        raise MiniMLError(
            f"{where}: epochs applies to stochastic optimizers, and none of the stages is "
            "stochastic; use options={'maxiter': ...} on SciPy stages."
        )
    if chunk_size is not None and (
        not isinstance(chunk_size, int | np.integer) or isinstance(chunk_size, bool)
        or chunk_size < 1
    ):  # fmt: skip
        raise MiniMLError(
            f"{where}: chunk_size must be a positive int, got {chunk_size!r}; pass e.g. "
            "chunk_size=1024, or None to evaluate all samples at once."
        )
    if chunk_size is not None and all(stochastic):
        raise MiniMLError(
            f"{where}: chunk_size applies to full-batch optimizers (SciPy, LBFGS), and every "
            f"stage here is stochastic, got chunk_size={chunk_size!r}; drop it (batch_size "
            "sets the mini-batch size), or add a full-batch stage that uses it."
        )
    callback_list = check_callbacks(callbacks, where)
    freq = check_validation_freq(validation_freq, where)
    if metrics is not None and not (
        isinstance(metrics, str | list | tuple) or callable(metrics)
    ):  # fmt: skip
        raise MiniMLError(
            f"{where}: metrics must be a metric name, a callable (y_true, y_pred) -> scalar "
            f"or a list of them, got {metrics!r}; pass e.g. metrics=['mse']."
        )
    metric_functions = resolve_metrics(metrics, where)
    if metric_functions and validation_data is None:
        raise MiniMLError(
            f"{where}: metrics are computed on validation_data, which was not given; pass "
            "validation_data=(X_val, y_val)."
        )
    if stage_hook is not None and not callable(stage_hook):
        raise MiniMLError(f"{where}: stage_hook must be callable, got {stage_hook!r}.")
    model.bind()
    frozen = frozen_names(model, model._pre_fit(X_data, y_data), where)
    check_prediction_shape(model, X_data, y_data, static, where)
    validator = None
    if validation_data is not None:
        validator = _validator(model, validation_data, metric_functions, static, where)
    hyper = _device_hyper(reg, active_reg, tuple(model._reg_scales().tolist()), int(seed), dtype)
    if vars(model).get("_miniml_zero_start", False):
        warn_if_zero_start_is_stuck(model, frozen, static, (X_data, y_data), hyper, where)
    reduction = getattr(model.loss_function, "reduction", None)
    mesh = resolve_mesh(devices, where)
    if mesh is not None and any(stochastic):  # batched-fitting worker: stochastic + devices
        check_shardable_samples(n_x, mesh, where)
    if mesh is not None:
        reduction_of(model.loss_function, where)  # sharded evaluation needs the reduction
        check_equal_local_samples(n_x, where)
    run = StageRunner(model, static, (X_data, y_data), hyper, n_x,
                      reduction if reduction in ("sum", "mean") else None, mesh)  # fmt: skip
    monitor = FitMonitor(model, callback_list, validator, freq, verbose)
    results: list[tuple[str, OptimizerResult]] = []
    interrupted = False
    monitor.begin()
    try:
        for index, (label, stage_optimizer) in enumerate(stages):
            if index > 0 and stage_hook is not None:
                chosen = stage_hook(model, index, results[-1][1])
                if chosen is not None:
                    frozen = frozen_names(model, chosen, where)
            stage_options, chunk = options, None
            if not stochastic[index]:
                # batch_size chunks a full-batch stage only when no stage uses it
                # as a mini-batch size (Kormos' convention for full-batch fits).
                chunk = chunk_size if chunk_size is not None or any(stochastic) else batch_size
                keep_epochs = options.epochs if len(stages) == 1 else None
                stage_options = replace(options, epochs=keep_epochs, batch_size=None)
            outcome = run(label, stage_optimizer, frozen, stage_options, monitor, chunk)
            results.append((label, outcome))
            if monitor.state.stop_reason is not None:
                break
    except KeyboardInterrupt:
        interrupted = True
        if monitor.last_buffer is not None:
            model.set_buffer(monitor.last_buffer)
        interrupted_stage = _interrupted_stage(monitor, results)
        if interrupted_stage is not None:
            results.append(interrupted_stage)
    finally:
        monitor.end()
    return _result(model, run, results, monitor, interrupted, len(stages), where)


def _interrupted_stage(
    monitor: FitMonitor, results: list[tuple[str, OptimizerResult]]
) -> tuple[str, OptimizerResult] | None:
    """The stage a KeyboardInterrupt ended, as far as it reported, so that the result's
    stages and counts agree with the history; None if it ended between stages."""
    if monitor.ended_stage is None:
        return None
    label, iterations, evaluations, hessian_products = monitor.ended_stage
    if any(done == label for done, _ in results):
        return None
    return label, OptimizerResult(
        x=None,  # the model keeps the last recorded iterate
        fun=math.nan,
        success=False,
        message=f"interrupted after {iterations} recorded iterations",
        n_iterations=iterations,
        n_function_evaluations=evaluations,
        n_jacobian_evaluations=evaluations,
        n_hessian_evaluations=hessian_products,
    )


def _validator(
    model: MiniMLModel, validation_data: Any, metrics: dict[str, Any], static: tuple, where: str
) -> Validator:
    if not isinstance(validation_data, tuple | list) or len(validation_data) != 2:
        raise MiniMLError(
            f"{where}: validation_data must be a pair (X_val, y_val), got "
            f"{type(validation_data).__name__}."
        )
    X_val, n_val = as_data(validation_data[0], "X_val", where, model.dtype)
    y_val, n_val_y = as_data(validation_data[1], "y_val", where, model.dtype)
    if n_val != n_val_y:
        raise MiniMLError(
            f"{where}: X_val has {n_val} samples but y_val has {n_val_y}; they must match."
        )
    check_prediction_shape(model, X_val, y_val, static, where)
    return Validator(model, X_val, y_val, metrics, static, where)


def _result(
    model: MiniMLModel,
    run: StageRunner,
    results: list[tuple[str, OptimizerResult]],
    monitor: FitMonitor,
    interrupted: bool,
    n_stages: int,
    where: str,
) -> FitResult:
    state = monitor.state
    if state.restore_buffer is not None:
        model.set_buffer(state.restore_buffer)
    X_data = run.data[0]
    model._miniml_input_signature = signature_of(X_data)
    last = results[-1][1] if results else None
    if last is None or interrupted or state.restore_buffer is not None:
        objective_value = run.objective_at(model.get_buffer(copy=False))
    else:
        objective_value = last.fun
    messages = [f"{label}: {outcome.message}" for label, outcome in results]
    if state.stop_reason:
        messages.append(state.stop_reason)
    if state.restore_reason:
        messages.append(state.restore_reason)
    if interrupted:
        messages.append("interrupted by KeyboardInterrupt")
        warnings.warn(
            f"{where}: interrupted by KeyboardInterrupt; the model keeps the last recorded "
            "finite parameters (or the best ones, with EarlyStopping).",
            UserWarning,
            stacklevel=3,
        )
    all_ran = len(results) == n_stages and state.stop_reason is None
    return FitResult(
        success=bool(last is not None and last.success and all_ran and not interrupted),
        message="; ".join(messages),
        objective_value=float(objective_value),
        n_iterations=sum(o.n_iterations for _, o in results),
        n_function_evaluations=sum(o.n_function_evaluations for _, o in results),
        n_jacobian_evaluations=sum(o.n_jacobian_evaluations for _, o in results),
        n_hessian_evaluations=sum(o.n_hessian_evaluations for _, o in results),
        x_opt=model.get_buffer(copy=False),  # jax arrays are immutable: no copy needed
        status=last.status if last is not None else None,
        optimizer=" -> ".join(label for label, _ in results),
        history=monitor.history,
        stages=[label for label, _ in results],
        stop_reason=state.stop_reason,
        interrupted=interrupted,
    )


FIT_OPTIONS = frozenset(
    name
    for name, parameter in inspect.signature(fit_model).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
)
"""The keyword-only options of `fit_model`, i.e. of `MiniMLModel.fit`."""
