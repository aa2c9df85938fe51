"""Example models built from `miniml.nn`, each fitted end to end.

(a) matrix factorization for recommendations (two `Embedding` tables and a dot
product, L-BFGS-B); (b) a small convnet on scikit-learn's 8x8 digits (Adam, then
L-BFGS-B); (c) networks with dropout trained through `fit`, deterministic at inference.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from miniml import ConvergenceWarning, MiniMLModel, PredictMode
from miniml.loss import CrossEntropyLogLoss, LNormRegularization, squared_error_loss
from miniml.nn import (
    MLP,
    Activation,
    Conv,
    Dropout,
    Embedding,
    Flatten,
    Linear,
    MaxPool,
    Stack,
    relu,
    tanh,
)
from miniml.optim import Adam, ScipyOptimizer

TRAIN = PredictMode.TRAIN


class MatrixFactorization(MiniMLModel):
    """Rating of user u for item i: the dot product of their embeddings, ``<P_u, Q_i>``."""

    def __init__(self, n_users, n_items, rank):
        self.users = Embedding(n_users, rank, reg_loss=LNormRegularization(2))
        self.items = Embedding(n_items, rank, reg_loss=LNormRegularization(2))
        super().__init__()

    def _predict_kernel(self, X, buffer, rng_key=None, mode=PredictMode.INFERENCE):
        users, items = X
        P = self.users._predict_kernel(users, buffer, mode=mode)
        Q = self.items._predict_kernel(items, buffer, mode=mode)
        return jnp.sum(P * Q, axis=-1)


def test_matrix_factorization_recovers_planted_low_rank_ratings():
    rng = np.random.default_rng(0)
    n_users, n_items, rank, noise = 60, 50, 3, 0.1
    P, Q = rng.normal(size=(n_users, rank)), rng.normal(size=(n_items, rank))
    pairs = np.array([(u, i) for u in range(n_users) for i in range(n_items)])
    rng.shuffle(pairs)
    train, valid = pairs[:1500], pairs[1500:2000]  # half of the matrix is observed

    def ratings(p):
        return np.sum(P[p[:, 0]] * Q[p[:, 1]], axis=1) + noise * rng.normal(size=len(p))

    y_train, y_valid = ratings(train), ratings(valid)
    model = MatrixFactorization(n_users, n_items, rank)
    model.randomize(seed=1)
    result = model.fit(
        (train[:, 0], train[:, 1]),
        y_train,
        reg_lambda=0.01,
        optimizer=ScipyOptimizer("L-BFGS-B", {"maxiter": 2000}),
    )
    assert result.success
    valid_mse = float(
        np.mean((np.asarray(model.predict((valid[:, 0], valid[:, 1]))) - y_valid) ** 2)
    )
    # The noise variance is 0.01 and the ratings' variance about 9: the factorization
    # must predict unseen pairs almost to the noise level.
    assert valid_mse < 1.5 * noise**2, valid_mse
    assert np.var(y_valid) > 100 * valid_mse


def test_small_convnet_classifies_digits_with_adam_then_lbfgs():
    datasets = pytest.importorskip("sklearn.datasets")
    model_selection = pytest.importorskip("sklearn.model_selection")
    digits = datasets.load_digits()
    X = (digits.images / 16.0)[..., None]  # (N, 8, 8, 1), channels last
    X_train, X_test, y_train, y_test = model_selection.train_test_split(
        X, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    net = Stack(
        [
            Conv(2, 1, 4, 3, padding="same", loss=None),  # (N, 8, 8, 4)
            Activation(relu),
            MaxPool(2, 2),  # (N, 4, 4, 4)
            Flatten(),  # (N, 64)
            Linear(64, 10, loss=None),
        ],
        loss=CrossEntropyLogLoss(expect_labels=True),
    )
    net.randomize(seed=0)

    def accuracy():
        return np.mean(np.argmax(np.asarray(net.predict(X_test)), axis=-1) == y_test)

    adam = net.fit(
        X_train, y_train, reg_lambda=1e-2, optimizer=Adam(lr=2e-2), epochs=3, batch_size=128
    )
    assert adam.success
    after_adam = accuracy()
    assert after_adam > 0.5  # far above chance (0.1) after a few epochs
    with pytest.warns(ConvergenceWarning):  # 60 iterations suffice; no need to converge
        lbfgs = net.fit(
            X_train, y_train, reg_lambda=1e-2, optimizer=ScipyOptimizer("L-BFGS-B", {"maxiter": 60})
        )
    # L-BFGS-B continues from Adam's parameters and lowers the full-batch objective.
    assert lbfgs.objective_value < adam.objective_value
    assert accuracy() >= 0.95, (after_adam, accuracy())


def _mlp(rate):
    return MLP([2, 16, 16, 1], activation=tanh, dropout=rate)


def _stack_with_dropout_layer(rate):
    return Stack(
        [Linear(2, 16, loss=None), Activation(tanh), Dropout(rate), Linear(16, 1, loss=None)],
        loss=squared_error_loss,
    )


@pytest.mark.parametrize("make", [_mlp, _stack_with_dropout_layer], ids=["MLP", "Stack-Dropout"])
def test_network_with_dropout_trains_through_fit_and_predicts_deterministically(make):
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(200, 2))
    y = (np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2)[:, None]
    reg_lambda = 1e-3
    model = make(0.1)
    model.randomize(seed=0)
    optimizer = ScipyOptimizer("L-BFGS-B", {"maxiter": 100})
    with pytest.warns(ConvergenceWarning):
        result = model.fit(X, y, reg_lambda=reg_lambda, optimizer=optimizer, seed=7)

    # The objective that fit minimized is the training-mode one: the forward pass with
    # dropout masks drawn from the fit's key, not the deterministic inference pass.
    buffer = model.get_buffer()
    train_forward = jax.jit(
        lambda key: model._predict_kernel(jnp.asarray(X), buffer, rng_key=key, mode=TRAIN)
    )
    train_pred = train_forward(jax.random.key(7))
    expected = model.total_loss(y, train_pred, reg_lambda=reg_lambda)
    np.testing.assert_allclose(result.objective_value, float(expected), rtol=1e-12)
    prediction = np.asarray(model.predict(X))
    inference_objective = model.total_loss(y, prediction, reg_lambda=reg_lambda)
    assert abs(float(inference_objective) - result.objective_value) > 1e-3

    # Inference is deterministic and free of dropout ...
    np.testing.assert_array_equal(np.asarray(model.predict(X)), prediction)
    no_dropout = make(0.0)
    no_dropout.bind()
    no_dropout.set_buffer(buffer)
    np.testing.assert_array_equal(np.asarray(no_dropout.predict(X)), prediction)
    # ... training mode is not (a new key gives new masks) ...
    assert not np.allclose(np.asarray(train_pred), np.asarray(train_forward(jax.random.key(8))))
    # ... and the network learned the function despite the dropout noise.
    assert np.mean((prediction - y) ** 2) < 0.1 * np.var(y)
