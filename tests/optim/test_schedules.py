"""Learning-rate schedules: closed forms, checks, and the learning rate an optimizer sees."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from miniml.errors import MiniMLError
from miniml.optim import (
    SGD,
    Adam,
    Schedule,
    constant_schedule,
    cosine_decay_schedule,
    exponential_decay,
    linear_schedule,
    warmup_cosine_decay_schedule,
    warmup_exponential_decay_schedule,
)
from tests.models import LinearModel

STEPS = np.arange(0, 40)


def _cosine(t, init, steps, alpha=0.0, exponent=1.0):
    t = min(t, steps)
    return init * (alpha + (1 - alpha) * (0.5 * (1 + math.cos(math.pi * t / steps))) ** exponent)


def _exponential(t, init, steps, rate, begin=0, staircase=False, end=None):
    if t - begin <= 0:
        value = init
    else:
        p = (t - begin) / steps
        value = init * rate ** (math.floor(p) if staircase else p)
    if end is not None:
        value = max(value, end) if rate < 1 else min(value, end)
    return value


CLOSED_FORMS = {
    "constant": (constant_schedule(0.3), lambda t: 0.3),
    "linear": (
        linear_schedule(1.0, 0.1, transition_steps=10, transition_begin=5),
        lambda t: 1.0 + (0.1 - 1.0) * min(max(t - 5, 0), 10) / 10,
    ),
    "exponential": (
        exponential_decay(0.5, transition_steps=7, decay_rate=0.8, transition_begin=3),
        lambda t: _exponential(t, 0.5, 7, 0.8, 3),
    ),
    "exponential_staircase_floor": (
        exponential_decay(0.5, 4, 0.5, staircase=True, end_value=0.05),
        lambda t: _exponential(t, 0.5, 4, 0.5, staircase=True, end=0.05),
    ),
    "cosine": (
        cosine_decay_schedule(0.2, decay_steps=25, alpha=0.1, exponent=2.0),
        lambda t: _cosine(t, 0.2, 25, 0.1, 2.0),
    ),
    "warmup_cosine": (
        warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=5, decay_steps=30, end_value=0.1),
        lambda t: t / 5 if t < 5 else 0.1 + (1.0 - 0.1) * 0.5 * (
            1 + math.cos(math.pi * min(t - 5, 25) / 25)),
    ),
    "warmup_exponential": (
        warmup_exponential_decay_schedule(0.01, 1.0, warmup_steps=4, transition_steps=3,
                                          decay_rate=0.7),
        lambda t: 0.01 + (1.0 - 0.01) * t / 4 if t < 4 else _exponential(t - 4, 1.0, 3, 0.7),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CLOSED_FORMS))
def test_schedule_equals_its_closed_form(name):
    schedule, closed_form = CLOSED_FORMS[name]
    values = np.array([float(schedule(int(t))) for t in STEPS])
    expected = np.array([closed_form(int(t)) for t in STEPS])
    np.testing.assert_allclose(values, expected, rtol=1e-12, atol=1e-15)


def test_equal_schedules_compare_equal_and_hash_alike():
    a, b = cosine_decay_schedule(0.1, 100), cosine_decay_schedule(0.1, 100)
    assert a == b and hash(a) == hash(b) and isinstance(a, Schedule)
    assert a != cosine_decay_schedule(0.2, 100)
    assert (
        repr(a) == "cosine_decay_schedule(init_value=0.1, decay_steps=100, alpha=0.0, exponent=1.0)"
    )


def _updates_for_unit_gradients(optimizer, n_steps):
    """SGD's update for a gradient of ones is -lr: the learning rate of every step."""
    tx = optimizer.transformation()
    params = np.zeros(2)
    state = tx.init(params)
    rates = []
    for _ in range(n_steps):
        updates, state = tx.update(np.ones(2), state, params)
        rates.append(-float(updates[0]))
    return np.array(rates)


