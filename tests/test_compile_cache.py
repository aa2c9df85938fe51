"""Fitting again with new data of the same shapes or new hyper-parameters compiles nothing."""

import numpy as np

from miniml.optim import ScipyOptimizer
from tests.models import LinearModel, TinyMLP


def _data(seed, n=64):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)), rng.normal(size=(n, 2))


def test_second_fit_compiles_nothing(count_compilations):
    model = TinyMLP(3, 5, 2)
    model.randomize(seed=0)
    optimizer = ScipyOptimizer("L-BFGS-B", options={"maxiter": 5})
    X1, y1 = _data(1)
    X2, y2 = _data(2)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # maxiter=5 stops early on purpose
        model.fit(X1, y1, reg_lambda=0.1, optimizer=optimizer)
        model.predict(X1)
        with count_compilations() as counted:
            model.fit(X2, y2, reg_lambda=0.7, optimizer=optimizer)
            model.randomize(seed=3)
            model.fit(X2, y2, reg_lambda=0.0, optimizer=ScipyOptimizer("L-BFGS-B", {"maxiter": 3}))
            model.predict(X2)
    assert counted.n == 0


def test_new_shapes_compile_but_are_cached(count_compilations):
    model = LinearModel(3, 2)
    model.randomize(seed=0)
    X, y = _data(1)
    model.fit(X, y)
    with count_compilations() as first:
        model.fit(X[:10], y[:10])
    with count_compilations() as second:
        model.fit(X[10:20], y[10:20])
    assert first.n > 0
    assert second.n == 0


def test_reg_scale_change_compiles_nothing(count_compilations):
    model = LinearModel(3, 2)
    model.randomize(seed=0)
    X, y = _data(4)
    model.fit(X, y, reg_lambda=1.0)
    w_before = np.asarray(model.W.value)
    with count_compilations() as counted:
        model.set_regularization_scale("W", 50.0)
        model.fit(X, y, reg_lambda=1.0)
    assert counted.n == 0
    assert np.linalg.norm(np.asarray(model.W.value)) < np.linalg.norm(w_before)


def test_first_fit_compiles_only_the_objective(count_compilations):
    # Cold start: binding, moving numpy data and parameters to the device and making
    # the random key are plain transfers; only the objective itself is compiled.
    rng = np.random.default_rng(11)
    X, y = rng.normal(size=(37, 5)), rng.normal(size=(37, 4))  # shapes no other test uses
    model = LinearModel(5, 4)
    with count_compilations() as counted:
        model.bind()
        model.set_buffer(np.zeros(model.size))
        model.fit(X, y, reg_lambda=0.1, seed=12345)
    assert counted.n == 1


def test_random_keys_of_the_fit_equal_jax_random_key():
    import jax

    from miniml.fitting import _random_key

    for seed in (0, 1, 7, 2**32 - 1, 2**32, 2**40 + 3, 2**63 - 1):
        expected = jax.random.key_data(jax.random.key(seed))
        np.testing.assert_array_equal(jax.random.key_data(_random_key(seed)), expected)
