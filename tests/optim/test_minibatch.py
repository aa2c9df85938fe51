"""The compiled mini-batch driver behind ``fit(..., optimizer=<stochastic>)``."""

from __future__ import annotations

import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.datasets import load_digits, make_regression
from sklearn.model_selection import train_test_split

from miniml import MiniMLModel, MiniMLParam, PredictMode
from miniml.callbacks import LambdaCallback
from miniml.errors import ConvergenceWarning, MiniMLError, NonFiniteWarning
from miniml.loss import CrossEntropyLogLoss, mean_squared_error_loss
from miniml.optim import (
    SGD,
    Adam,
    AdamOptimizer,
    OptaxOptimizer,
    RMSProp,
    ScipyOptimizer,
    cosine_decay_schedule,
)
from tests.models import LinearModel

LSQ_OPTIMUM = 10105.859508383426  # the lecture's least-squares loss


class LinearRegression(MiniMLModel):
    """The lecture's ``X @ beta`` with MiniML's default sum-of-squares loss."""

    def __init__(self, k: int) -> None:
        self.beta = MiniMLParam((k,))
        super().__init__()

    def _predict_kernel(self, X, buffer):
        return X @ self.beta(buffer)


class MLP(MiniMLModel):
    """64-100-10 tanh network returning logits."""

    def __init__(self) -> None:
        self.W1 = MiniMLParam((64, 100), rnd_scale=1 / 8)
        self.b1 = MiniMLParam((100,), rnd_scale=0.0)
        self.W2 = MiniMLParam((100, 10), rnd_scale=0.1)
        self.b2 = MiniMLParam((10,), rnd_scale=0.0)
        super().__init__(loss=CrossEntropyLogLoss(expect_labels=True))

    def _predict_kernel(self, X, buffer):
        hidden = jnp.tanh(X @ self.W1(buffer) + self.b1(buffer))
        return hidden @ self.W2(buffer) + self.b2(buffer)


@pytest.fixture(scope="module")
def lecture_data():
    X, y = make_regression(n_samples=10000, n_features=20, n_informative=4, bias=3, noise=1,
                           random_state=1234)  # fmt: skip
    return np.c_[np.ones(len(y)), X], y


# ------------------------------------------------- acceptance 2: the lecture
def test_full_batch_sgd_is_plain_gradient_descent(lecture_data):
    X, y = lecture_data
    model = LinearRegression(X.shape[1])
    model.bind()  # zeros, as in the lecture
    result = model.fit(X, y, optimizer=SGD(lr=1e-5), epochs=30)
    beta = np.zeros(X.shape[1])
    for _ in range(30):
        beta = beta - 1e-5 * (-2.0 * X.T @ (y - X @ beta))
    np.testing.assert_allclose(np.asarray(model.beta.value), beta, rtol=1e-10)
    assert result.success and result.n_iterations == 30
    # The lecture's torch loop prints the loss before step 30 and after step 30.
    assert result.history[-1]["loss"] == pytest.approx(10244.764879521514, rel=1e-10)
    assert result.objective_value == pytest.approx(10195.133454434466, rel=1e-10)
    assert [r["learning_rate"] for r in result.history] == [1e-5] * 30


def test_lbfgs_reaches_the_least_squares_optimum(lecture_data):
    X, y = lecture_data
    model = LinearRegression(X.shape[1])
    model.bind()
    result = model.fit(X, y, optimizer=ScipyOptimizer("L-BFGS-B"))
    assert result.success
    assert result.objective_value == pytest.approx(LSQ_OPTIMUM, rel=1e-9)