@pytest.mark.parametrize(
    ("schedule", "rtol"),
    [
        (linear_schedule(0.5, 0.05, transition_steps=8), 1e-12),
        # Other callables get optax's int32 step count, and optax's schedules then compute
        # in float32: equal to about 1e-7.
        (optax.exponential_decay(0.3, transition_steps=2, decay_rate=0.5), 1e-6),
        (lambda step: 0.1 / (1.0 + step), 1e-6),
    ],
)
def test_a_schedule_changes_the_learning_rate_step_by_step(schedule, rtol):
    rates = _updates_for_unit_gradients(SGD(lr=schedule), 12)
    expected = np.array([float(schedule(t)) for t in range(12)])
    np.testing.assert_allclose(rates, expected, rtol=rtol)
    assert len(np.unique(rates)) > 5


def test_fit_reports_the_scheduled_learning_rate_per_epoch():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = X @ rng.normal(size=(3, 2))
    model = LinearModel(3, 2)
    model.randomize(seed=0)
    schedule = linear_schedule(1e-2, 1e-3, transition_steps=12)
    result = model.fit(X, y, optimizer=Adam(lr=schedule), epochs=4, batch_size=10)
    # 4 steps per epoch; the record shows the rate of the epoch's last step.
    expected = [float(schedule(4 * epoch - 1)) for epoch in (1, 2, 3, 4)]
    np.testing.assert_allclose(result.history.column("learning_rate"), expected, rtol=1e-12)


def test_new_float_learning_rate_compiles_nothing_but_new_schedule_numbers_do(
    count_compilations,
):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(32, 3))
    y = X @ rng.normal(size=(3, 2))
    model = LinearModel(3, 2)
    model.randomize(seed=0)
    model.fit(X, y, optimizer=SGD(lr=1e-3), epochs=1, batch_size=8)
    model.fit(X, y, optimizer=SGD(lr=exponential_decay(1e-2, 5, 0.5)), epochs=1, batch_size=8)
    with count_compilations() as same:
        model.fit(X, y, optimizer=SGD(lr=5e-2), epochs=1, batch_size=8)
        model.fit(X, y, optimizer=SGD(lr=exponential_decay(1e-2, 5, 0.5)), epochs=1, batch_size=8)
    assert same.n == 0
    with count_compilations() as other:
        model.fit(X, y, optimizer=SGD(lr=exponential_decay(2e-2, 5, 0.5)), epochs=1, batch_size=8)
    assert other.n > 0


# ------------------------------------------------------ QA: messages and callables
BAD_SCHEDULE_ARGUMENTS = {
    # case: (make, expected "function: argument ... got value" fragments)
    "transition_steps-0": (
        lambda: linear_schedule(1.0, 0.0, transition_steps=0),
        ("linear_schedule: transition_steps", "got 0", "transition_steps must be an int"),
    ),
    "transition_begin-negative": (
        lambda: linear_schedule(1.0, 0.0, 5, transition_begin=-1),
        ("linear_schedule: transition_begin", "got -1"),
    ),
    "end_value-negative": (
        lambda: linear_schedule(1.0, -1.0, 5),
        ("linear_schedule: end_value", "got -1.0"),
    ),
    "init_value-string": (
        lambda: linear_schedule("1", 0.0, 5),
        ("linear_schedule: init_value", "got '1'"),
    ),
    "decay_steps-float": (
        lambda: cosine_decay_schedule(1.0, 10.5),
        ("cosine_decay_schedule: decay_steps", "got 10.5", "decay_steps must be an int >= 1"),
    ),
    "alpha-negative": (
        lambda: cosine_decay_schedule(1.0, 10, alpha=-0.1),
        ("cosine_decay_schedule: alpha", "got -0.1"),
    ),
    "value-inf": (
        lambda: constant_schedule(float("inf")),
        ("constant_schedule: value", "got inf", "value must be a finite number"),
    ),
    "staircase-int": (
        lambda: exponential_decay(1.0, 10, 0.5, staircase=1),
        ("exponential_decay: staircase", "got 1", "staircase must be True or False"),
    ),
    "decay_rate-0": (
        lambda: exponential_decay(1.0, 10, decay_rate=0.0),
        ("exponential_decay: decay_rate must be > 0", "got 0.0"),
    ),
    "init_value-negative": (
        lambda: cosine_decay_schedule(-1.0, 10),
        ("cosine_decay_schedule: init_value must be >= 0.0", "got -1.0"),
    ),
    "decay_rate-negative": (
        lambda: exponential_decay(1.0, 10, decay_rate=-0.5),
        ("exponential_decay: decay_rate", "got -0.5"),
    ),
    "warmup_steps-0": (
        lambda: warmup_cosine_decay_schedule(0.0, 1.0, 0, 10),
        ("warmup_cosine_decay_schedule: warmup_steps", "got 0"),
    ),
    "decay_steps-not-above-warmup": (
        lambda: warmup_cosine_decay_schedule(0.0, 1.0, 10, 10),
        (
            "warmup_cosine_decay_schedule: decay_steps (10)",
            "warmup_steps (10)",
            "larger than warmup_steps",
        ),
    ),
    "peak_value-0": (
        lambda: warmup_cosine_decay_schedule(0.0, 0.0, 2, 10),
        ("warmup_cosine_decay_schedule: peak_value", "got 0.0"),
    ),
    "exp-warmup_steps-0": (
        lambda: warmup_exponential_decay_schedule(0.0, 1.0, 0, 10, 0.5),
        ("warmup_exponential_decay_schedule: warmup_steps", "got 0"),
    ),
}


