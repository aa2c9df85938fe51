"""Batched fitting: K independent fits of one model structure in one compiled call.

`fit_batched` fits K *members*, copies of a model with the same structure, each with its
own data, ``reg_lambda``, starting point, random key and (stochastic optimizers)
learning rate, by `jax.vmap` over the compiled L-BFGS loop (`miniml.optim.LBFGS`) or
over the compiled mini-batch epochs (`miniml.optim.Adam`, `SGD`, ...). Members share
the compiled program, so a second call with the same shapes compiles nothing.

Per-member data comes in one of three forms:

* stacked arrays: ``X`` of shape ``(K, n, ...)`` and ``y`` of shape ``(K, n, ...)``;
* shared data ``X`` ``(n, ...)``, ``y`` ``(n, ...)`` with ``rows``: integer indices
  ``(K, m)`` (member k fits ``X[rows[k]]``) or a boolean mask ``(K, n)``; masks with
  different counts per member (e.g. cross-validation folds of unequal size) are
  evaluated as masked sums over all n rows, so the loss needs a declared reduction;
* shared data with ``shared=True`` and no ``rows``: every member fits all of it
  (multi-start).

Cost, honestly: a batched loop runs until its *slowest* member stops. A member that has
converged keeps its parameters, counters and status (the vmapped loop selects its old
state), but its objective is still evaluated at every iteration of the batch, so K
members cost about K times one evaluation per iteration times the largest iteration
count. Batching pays when the members are small (one evaluation does not fill the
machine) and converge in similar numbers of iterations. On a CPU, an L-BFGS batch whose
data exceeds a few MiB runs in groups of members, one after the other, so that each
group's data stays in the caches (`miniml._batched_run.GROUP_BYTES`); a group then runs
until *its* slowest member stops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from miniml._batched_inputs import (
    WHERE,
    member_count,
    per_member_numbers,
    prepare_data,
    random_starts,
    seed_list_of,
    starts_of,
)
from miniml._batched_result import BatchedFitResult, MemberRuns, lbfgs_result, stochastic_result
from miniml._batched_run import (
    HYPER_AXES,
    exact_values,
    member_groups,
    run_lbfgs,
    run_stochastic,
)
from miniml.data import signature_of
from miniml.distributed import pad_members, padded_member_count, resolve_mesh, shard_members
from miniml.errors import MiniMLError
from miniml.loss import reduction_of
from miniml.objective import Hyper, objective_for
from miniml.optim.lbfgs import LBFGS
from miniml.optim.minibatch import plan_batches
from miniml.optim.stochastic import OptaxOptimizer, StochasticOptimizer
from miniml.predict import split_kwargs

if TYPE_CHECKING:
    from miniml.model import MiniMLModel

__all__ = ["BatchedFitResult", "fit_batched"]


def fit_batched(
    model: MiniMLModel,
    X: Any,
    y: Any,
    reg_lambda: Any = 1.0,
    optimizer: Any = None,
    *,
    rows: Any = None,
    shared: bool = False,
    x0: Any = None,
    seeds: Any = None,
    learning_rate: Any = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    shuffle: bool = True,
    active_reg_lambda: float = 1.0,
    predict_kwargs: dict[str, Any] | None = None,
    devices: Any = None,
) -> BatchedFitResult:
    """Fit K members of ``model``'s structure in one compiled, vmapped call.

    The number of members K comes from whichever per-member argument is given (stacked
    data, ``rows``, an array ``reg_lambda``, a 2-D ``x0``, ``seeds``, an array
    ``learning_rate``); all of them must agree. ``model`` itself is not changed: get
    member i with ``result.member(i)``.

    Args:
        model: the model whose structure every member shares. It must not override
            ``_pre_fit`` (parameters set from data would differ per member).
        X: stacked ``(K, n, ...)`` inputs, or one shared data set ``(n, ...)`` with
            ``rows`` or ``shared=True`` (see the module docstring). Tuples and dicts of
            arrays are accepted as in `MiniMLModel.fit`.
        y: targets laid out like ``X``.
        reg_lambda: a number, or an array ``(K,)`` of per-member strengths.
        optimizer: `LBFGS` (default ``LBFGS()``) or a stochastic optimizer
            (``Adam(lr=...)``, ``SGD(...)``, any optax transformation). SciPy methods
            run on the host and cannot be vmapped.
        rows: ``(K, m)`` integer indices or a ``(K, n)`` boolean mask into shared data.
        shared: with ``rows=None``, every member fits the whole shared ``(X, y)``.
        x0: starting parameter buffer(s): ``(model.size,)`` for all or
            ``(K, model.size)``. None starts from ``seeds`` (below) or, without seeds,
            from the model's current parameters.
        seeds: K ints. Member k's random key (forward pass, shuffling) comes from
            ``seeds[k]``, and, when ``x0`` is None, so does its starting point (the
            values ``model.randomize(seed=seeds[k])`` would draw).
        learning_rate: stochastic optimizers with a numeric learning rate: a number or
            an array ``(K,)`` that replaces the optimizer's learning rate per member.
        epochs: passes over the data, as in `MiniMLModel.fit` (stochastic optimizers).
        batch_size: mini-batch size, as in `MiniMLModel.fit` (stochastic optimizers).
        shuffle: reshuffle every epoch, as in `MiniMLModel.fit`.
        active_reg_lambda: weight of activity losses, shared by all members.
        predict_kwargs: static keyword arguments of the forward pass.
        devices: lay the members out over several devices (one process): a device
            count, a list of jax devices or a 1-D `jax.sharding.Mesh` with axis
            ``"data"``, as in `MiniMLModel.fit`. Each device runs its share of the
            members (K is padded to a multiple of the device count with copies of
            member 0, which are dropped); shared data is copied to every device. The
            results equal the single-device batch.

    Returns:
        A `BatchedFitResult`. Members that stop without converging issue one
        `ConvergenceWarning` for the batch (non-finite objectives a `NonFiniteWarning`).
    """
    opt, stochastic = _check_model_and_optimizer(model, optimizer)
    dtype = model.dtype
    if predict_kwargs is not None and not isinstance(predict_kwargs, dict):
        raise MiniMLError(f"{WHERE}: predict_kwargs must be a dict, got {predict_kwargs!r}.")
    if any(isinstance(v, jax.Array | np.ndarray) for v in (predict_kwargs or {}).values()):
        raise MiniMLError(
            f"{WHERE}: array-valued predict_kwargs are not supported; put per-sample arrays "
            "into X (a tuple or dict of arrays)."
        )
    _, static = split_kwargs(predict_kwargs or {}, WHERE)
    counts: dict[str, int] = {}
    prepared = prepare_data(X, y, rows, shared, dtype, counts)
    data, data_axes, mode, n_samples, first = prepared
    lambdas = per_member_numbers(reg_lambda, "reg_lambda", counts)
    seed_list = seed_list_of(seeds, counts)
    start = None if x0 is None else starts_of(x0, model, counts)
    rates = None
    if learning_rate is not None:
        if not stochastic:
            raise MiniMLError(
                f"{WHERE}: learning_rate applies to stochastic optimizers, but the optimizer "
                f"is {opt!r}. Drop learning_rate or use e.g. Adam(lr=...)."
            )
        rates = per_member_numbers(learning_rate, "learning_rate", counts, positive=True)
    n_members = member_count(counts)
    lambdas = np.broadcast_to(lambdas, (n_members,)).astype(dtype)
    if rates is not None:
        rates = np.broadcast_to(rates, (n_members,))
    if not stochastic:
        for option, value in (("epochs", epochs), ("batch_size", batch_size)):
            if value is not None:
                raise MiniMLError(
                    f"{WHERE}: {option} applies to stochastic optimizers; LBFGS always uses "
                    "each member's full data. Drop it, or use LBFGS(maxiter=...) to limit "
                    "iterations."
                )
    from miniml._fit_checks import (
        check_prediction_shape,
        check_strength,
        warn_if_zero_start_is_stuck,
    )
    from miniml.fitting import random_keys

    active = check_strength(active_reg_lambda, "active_reg_lambda", WHERE)
    check_prediction_shape(model, first[0], first[1], static, WHERE)
    zero_start = False
    if start is None:
        if seed_list is not None:
            start = random_starts(model, seed_list)
        else:
            model._require_bound("fit_batched")
            start = np.asarray(model.get_buffer(copy=False))
            zero_start = bool(vars(model).get("_miniml_zero_start", False))
    x_start = np.ascontiguousarray(np.broadcast_to(start, (n_members, model.size)), dtype)
    keys = random_keys(seed_list if seed_list is not None else [0] * n_members)
    hyper = Hyper(
        reg_lambda=jnp.asarray(lambdas),
        active_reg_lambda=jnp.asarray(active, dtype),
        reg_scales=jnp.asarray(model._reg_scales()),
        rng_key=keys,
        data_scale=jnp.asarray(1.0, dtype),
    )
    chunk = n_samples if mode == "masked" else None
    if mode == "masked":
        reduction_of(model.loss_function, WHERE)
    objective = objective_for(model, frozenset(), static, chunk)
    if zero_start:  # every member starts from the never-randomized model's zeros
        member_0 = hyper._replace(reg_lambda=hyper.reg_lambda[0], rng_key=hyper.rng_key[0])
        warn_if_zero_start_is_stuck(model, frozenset(), static, first, member_0, WHERE)
    mesh = resolve_mesh(devices, WHERE)
    if mesh is not None:
        n_padded = padded_member_count(n_members, mesh, WHERE)
        data, x_start, hyper, rates = shard_members(
            (data, x_start, hyper, rates), (data_axes, 0, HYPER_AXES, 0), n_padded, mesh
        )
    if not stochastic:
        assert isinstance(opt, LBFGS)
        groups = 1
        if mesh is None:
            groups = member_groups(n_members, data, data_axes, x_start, opt.memory_size)
            n_padded = -(-n_members // groups) * groups
            data, x_start, hyper = pad_members((data, x_start, hyper),
                                               (data_axes, 0, HYPER_AXES), n_padded)  # fmt: skip
        runs = run_lbfgs(opt, objective, x_start, data, data_axes, mode, hyper, groups)
        result = lbfgs_result(runs.first(n_members), lambdas, opt, groups)
    else:
        if mode == "masked":
            raise MiniMLError(
                f"{WHERE}: stochastic optimizers need the same number of rows for every "
                "member; the boolean rows select different counts. Use LBFGS, or pass "
                "equal-size index sets."
            )
        assert isinstance(opt, StochasticOptimizer)
        runs = _run_stochastic(opt, objective, x_start, data, data_axes, mode, hyper,
                               n_samples, rates, epochs, batch_size, shuffle, model)  # fmt: skip
        exact = exact_values(objective, runs.x, data, data_axes, mode, hyper)[:n_members]
        result = stochastic_result(runs.first(n_members), exact, lambdas, opt)
    result._model, result._static = model, static
    result._signature = signature_of(first[0])
    return result


def _check_model_and_optimizer(model: Any, optimizer: Any) -> tuple[Any, bool]:
    from miniml.model import MiniMLModel

    if not isinstance(model, MiniMLModel):
        raise MiniMLError(f"{WHERE}: model must be a MiniMLModel, got {type(model).__name__}.")
    model._require_initialized("fit_batched")
    if model.root is not model:
        raise MiniMLError(
            f"{WHERE}: this model is part of a {type(model.root).__name__}; batch the "
            "outermost model instead."
        )
    if model.loss_function is None or model.size == 0:
        raise MiniMLError(
            f"{WHERE}: the model needs a loss and at least one parameter to be fitted; "
            f"got loss={model.loss_function!r} and {model.size} parameters."
        )
    if type(model)._pre_fit is not MiniMLModel._pre_fit:
        raise MiniMLError(
            f"{WHERE}: {type(model).__name__} overrides _pre_fit, which sets parameters "
            "from the data; batched members would each need their own. Fit such models "
            "one at a time with model.fit."
        )
    import optax

    if optimizer is None:
        return LBFGS(), False
    if isinstance(optimizer, optax.GradientTransformation):
        optimizer = OptaxOptimizer(optimizer)
    if isinstance(optimizer, LBFGS):
        return optimizer, False
    if isinstance(optimizer, StochasticOptimizer):
        if optimizer.keep_state:
            raise MiniMLError(
                f"{WHERE}: keep_state=True is not supported for batched fits; every member "
                "starts with a fresh optimizer state. Build the optimizer without it."
            )
        return optimizer, True
    raise MiniMLError(
        f"{WHERE}: optimizer must be LBFGS(...) or a stochastic optimizer (Adam, SGD, an "
        f"optax transformation, ...), got {optimizer!r}. SciPy methods run on the host, "
        "one problem at a time; use optimizer=LBFGS() for a compiled L-BFGS."
    )


def _run_stochastic(
    opt: StochasticOptimizer, objective: Any, x_start: np.ndarray, data: Any, data_axes: Any,
    mode: str, hyper: Hyper, n_samples: int, rates: Any, epochs: Any, batch_size: Any,
    shuffle: Any, model: Any,
) -> MemberRuns:  # fmt: skip
    from miniml._fit_checks import fit_options

    options = fit_options(epochs, batch_size, shuffle, 0, n_samples, WHERE)
    n_members, dtype = x_start.shape[0], x_start.dtype
    program, values = opt._program(), opt._values(dtype)
    if rates is not None:
        if "learning_rate" not in values:
            raise MiniMLError(
                f"{WHERE}: learning_rate= replaces a numeric learning rate, but {opt!r} has a "
                "schedule or a fixed optax transformation; give it a float learning rate."
            )
        values = {**values, "learning_rate": rates}
    values = {k: np.ascontiguousarray(np.broadcast_to(np.asarray(v, dtype), (n_members,)))
              for k, v in values.items()}  # fmt: skip
    plan = plan_batches(n_samples, options.batch_size, options.shuffle)
    n_epochs, max_steps = opt._epoch_budget(options, plan.n_batches)
    tol, measure = opt._tolerance()
    if not plan.full:
        reduction = reduction_of(model.loss_function, WHERE)
        scale = plan.n_samples / plan.batch_size if reduction == "sum" else 1.0
        hyper = hyper._replace(data_scale=jnp.asarray(scale, dtype))
    return run_stochastic(objective, program, values, plan, tol, measure, n_epochs, max_steps,
                          x_start, data, data_axes, mode, hyper)  # fmt: skip