# -------------------------------------------- acceptance 4: digits MLP, Adam
def test_digits_mlp_with_minibatch_adam_reaches_96_percent():
    digits = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(
        digits.data / 16.0, digits.target, test_size=0.25, random_state=0,
        stratify=digits.target,
    )  # fmt: skip
    model = MLP()
    model.randomize(seed=0)
    result = model.fit(X_train, y_train, reg_lambda=0.0, optimizer=Adam(lr=1e-3), epochs=60,
                       batch_size=64, seed=1)  # fmt: skip
    assert result.success and len(result.history) == 60
    assert result.n_iterations == 60 * (len(X_train) // 64)
    accuracy = np.mean(np.argmax(np.asarray(model.predict(X_test)), axis=1) == y_test)
    assert accuracy >= 0.96


# ------------------------------------------- acceptance 5: no recompilation
def test_second_fit_with_new_data_compiles_nothing(count_compilations):
    rng = np.random.default_rng(0)

    def data():
        X = rng.normal(size=(96, 3))
        return X, X @ rng.normal(size=(3, 2))

    model = LinearModel(3, 2)
    model.randomize(seed=0)
    model.fit(*data(), optimizer=Adam(lr=1e-2), epochs=2, batch_size=16, seed=0)
    model.fit(*data(), optimizer=SGD(lr=cosine_decay_schedule(0.1, 50)), epochs=1,
              batch_size=16)  # fmt: skip
    X2, y2 = data()
    before = model.get_buffer()
    with count_compilations() as counted:
        # New data, learning rate, betas, seed, epoch count, schedule object and reg_lambda.
        model.fit(X2, y2, reg_lambda=0.5, optimizer=Adam(lr=3e-3, beta1=0.8), epochs=3,
                  batch_size=16, seed=7)  # fmt: skip
        model.fit(X2, y2, optimizer=SGD(lr=cosine_decay_schedule(0.1, 50)), epochs=2,
                  batch_size=16)  # fmt: skip
    assert counted.n == 0
    assert not np.allclose(model.get_buffer(), before)
    with count_compilations() as counted:
        model.fit(X2, y2, optimizer=Adam(lr=1e-2), epochs=1, batch_size=32)
    assert counted.n > 0  # a new batch size is a new program: the counter does count


# -------------------------------------------------- the batch-loss convention
class _Sums(NamedTuple):
    total: jax.Array
    count: jax.Array


def _gradient_recorder() -> optax.GradientTransformation:
    """Adds up the gradients it sees and never moves the parameters."""

    def init(params):
        return _Sums(jnp.zeros_like(params), jnp.zeros((), jnp.int32))

    def update(grads, state, params=None):
        return jnp.zeros_like(grads), _Sums(state.total + grads, state.count + 1)

    return optax.GradientTransformation(init, update)


@pytest.mark.parametrize("loss", ["sum", "mean"])
def test_minibatch_gradients_average_to_the_full_gradient(loss):
    rng = np.random.default_rng(1)
    n, reg = 120, 0.3
    X, y = rng.normal(size=(n, 3)), rng.normal(size=(n, 2))
    model = LinearModel(3, 2, loss=mean_squared_error_loss) if loss == "mean" else LinearModel(3, 2)
    model.randomize(seed=2)
    W, b = np.asarray(model.W.value), np.asarray(model.b.value)
    optimizer = OptaxOptimizer(_gradient_recorder(), keep_state=True)
    model.fit(X, y, reg_lambda=reg, optimizer=optimizer, epochs=1, batch_size=20)
    assert int(optimizer.state.count) == n // 20
    mean_grad = np.asarray(optimizer.state.total) / int(optimizer.state.count)
    residual = y - X @ W - b
    scale = 2.0 if loss == "sum" else 2.0 / residual.size
    grad_W = -scale * X.T @ residual + 2 * reg * W  # penalty counted once
    grad_b = -scale * residual.sum(axis=0)
    np.testing.assert_allclose(mean_grad, np.concatenate([grad_W.ravel(), grad_b]), rtol=1e-10)


def test_minibatches_need_a_declared_reduction():
    def plain_loss(y_true, y_pred):
        return jnp.sum((y_true - y_pred) ** 2)

    model = LinearModel(3, 1, loss=plain_loss)
    model.randomize(seed=0)
    X = np.ones((10, 3))
    with pytest.raises(MiniMLError, match="sums or averages over samples"):
        model.fit(X, np.ones((10, 1)), optimizer=SGD(), batch_size=5)
    model.fit(X, np.ones((10, 1)), optimizer=SGD(), batch_size=None)  # full batch is fine


# ------------------------------------------------------ randomness per step
class NoisyScale(MiniMLModel):
    """``b * u`` with ``u ~ U(0, 1)`` drawn from the training key (dropout-like)."""

    def __init__(self) -> None:
        self.b = MiniMLParam((1,))
        super().__init__()

    def _predict_kernel(self, X, buffer, rng_key=None, mode=PredictMode.INFERENCE):
        u = 1.0 if mode is PredictMode.INFERENCE else jax.random.uniform(rng_key, (), X.dtype)
        return X[:, :1] * self.b(buffer) * u


class _Log(NamedTuple):
    grads: jax.Array
    count: jax.Array


def _gradient_log(n_steps: int) -> optax.GradientTransformation:
    def init(params):
        return _Log(jnp.zeros((n_steps,), params.dtype), jnp.zeros((), jnp.int32))

    def update(grads, state, params=None):
        return jnp.zeros_like(grads), _Log(state.grads.at[state.count].set(grads[0]),
                                           state.count + 1)  # fmt: skip

    return optax.GradientTransformation(init, update)


def test_each_step_gets_its_own_random_key():
    model = NoisyScale()
    model.bind()
    model.set_params({"b": np.ones(1)})
    X, y = np.ones((40, 1)), np.zeros((40, 1))
    optimizer = OptaxOptimizer(_gradient_log(12), keep_state=True)
    model.fit(X, y, optimizer=optimizer, epochs=3, batch_size=10, shuffle=False, seed=3)
    grads = np.asarray(optimizer.state.grads)
    # d/db sum((b u)^2) over 10 rows, times N/B = 4: 80 u^2 with u drawn per step.
    assert np.all((grads > 0) & (grads < 80))
    assert len(np.unique(grads)) == 12  # 3 epochs x 4 steps, all different keys


# ------------------------------------------------------- non-finite steps
def test_diverging_steps_are_rejected_and_parameters_stay_finite():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    y = X @ np.array([[1.0], [2.0], [3.0]])
    model = LinearModel(3, 1)
    model.randomize(seed=0)
    start = model.get_buffer()
    with pytest.warns(NonFiniteWarning):
        result = model.fit(X, y, reg_lambda=0.0, optimizer=SGD(lr=1e200), epochs=5)
    assert not result.success
    assert "rejected" in result.message
    assert np.all(np.isfinite(model.get_buffer()))
    # The first step lands at |w| ~ 1e200, whose squared norm overflows: the epoch is
    # undone and the model keeps the start.
    np.testing.assert_array_equal(model.get_buffer(), start)
    assert len(result.history) == 0


def test_a_rejected_batch_does_not_stop_the_epoch():
    """A loss that is infinite on one batch only: that step is skipped, the rest run."""

    class LogModel(MiniMLModel):
        def __init__(self) -> None:
            self.w = MiniMLParam((1,))
            super().__init__()

        def _predict_kernel(self, X, buffer):
            return jnp.log(X) * self.w(buffer)  # log(0) = -inf on the zero rows

    X = np.r_[np.zeros((10, 1)), np.full((30, 1), 2.0)]
    model = LogModel()
    model.bind()
    with pytest.warns(NonFiniteWarning):
        result = model.fit(X, np.ones((40, 1)), optimizer=SGD(lr=1e-3), epochs=1, batch_size=10,
                           shuffle=False)  # fmt: skip
    assert "1 step(s) were rejected" in result.message
    assert result.n_iterations == 3 and not result.success
    assert np.isfinite(model.get_buffer()).all() and model.get_buffer()[0] > 0


def test_an_epoch_that_ends_with_non_finite_parameters_is_undone():
    """RMSProp with eps=0 divides 0 by 0 for a coordinate whose gradient is always 0."""
    rng = np.random.default_rng(1)
    X = np.c_[rng.normal(size=40), np.zeros(40)]
    y = X[:, :1] * 2.0
    model = LinearModel(2, 1)
    model.randomize(seed=0)
    start = model.get_buffer()
    with pytest.warns(NonFiniteWarning, match="non-finite parameters or optimizer state"):
        result = model.fit(X, y, reg_lambda=0.0, optimizer=RMSProp(lr=1e-2, eps=0.0), epochs=3,
                           batch_size=10)  # fmt: skip
    assert not result.success and len(result.history) == 0
    np.testing.assert_array_equal(model.get_buffer(), start)
    model.fit(X, y, reg_lambda=0.0, optimizer=RMSProp(lr=1e-2, eps=1e-8), epochs=3,
              batch_size=10)  # fmt: skip


# ---------------------------------------------------- warm restart on request
def _regression(seed=0, n=64):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, X @ rng.normal(size=(3, 2)) + 0.1 * rng.normal(size=(n, 2))


def test_keep_state_continues_and_plain_optimizers_restart():
    X, y = _regression()
    one = LinearModel(3, 2)
    one.randomize(seed=0)
    one.fit(X, y, optimizer=Adam(lr=0.05), epochs=5, batch_size=16, shuffle=False)
    kept, optimizer = LinearModel(3, 2), Adam(lr=0.05, keep_state=True)
    kept.randomize(seed=0)
    kept.fit(X, y, optimizer=optimizer, epochs=2, batch_size=16, shuffle=False)
    kept.fit(X, y, optimizer=optimizer, epochs=3, batch_size=16, shuffle=False)
    np.testing.assert_allclose(kept.get_buffer(), one.get_buffer(), rtol=1e-12)
    fresh, plain = LinearModel(3, 2), Adam(lr=0.05)
    fresh.randomize(seed=0)
    fresh.fit(X, y, optimizer=plain, epochs=2, batch_size=16, shuffle=False)
    fresh.fit(X, y, optimizer=plain, epochs=3, batch_size=16, shuffle=False)
    assert plain.state is None
    assert not np.allclose(fresh.get_buffer(), one.get_buffer(), rtol=1e-6)


def test_kept_state_is_never_used_for_another_model():
    X, y = _regression()
    optimizer = SGD(lr=1e-2, momentum=0.9, keep_state=True)
    first = LinearModel(3, 2)
    first.randomize(seed=0)
    first.fit(X, y, optimizer=optimizer, epochs=1)
    other = LinearModel(3, 2)
    other.randomize(seed=0)
    with pytest.raises(MiniMLError, match="never shared between unrelated fits"):
        other.fit(X, y, optimizer=optimizer, epochs=1)
    optimizer.reset_state()
    other.fit(X, y, optimizer=optimizer, epochs=1)


# --------------------------------------------------------- other behaviours
def test_a_raw_optax_transformation_is_an_optimizer():
    X, y = _regression(1)
    raw, wrapped = LinearModel(3, 2), LinearModel(3, 2)
    for model in (raw, wrapped):
        model.randomize(seed=0)
    result = raw.fit(X, y, optimizer=optax.sgd(1e-3), epochs=3, batch_size=16)
    wrapped.fit(X, y, optimizer=SGD(lr=1e-3), epochs=3, batch_size=16)
    np.testing.assert_allclose(raw.get_buffer(), wrapped.get_buffer(), rtol=1e-12)
    assert result.history.column("learning_rate") == [None] * 3  # nothing to read it from
    injected = optax.inject_hyperparams(optax.adam)(learning_rate=0.02)
    result = raw.fit(X, y, optimizer=injected, epochs=2)
    assert result.history.column("learning_rate") == [0.02, 0.02]


def test_optax_transformations_with_extra_arguments_get_the_batch_objective():
    """``reduce_on_plateau`` reads ``value=``: the fit matches optax driven by hand with
    the objective of each (full-batch) step, and the plateau did lower the scale."""
    X, y = _regression(3)
    model = LinearModel(3, 2)
    model.randomize(seed=0)
    theta = np.asarray(model.get_buffer())

    def objective(theta):  # sum of squared errors, W (3, 2) row-major, then b
        return jnp.sum((X @ theta[:6].reshape(3, 2) + theta[6:] - y) ** 2)

    def transformation():
        return optax.chain(optax.sgd(2e-3), optax.contrib.reduce_on_plateau(patience=2))

    tx = transformation()

    @jax.jit
    def step(theta, state):
        value, grad = jax.value_and_grad(objective)(theta)
        updates, state = tx.update(grad, state, theta, value=value)
        return optax.apply_updates(theta, updates), state

    state = tx.init(theta)
    for _ in range(40):
        theta, state = step(theta, state)
    assert float(state[1].scale) < 1.0  # the plateau rule acted
    model.fit(X, y, reg_lambda=0.0, optimizer=transformation(), epochs=40)
    np.testing.assert_allclose(model.get_buffer(), theta, rtol=1e-12)


def test_optax_transformations_that_need_the_objective_function_are_refused():
    X, y = _regression(3)
    model = LinearModel(3, 2)
    model.randomize(seed=0)
    start = np.asarray(model.get_buffer())
    with pytest.raises(MiniMLError, match=r"fit: the optax transformation needs more.*value_fn"):
        model.fit(X, y, optimizer=optax.lbfgs(), epochs=2, batch_size=16)
    np.testing.assert_array_equal(model.get_buffer(), start)


def test_rejections_before_the_last_epoch_are_not_counted_in_it():
    """SGD with lr=1 diverges: a few steps are rejected in one epoch, and every step of
    the next, which ends the fit; the message splits the count accordingly."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 2))
    model = LinearModel(2, 1, bias=False)
    model.randomize(seed=0)
    with pytest.warns(NonFiniteWarning):
        result = model.fit(X, X @ np.array([[1.0], [-2.0]]), reg_lambda=0.0,
                           optimizer=SGD(lr=1.0), epochs=50, batch_size=3)  # fmt: skip
    assert "6 step(s) were rejected" in result.message
    assert "(4 of them in the last epoch, which had no accepted step" in result.message


def test_miniml_adam_stops_at_its_tolerance():
    X, y = _regression(2)
    model = LinearModel(3, 2)
    model.randomize(seed=0)
    result = model.fit(X, y, reg_lambda=0.0, optimizer=AdamOptimizer(alpha=0.05, tol=1e-3))
    assert result.success and "converged" in result.message
    assert 1 < result.n_iterations < 1000
    assert len(result.history) == result.n_iterations  # full batch: one step per epoch
    model.randomize(seed=0)
    with pytest.warns(ConvergenceWarning, match="tol=1e-12 was not reached within maxiter=20 step"):
        result = model.fit(X, y, optimizer=AdamOptimizer(alpha=0.05, tol=1e-12, maxiter=20))
    assert not result.success and result.n_iterations == 20


def test_maxiter_caps_steps_across_minibatch_epochs():
    X, y = _regression(3, n=100)
    model = LinearModel(3, 2)
    model.randomize(seed=0)
    result = model.fit(X, y, optimizer=AdamOptimizer(maxiter=7), batch_size=25)
    assert result.n_iterations == 7 and len(result.history) == 2  # 4 + 3 steps
    assert "maxiter=7" in result.message


def test_a_callback_stops_after_an_epoch_with_that_epochs_parameters():
    X, y = _regression(4)
    seen = []

    def on_iteration_end(state, record):
        seen.append(np.asarray(state.buffer))
        return record["iteration"] == 3

    model = LinearModel(3, 2)
    model.randomize(seed=0)
    result = model.fit(X, y, optimizer=SGD(lr=1e-3), epochs=10, batch_size=16,
                       callbacks=[LambdaCallback(on_iteration_end=on_iteration_end)])  # fmt: skip
    assert len(result.history) == 3 and not result.success
    np.testing.assert_array_equal(model.get_buffer(), seen[-1])


def test_history_has_learning_rates_and_step_losses():
    X, y = _regression(5)
    model = LinearModel(3, 2)
    model.randomize(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = model.fit(X, y, optimizer=Adam(lr=2e-3), epochs=2, batch_size=16)
    assert [r["learning_rate"] for r in result.history] == [2e-3, 2e-3]
    steps = result.history.step_losses[("Adam", 1)]
    assert len(steps) == 4
    assert result.history[0]["loss"] == pytest.approx(np.mean(steps), rel=1e-12)