@pytest.mark.parametrize("case", list(BAD_SCHEDULE_ARGUMENTS))
def test_bad_schedule_arguments_say_how_to_fix_them(case):
    """Like the optimizers' checks: who complained, which argument, its value, a fix."""
    make, fragments = BAD_SCHEDULE_ARGUMENTS[case]
    with pytest.raises(MiniMLError) as info:
        make()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert "Pass " in message, message


def test_an_unhashable_schedule_is_refused_when_the_optimizer_is_built():
    class Unhashable:  # __eq__ without __hash__: compiled epochs cannot be keyed by it
        def __eq__(self, other):
            return self is other

        def __call__(self, step):
            return 0.1

    with pytest.raises(MiniMLError, match=r"SGD: the schedule passed as lr is not hashable"):
        SGD(lr=Unhashable())


def test_negative_decay_rate_message_says_what_optax_would_do():
    # optax: 0 gives a constant schedule, a negative rate gives NaN (not a constant).
    assert math.isnan(float(optax.exponential_decay(1.0, 10, -0.5)(5)))
    with pytest.raises(MiniMLError) as info:
        exponential_decay(1.0, 10, decay_rate=-0.5)
    assert "constant schedule" not in str(info.value)
    assert "got -0.5" in str(info.value)


def _optax_rates(schedule, n_steps):
    """The learning rates optax's compiled SGD applies: the update for unit gradients."""
    tx = optax.sgd(schedule)
    update = jax.jit(tx.update)
    state, rates = tx.init(np.zeros(2)), []
    for _ in range(n_steps):
        updates, state = update(np.ones(2), state)
        rates.append(-float(updates[0]))
    return np.array(rates)


def test_a_schedule_using_array_methods_on_the_count_is_accepted_as_optax_accepts_it():
    """optax passes an int32 array count, so ``count.astype`` is valid in a schedule."""

    def schedule(count):
        return 0.2 * 0.5 ** (count // 3).astype(jnp.float64)

    expected = _optax_rates(schedule, 10)
    np.testing.assert_allclose(_updates_for_unit_gradients(SGD(lr=schedule), 10), expected,
                               rtol=1e-12)  # fmt: skip
    assert len(np.unique(expected)) == 4


def test_a_schedule_jax_cannot_trace_is_refused_when_the_optimizer_is_built():
    """A Python ``if`` on the step works for step 0 but not in optax's compiled step."""

    def schedule(step):
        return 0.1 if step < 3 else 0.01

    with pytest.raises(jax.errors.TracerBoolConversionError):
        _optax_rates(schedule, 1)
    with pytest.raises(MiniMLError) as info:
        SGD(lr=schedule)
    message = str(info.value)
    assert "SGD: the schedule passed as lr cannot be traced by JAX" in message
    assert "jnp.where" in message and "pass a miniml.optim schedule" in message
