r"""Learning-rate schedules: optax's schedules, checked and made comparable.

A schedule maps the optimizer's step count :math:`t = 0, 1, 2, \dots` (mini-batch
steps taken so far, not epochs) to a learning rate; step :math:`t` of an optimizer uses
:math:`v(t)`. Every function here returns a `Schedule`, a callable that evaluates the
optax schedule of the same name, so it works anywhere optax takes a schedule. Any other
callable ``step -> learning rate`` (an optax schedule, a lambda) is accepted wherever
MiniML takes a learning rate, too; it receives optax's int32 step count as is (optax's
own schedules then compute in float32), while a `Schedule` computes in the default
float dtype (float64 with JAX's 64-bit mode).

What `Schedule` adds to optax:

* arguments are checked when the schedule is built (optax silently turns a
  non-positive ``transition_steps`` into a constant schedule; MiniML raises);
* two schedules with the same kind and numbers compare equal, so optimizers that use
  equal schedules share one compiled training epoch. A schedule's numbers are part of
  the compiled program: a schedule with *different* numbers compiles the epoch once
  more (a float learning rate is traced and never does).

Closed forms (:math:`I` ``init_value``, :math:`E` ``end_value``, :math:`P`
``peak_value``, :math:`B` ``transition_begin``, :math:`T` the transition or decay
steps, :math:`W` ``warmup_steps``) are given in each function's docstring.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

from miniml.errors import MiniMLError

__all__ = [
    "Schedule",
    "constant_schedule",
    "cosine_decay_schedule",
    "exponential_decay",
    "linear_schedule",
    "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule",
]


class Schedule:
    """A step → value schedule backed by optax, equal to others with the same numbers.

    Args:
        kind: the optax schedule's name (``"cosine_decay_schedule"``, ...).
        factory: the optax function that builds it.
        **params: its arguments (Python numbers and bools only).
    """

    def __init__(self, kind: str, factory: Callable[..., Any], **params: Any) -> None:
        self.kind = kind
        self.params = dict(params)
        self._fn = factory(**params)

    def __call__(self, step: Any) -> Any:
        """The value at step ``step`` (an int or an integer array).

        An integer array step (optax passes an int32 count) is converted to the default
        float dtype first, so the value is computed in float64 when JAX's 64-bit mode is
        on; optax's own schedules would compute ``count / steps`` in float32.
        """
        if not isinstance(step, int) and jnp.issubdtype(jnp.result_type(step), jnp.integer):
            step = jnp.asarray(step).astype(jnp.result_type(float))
        return self._fn(step)

    def _key(self) -> tuple[str, tuple[tuple[str, Any], ...]]:
        return self.kind, tuple(sorted(self.params.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.kind}({args})"


# ------------------------------------------------------------------------ checks
_EXAMPLES = {
    "value": "1e-3", "init_value": "1e-3", "peak_value": "1e-3", "end_value": "0.0",
    "alpha": "0.0", "exponent": "1.0", "decay_rate": "0.9", "transition_steps": "1000",
    "decay_steps": "1000", "transition_begin": "0", "warmup_steps": "100",
}  # fmt: skip


def _fix(name: str) -> str:
    """How to fix a bad argument: an example value."""
    return f"Pass e.g. {name}={_EXAMPLES.get(name, '1.0')}."


def _number(value: Any, where: str, name: str, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise MiniMLError(f"{where}: {name} must be a finite number, got {value!r}. {_fix(name)}")
    number = float(value)
    if not math.isfinite(number):
        raise MiniMLError(f"{where}: {name} must be a finite number, got {value!r}. {_fix(name)}")
    if minimum is not None and number < minimum:
        raise MiniMLError(f"{where}: {name} must be >= {minimum}, got {value!r}. {_fix(name)}")
    return number


def _steps(value: Any, where: str, name: str, minimum: int = 1, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise MiniMLError(
            f"{where}: {name} must be an int >= {minimum} (a number of optimizer steps), "
            f"got {value!r}. {_fix(name)}{hint}"
        )
    return int(value)


def _flag(value: Any, where: str, name: str) -> bool:
    if not isinstance(value, bool):
        raise MiniMLError(
            f"{where}: {name} must be True or False, got {value!r}. Pass {name}=True or "
            f"{name}=False."
        )
    return value


def _decay_rate(value: Any, where: str) -> float:
    rate = _number(value, where, "decay_rate")
    if rate <= 0:
        effect = (
            "optax would silently return a constant schedule"
            if rate == 0
            else "a negative rate gives NaN or alternating signs"
        )
        raise MiniMLError(
            f"{where}: decay_rate must be > 0, got {value!r} ({effect}). Pass e.g. decay_rate=0.9."
        )
    return rate


# --------------------------------------------------------------------- schedules
def constant_schedule(value: float) -> Schedule:
    r""":math:`v(t) = c` with ``value`` :math:`c \ge 0` (`optax.constant_schedule`)."""
    where = "constant_schedule"
    return Schedule(where, optax.constant_schedule, value=_number(value, where, "value", 0.0))


def linear_schedule(
    init_value: float, end_value: float, transition_steps: int, transition_begin: int = 0
) -> Schedule:
    r"""Linear interpolation (`optax.linear_schedule`).

    .. math:: v(t) = I + (E - I)\,\frac{\min(\max(t - B, 0), T)}{T}

    with ``transition_steps`` :math:`T \ge 1`.
    """
    where = "linear_schedule"
    return Schedule(
        where,
        optax.linear_schedule,
        init_value=_number(init_value, where, "init_value", 0.0),
        end_value=_number(end_value, where, "end_value", 0.0),
        transition_steps=_steps(transition_steps, where, "transition_steps"),
        transition_begin=_steps(transition_begin, where, "transition_begin", 0),
    )


def exponential_decay(
    init_value: float,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: float | None = None,
) -> Schedule:
    r"""Exponential decay (`optax.exponential_decay`).

    .. math:: v(t) = \begin{cases} I & t \le B \\
              I\, r^{(t - B)/T} & t > B \end{cases}

    with ``decay_rate`` :math:`r > 0`; with ``staircase`` the exponent is
    :math:`\lfloor (t - B)/T \rfloor`. With ``end_value`` :math:`E` the value is
    :math:`\max(v, E)` for :math:`r < 1` (:math:`\min(v, E)` for :math:`r \ge 1`, as optax:
    with :math:`r = 1` and :math:`E < I` the value is :math:`E` at every step).
    """
    where = "exponential_decay"
    return Schedule(
        where,
        optax.exponential_decay,
        init_value=_number(init_value, where, "init_value", 0.0),
        transition_steps=_steps(transition_steps, where, "transition_steps"),
        decay_rate=_decay_rate(decay_rate, where),
        transition_begin=_steps(transition_begin, where, "transition_begin", 0),
        staircase=_flag(staircase, where, "staircase"),
        end_value=None if end_value is None else _number(end_value, where, "end_value", 0.0),
    )


def cosine_decay_schedule(
    init_value: float, decay_steps: int, alpha: float = 0.0, exponent: float = 1.0
) -> Schedule:
    r"""Cosine decay (`optax.cosine_decay_schedule`).

    .. math:: v(t) = I\left(\alpha + (1 - \alpha)\left[\tfrac12\left(1 +
              \cos\frac{\pi \min(t, T)}{T}\right)\right]^{p}\right)

    with ``decay_steps`` :math:`T`, floor fraction ``alpha`` :math:`\alpha` and
    ``exponent`` :math:`p`.
    """
    where = "cosine_decay_schedule"
    return Schedule(
        where,
        optax.cosine_decay_schedule,
        init_value=_number(init_value, where, "init_value", 0.0),
        decay_steps=_steps(decay_steps, where, "decay_steps"),
        alpha=_number(alpha, where, "alpha", 0.0),
        exponent=_number(exponent, where, "exponent", 0.0),
    )


def warmup_cosine_decay_schedule(
    init_value: float,
    peak_value: float,
    warmup_steps: int,
    decay_steps: int,
    end_value: float = 0.0,
    exponent: float = 1.0,
) -> Schedule:
    r"""Linear warm-up, then cosine decay (`optax.warmup_cosine_decay_schedule`).

    .. math:: v(t) = \begin{cases} I + (P - I)\,t/W & t < W \\
              E + (P - E)\left[\tfrac12\left(1 + \cos\frac{\pi \min(t - W, D)}{D}
              \right)\right]^{p} & t \ge W \end{cases}

    where :math:`D = T - W` and ``decay_steps`` :math:`T` counts the warm-up too
    (:math:`T > W`).
    """
    where = "warmup_cosine_decay_schedule"
    no_warmup = " For no warm-up use cosine_decay_schedule(peak_value, decay_steps, alpha)."
    warmup = _steps(warmup_steps, where, "warmup_steps", hint=no_warmup)
    total = _steps(decay_steps, where, "decay_steps")
    if total <= warmup:
        raise MiniMLError(
            f"{where}: decay_steps ({decay_steps}) counts the warm-up steps too, so it must "
            f"be larger than warmup_steps ({warmup_steps}). Pass e.g. "
            f"decay_steps={warmup + 1000}."
        )
    peak = _number(peak_value, where, "peak_value", 0.0)
    if peak == 0.0:
        raise MiniMLError(
            f"{where}: peak_value must be > 0, got {peak_value!r} (the schedule would be "
            "0 after the warm-up). Pass e.g. peak_value=1e-3."
        )
    return Schedule(
        where,
        optax.warmup_cosine_decay_schedule,
        init_value=_number(init_value, where, "init_value", 0.0),
        peak_value=peak,
        warmup_steps=warmup,
        decay_steps=total,
        end_value=_number(end_value, where, "end_value", 0.0),
        exponent=_number(exponent, where, "exponent", 0.0),
    )


def warmup_exponential_decay_schedule(
    init_value: float,
    peak_value: float,
    warmup_steps: int,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: float | None = None,
) -> Schedule:
    r"""Linear warm-up, then exponential decay (`optax.warmup_exponential_decay_schedule`).

    .. math:: v(t) = \begin{cases} I + (P - I)\,t/W & t < W \\
              P\, r^{(t - W - B)/T} & t \ge W \text{ (exponent taken as 0 while } t - W
              \le B) \end{cases}

    with the same ``staircase`` and ``end_value`` rules as `exponential_decay`.
    """
    where = "warmup_exponential_decay_schedule"
    return Schedule(
        where,
        optax.warmup_exponential_decay_schedule,
        init_value=_number(init_value, where, "init_value", 0.0),
        peak_value=_number(peak_value, where, "peak_value", 0.0),
        warmup_steps=_steps(
            warmup_steps,
            where,
            "warmup_steps",
            hint=" For no warm-up use exponential_decay(peak_value, transition_steps, ...).",
        ),
        transition_steps=_steps(transition_steps, where, "transition_steps"),
        decay_rate=_decay_rate(decay_rate, where),
        transition_begin=_steps(transition_begin, where, "transition_begin", 0),
        staircase=_flag(staircase, where, "staircase"),
        end_value=None if end_value is None else _number(end_value, where, "end_value", 0.0),
    )
