r"""The update rules of MiniML's stochastic optimizers, as optax gradient transformations.

Every rule is a chain of optax building blocks (`optax.add_decayed_weights`,
`optax.scale_by_adam`, `optax.trace`, ...); none needs a custom transformation. The
factories take their hyper-parameters as arguments, which may be traced scalars: the
compiled epochs build the rule inside the trace from the optimizer's values, so a new
learning rate compiles nothing. A learning rate may also be a schedule
(``step -> value``), applied with `optax.scale_by_schedule`.

Notation (the seed's): :math:`\theta` parameters, :math:`g_t` the gradient at step
:math:`t`, :math:`\alpha` the learning rate, :math:`\lambda` the weight decay.
Weight decay of the PyTorch-style classes is coupled (L2): the rules below use
:math:`\tilde g_t = g_t + \lambda\theta_{t-1}` in place of :math:`g_t`, which for
plain SGD is exactly the seed's :math:`\theta_t = (1-\alpha\lambda)\theta_{t-1} -
\alpha g_t`.

This module also holds the constructor-time checks of hyper-parameters, so every
class rejects bad values before anything is traced.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import weakref
from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax

from miniml.errors import MiniMLError

__all__ = [
    "adagrad_rule",
    "adam_rule",
    "adamw_rule",
    "check_argument_name",
    "check_flag",
    "check_learning_rate",
    "check_nonnegative",
    "check_positive_int",
    "check_unit_interval",
    "nadam_rule",
    "paper_adamw_rule",
    "rmsprop_rule",
    "sgd_rule",
]

LearningRate = float | Callable[[Any], Any]


# ------------------------------------------------------------------------- rules
def sgd_rule(
    learning_rate: Any, momentum: Any, weight_decay: Any, nesterov: bool = False
) -> optax.GradientTransformation:
    r"""SGD with the seed's momentum :math:`v_t = \mu v_{t-1} + (1-\mu)\tilde g_t`.

    :math:`\theta_t = \theta_{t-1} - \alpha v_t`, or with ``nesterov``
    :math:`\theta_t = \theta_{t-1} - \alpha(\mu v_t + (1-\mu)\tilde g_t)`. Built as
    ``scale(1 - μ)`` followed by `optax.trace` (whose accumulator is
    :math:`v = g + \mu v`): scaling first gives the seed's (1−μ) convention.
    """
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.scale(1.0 - momentum),
        optax.trace(decay=momentum, nesterov=nesterov),
        optax.scale_by_learning_rate(learning_rate),
    )


def adagrad_rule(learning_rate: Any, weight_decay: Any, eps: Any) -> optax.GradientTransformation:
    r"""AdaGrad: :math:`G_t = G_{t-1} + \tilde g_t^2`, :math:`\theta_t = \theta_{t-1} -
    \alpha \tilde g_t / \sqrt{G_t + \epsilon}` (`optax.scale_by_rss`, :math:`G_0 = 0`)."""
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_rss(initial_accumulator_value=0.0, eps=eps),
        optax.scale_by_learning_rate(learning_rate),
    )


def rmsprop_rule(
    learning_rate: Any, weight_decay: Any, eps: Any, rho: Any
) -> optax.GradientTransformation:
    r"""RMSProp: :math:`c_t = \rho c_{t-1} + (1-\rho)\tilde g_t^2`, :math:`\theta_t =
    \theta_{t-1} - \alpha \tilde g_t / \sqrt{c_t + \epsilon}` (`optax.scale_by_rms`,
    :math:`c_0 = 0`, ε inside the root, no bias correction)."""
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_rms(decay=rho, eps=eps, initial_scale=0.0, eps_in_sqrt=True),
        optax.scale_by_learning_rate(learning_rate),
    )


def adam_rule(
    learning_rate: Any, b1: Any, b2: Any, eps: Any, weight_decay: Any
) -> optax.GradientTransformation:
    r"""Adam with coupled (L2) weight decay, bias correction by the step count.

    :math:`m_t = \beta_1 m_{t-1} + (1-\beta_1)\tilde g_t`, :math:`v_t = \beta_2 v_{t-1}
    + (1-\beta_2)\tilde g_t^2`, :math:`\hat m_t = m_t/(1-\beta_1^t)`, :math:`\hat v_t =
    v_t/(1-\beta_2^t)`, :math:`\theta_t = \theta_{t-1} - \alpha\hat m_t/(\sqrt{\hat
    v_t}+\epsilon)`.
    """
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=0.0),
        optax.scale_by_learning_rate(learning_rate),
    )


def nadam_rule(
    learning_rate: Any, b1: Any, b2: Any, eps: Any, weight_decay: Any
) -> optax.GradientTransformation:
    r"""NAdam (Dozat 2016, as `optax.nadam`): Adam with the Nesterov first moment
    :math:`\hat m_t = \beta_1 m_t/(1-\beta_1^{t+1}) + (1-\beta_1)\tilde g_t/(1-\beta_1^t)`."""
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=0.0, nesterov=True),
        optax.scale_by_learning_rate(learning_rate),
    )


def adamw_rule(
    learning_rate: Any, b1: Any, b2: Any, eps: Any, weight_decay: Any
) -> optax.GradientTransformation:
    r"""AdamW as torch and optax write it: :math:`\theta_t = \theta_{t-1} -
    \alpha\left(\hat m_t/(\sqrt{\hat v_t}+\epsilon) + \lambda\theta_{t-1}\right)`
    (the decay is multiplied by the learning rate; moments use the raw gradient)."""
    return optax.chain(
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=0.0),
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_learning_rate(learning_rate),
    )


def paper_adamw_rule(
    learning_rate: Any, b1: Any, b2: Any, eps: Any, weight_decay: Any
) -> optax.GradientTransformation:
    r"""AdamW as Loshchilov & Hutter (η = 1) and MiniML's ``AdamWOptimizer`` write it:
    :math:`\theta_t = \theta_{t-1} - \left(\alpha\hat m_t/(\sqrt{\hat v_t}+\epsilon) +
    \lambda\theta_{t-1}\right)` (the decay is *not* multiplied by the learning rate)."""
    step = (
        optax.scale_by_schedule(learning_rate)
        if callable(learning_rate)
        else optax.scale(learning_rate)
    )
    return optax.chain(
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=0.0),
        step,
        optax.add_decayed_weights(weight_decay),
        optax.scale(-1.0),
    )


# ------------------------------------------------------------------------ checks
def _as_float(value: Any, owner: str, name: str, expected: str, fix: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise MiniMLError(f"{owner}: {name} must be {expected}, got {value!r}. {fix}")
    number = float(value)
    if not math.isfinite(number):
        raise MiniMLError(f"{owner}: {name} must be {expected}, got {value!r}. {fix}")
    return number


def check_nonnegative(value: Any, owner: str, name: str) -> float:
    """A finite float >= 0 (weight decay, eps, momentum-like factors)."""
    number = _as_float(value, owner, name, "a finite number >= 0", f"Pass e.g. {name}=0.0.")
    if number < 0:
        raise MiniMLError(
            f"{owner}: {name} must be >= 0, got {value!r}. Pass a non-negative value, "
            f"e.g. {name}=0.0."
        )
    return number


def check_unit_interval(value: Any, owner: str, name: str) -> float:
    """A decay rate in [0, 1) (β₁, β₂, ρ, momentum)."""
    number = _as_float(value, owner, name, "a number in [0, 1)", f"Pass e.g. {name}=0.9.")
    if not 0.0 <= number < 1.0:
        raise MiniMLError(
            f"{owner}: {name} must lie in [0, 1), got {value!r}; a decay rate of 1 or more "
            f"never forgets and a negative one oscillates. Pass e.g. {name}=0.9."
        )
    return number


def check_positive_int(value: Any, owner: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise MiniMLError(
            f"{owner}: {name} must be a positive int, got {value!r}. Pass e.g. {name}=100."
        )
    return int(value)


def check_flag(value: Any, owner: str, name: str) -> bool:
    if not isinstance(value, bool):
        raise MiniMLError(
            f"{owner}: {name} must be True or False, got {value!r}. Pass {name}=True or "
            f"{name}=False."
        )
    return value


def check_learning_rate(value: Any, owner: str, name: str) -> LearningRate:
    """A finite float >= 0, or a schedule ``step -> learning rate`` (checked at step 0).

    A float is traced (a new value compiles nothing); a schedule is part of the compiled
    program (see `miniml.optim.schedules`). A schedule is checked the way optax calls
    it inside a compiled step: traced, with an int32 step count. So a schedule that
    only works on Python ints (``if step < 10``) is refused here rather than failing
    inside the first fit or ``step()``, and one that uses array methods on the count
    (``count.astype(float)``) is accepted.
    """
    if callable(value):
        if _passed_check(value):
            return value
        try:
            hash(value)
        except TypeError as err:
            raise MiniMLError(
                f"{owner}: the schedule passed as {name} is not hashable; MiniML keys its "
                "compiled epochs by it. Pass a function or a miniml.optim schedule, e.g. "
                f"{name}=miniml.optim.cosine_decay_schedule(1e-3, 1000)."
            ) from err
        try:
            first = np.asarray(_schedule_at_step_zero(value))
        except _NOT_TRACEABLE as err:
            reason = str(err).splitlines()[0] if str(err) else ""
            raise MiniMLError(
                f"{owner}: the schedule passed as {name} cannot be traced by JAX: it is "
                "called inside compiled code with a traced int32 step count, and it failed "
                f"with {type(err).__name__}: {reason} Write it with jax.numpy (jnp.where "
                "instead of if/else, jnp.minimum instead of min), or pass a miniml.optim "
                f"schedule, e.g. {name}=miniml.optim.exponential_decay(1e-3, 100, 0.5, "
                "staircase=True)."
            ) from err
        except Exception as err:
            raise MiniMLError(
                f"{owner}: {name} is callable, so it must be a schedule step -> learning "
                f"rate, but calling it with step 0 failed: {type(err).__name__}: {err}. Pass "
                "a function of one argument, e.g. miniml.optim.cosine_decay_schedule(1e-3, 1000)."
            ) from err
        if first.shape != () or first.dtype.kind not in "iuf" or not np.isfinite(first):
            raise MiniMLError(
                f"{owner}: the schedule passed as {name} must return a finite scalar, but "
                f"at step 0 it returned {first!r}. Pass a schedule step -> float, e.g. "
                "miniml.optim.cosine_decay_schedule(1e-3, 1000)."
            )
        if first < 0:
            raise MiniMLError(
                f"{owner}: the schedule passed as {name} returns {float(first)} at step 0; "
                "a learning rate must be >= 0. Pass a schedule of non-negative values."
            )
        with contextlib.suppress(TypeError):  # not weakly referable: checked every time
            _CHECKED_SCHEDULES.add(value)
        return value
    number = _as_float(
        value,
        owner,
        name,
        "a finite number >= 0 or a schedule (a callable step -> learning rate)",
        f"Pass e.g. {name}=1e-3 or {name}=miniml.optim.cosine_decay_schedule(1e-3, 1000).",
    )
    if number < 0:
        raise MiniMLError(
            f"{owner}: {name} must be >= 0, got {value!r}; a negative learning rate climbs "
            f"the loss. Pass e.g. {name}={abs(number)!r}."
        )
    return number


# Schedules that passed: every fit and every step() checks its arguments, and a
# schedule's value at step 0 cannot change (it is a function of the step only).
_CHECKED_SCHEDULES: weakref.WeakSet[Any] = weakref.WeakSet()


def _passed_check(schedule: Any) -> bool:
    try:
        return schedule in _CHECKED_SCHEDULES
    except TypeError:  # unhashable or not weakly referable
        return False


_NOT_TRACEABLE = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerIntegerConversionError,
)


def _schedule_at_step_zero(schedule: Callable[[Any], Any]) -> Any:
    """The schedule's value at step 0, traced with an int32 count as optax calls it.

    Runs once per schedule (`_CHECKED_SCHEDULES` remembers those that passed), except
    for callables that cannot be weakly referenced (e.g. a NumPy ufunc): every time.
    """
    with jax.ensure_compile_time_eval():  # concrete even when called inside a trace
        return jax.jit(lambda count: schedule(count))(jnp.zeros((), jnp.int32))


# torch.optim arguments that MiniML's classes spell differently: name -> MiniML's names.
_TORCH_SPELLINGS = {"betas": ("beta1", "beta2"), "alpha": ("rho",), "weight_decay": ("wd",)}


@functools.cache
def _accepted_arguments(cls: type) -> tuple[str, ...]:
    init = inspect.signature(cast(Any, cls).__init__)  # cls itself would show __new__'s
    return tuple(name for name in init.parameters if name != "self")


def check_argument_name(cls: type, name: str, value: Any) -> None:
    """Refuse a constructor argument ``cls`` does not take, naming MiniML's spelling of a
    torch.optim name (``betas`` -> ``beta1``, ``beta2``) or the accepted arguments."""
    accepted = _accepted_arguments(cls)
    if name in accepted:
        return
    where, listing = cls.__name__, ", ".join(accepted)
    spelled = [n for n in _TORCH_SPELLINGS.get(name, ()) if n in accepted]
    if spelled:
        raise MiniMLError(
            f"{where}: got {name}={value!r}, torch.optim's name; MiniML's {where} calls it "
            f"{' and '.join(spelled)}: pass e.g. {_example(spelled)}."
        )
    raise MiniMLError(
        f"{where}: got an unknown argument {name}={value!r}; {where} takes {listing} "
        "(options of torch.optim that MiniML does not offer, e.g. amsgrad, dampening, "
        "centered or lr_decay, are refused, not ignored)."
    )


def _example(names: list[str]) -> str:
    defaults = {"beta1": "0.9", "beta2": "0.999", "rho": "0.9", "wd": "1e-4"}
    return ", ".join(f"{n}={defaults[n]}" for n in names)
