"""Chunked exact evaluation equals direct evaluation (value, gradient, Hessian-vector)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from miniml._chunked import chunk_data
from miniml.loss import (
    BinaryCrossEntropyLogLoss,
    CrossEntropyLogLoss,
    mean_squared_error_loss,
    squared_error_loss,
)
from miniml.objective import Hyper, objective_for
from miniml.optim import ScipyOptimizer
from tests.models import LinearModel, TinyMLP

rng = np.random.default_rng(0)
N = 103  # not a multiple of any chunk size below


def _setup(loss, n_out=2, frozen=frozenset()):
    model = TinyMLP(4, 6, n_out)
    model._loss_f = loss
    model.randomize(seed=1)
    X = jnp.asarray(rng.normal(size=(N, 4)))
    if isinstance(loss, CrossEntropyLogLoss):
        y = jnp.asarray(rng.integers(0, n_out, size=N))
    elif isinstance(loss, BinaryCrossEntropyLogLoss):
        y = jnp.asarray(rng.integers(0, 2, size=(N, n_out)).astype(float))
    else:
        y = jnp.asarray(rng.normal(size=(N, n_out)))
    hyper = Hyper(
        reg_lambda=jnp.asarray(0.3),
        active_reg_lambda=jnp.asarray(1.0),
        reg_scales=jnp.asarray(model._reg_scales()),
        rng_key=jax.random.key(0),
        data_scale=jnp.asarray(1.0),
    )
    return model, (X, y), hyper


LOSSES = [
    squared_error_loss,
    mean_squared_error_loss,
    CrossEntropyLogLoss(expect_labels=True),
    BinaryCrossEntropyLogLoss(),
]


CASES = [(loss, chunk, frozenset()) for loss in LOSSES for chunk in (10, 64)]
CASES += [(squared_error_loss, 1, frozenset()), (mean_squared_error_loss, 7, frozenset({"W1"}))]


@pytest.mark.parametrize("loss, chunk, frozen", CASES)
def test_chunked_equals_direct(loss, chunk, frozen):
    model, data, hyper = _setup(loss)
    direct = objective_for(model, frozen, ())
    chunked = objective_for(model, frozen, (), chunk)
    buffer = model.get_buffer()
    theta = buffer if direct.trainable is None else buffer[direct.trainable]
    base = None if direct.trainable is None else buffer
    chunks = chunk_data(data, N, chunk)
    vector = jnp.asarray(rng.normal(size=theta.shape))

    v1, g1 = direct.value_and_grad(theta, base, data, hyper)
    v2, g2 = chunked.value_and_grad(theta, base, chunks, hyper)
    assert float(v2) == pytest.approx(float(v1), rel=1e-12)
    assert float(chunked.value(theta, base, chunks, hyper)) == pytest.approx(float(v1), rel=1e-12)
    np.testing.assert_allclose(g2, g1, rtol=1e-12, atol=1e-14 * float(jnp.abs(g1).max()))
    h1 = direct.hvp(theta, vector, base, data, hyper)
    h2 = chunked.hvp(theta, vector, base, chunks, hyper)
    np.testing.assert_allclose(h2, h1, rtol=1e-11, atol=1e-13 * float(jnp.abs(h1).max()))


def test_chunked_fit_matches_direct_fit():
    X = rng.normal(size=(500, 3))
    y = X @ np.array([[1.0], [-1.0], [2.0]]) + 0.1 * rng.normal(size=(500, 1))
    results = []
    for options in ({}, {"batch_size": 64}, {"chunk_size": 7}):
        model = LinearModel(3, 1)
        model.randomize(seed=0)
        res = model.fit(X, y, reg_lambda=0.5, optimizer=ScipyOptimizer("L-BFGS-B"), **options)
        results.append((res, np.asarray(model.get_buffer())))
    (direct, b0), (batched, b1), (chunked, b2) = results
    assert batched.n_iterations == direct.n_iterations == chunked.n_iterations
    np.testing.assert_allclose(b1, b0, rtol=1e-10)
    np.testing.assert_allclose(b2, b0, rtol=1e-10)
    assert batched.loss == pytest.approx(direct.loss, rel=1e-12)


def test_chunked_newton_cg_uses_chunked_hessian_vector_products():
    X = rng.normal(size=(300, 4))
    y = (X @ rng.normal(size=(4, 1)) + rng.normal(size=(300, 1)) > 0).astype(float)
    fits = []
    for options in ({}, {"chunk_size": 50}):
        model = LinearModel(4, 1, loss=BinaryCrossEntropyLogLoss())
        model.randomize(seed=2)
        res = model.fit(X, y, reg_lambda=0.1, optimizer=ScipyOptimizer("Newton-CG"), **options)
        fits.append(res)
    assert fits[1].n_hessian_evaluations == fits[0].n_hessian_evaluations > 0
    assert fits[1].loss == pytest.approx(fits[0].loss, rel=1e-9)


def _chunks_used(monkeypatch, **fit_options):
    """The chunk size each stage's objective was built with."""
    import miniml._stage_runner

    seen = []
    original = miniml._stage_runner.objective_for

    def recording(model, frozen, static, chunk=None):
        seen.append(chunk)
        return original(model, frozen, static, chunk)

    monkeypatch.setattr(miniml._stage_runner, "objective_for", recording)
    X = rng.normal(size=(200, 3))
    y = X @ np.array([[1.0], [-1.0], [2.0]])
    model = LinearModel(3, 1)
    model.randomize(seed=0)
    model.fit(X, y, reg_lambda=0.0, **fit_options)
    return seen


def test_batch_size_of_a_staged_fit_does_not_chunk_its_full_batch_stage(monkeypatch):
    from miniml.optim import Adam

    staged = [Adam(lr=1e-2), ScipyOptimizer("L-BFGS-B")]
    assert _chunks_used(monkeypatch, optimizer=staged, epochs=2, batch_size=32)[:2] == [None, None]


def test_chunk_size_chunks_the_full_batch_stage_of_a_staged_fit(monkeypatch):
    from miniml.optim import Adam

    staged = [Adam(lr=1e-2), ScipyOptimizer("L-BFGS-B")]
    assert _chunks_used(monkeypatch, optimizer=staged, epochs=2, batch_size=32, chunk_size=64)[
        :2
    ] == [None, 64]


def test_batch_size_chunks_a_full_batch_only_fit(monkeypatch):
    assert _chunks_used(monkeypatch, optimizer=ScipyOptimizer("L-BFGS-B"), batch_size=64)[0] == 64


def test_each_chunk_draws_its_own_random_numbers():
    """A model that masks its inputs at random (as dropout does): each chunk gets the
    fit's key folded with its index (chunk 0 the key itself), so the masks of the four
    chunks differ, and one chunk is exactly the direct evaluation."""
    from miniml import MiniMLModel, MiniMLParam, PredictMode

    class RandomMask(MiniMLModel):
        def __init__(self):
            self.w = MiniMLParam((1,))
            super().__init__()

        def _predict_kernel(self, X, buffer, rng_key=None, mode=PredictMode.INFERENCE):
            keep = jax.random.bernoulli(rng_key, 0.5, X.shape)
            return jnp.where(keep, X, 0.0) * self.w(buffer)

    model = RandomMask()
    model.bind()
    model.set_buffer(jnp.ones(1))
    X = jnp.ones((40, 3))
    data = (X, jnp.zeros((40, 3)))
    _, _, hyper = _setup(squared_error_loss)
    theta = model.get_buffer()
    key = hyper.rng_key
    keys = [key] + [jax.random.fold_in(key, c) for c in range(1, 4)]
    masks = [np.asarray(jax.random.bernoulli(k, 0.5, (10, 3))) for k in keys]
    assert len({m.tobytes() for m in masks}) == 4
    chunked = objective_for(model, frozenset(), (), 10)
    value = chunked.value(theta, None, chunk_data(data, 40, 10), hyper)
    assert float(value) == sum(int(m.sum()) for m in masks)
    direct = objective_for(model, frozenset(), ()).value(theta, None, data, hyper)
    one_chunk = objective_for(model, frozenset(), (), 40)
    assert float(one_chunk.value(theta, None, chunk_data(data, 40, 40), hyper)) == float(direct)


def test_chunked_equals_direct_for_dict_inputs_and_per_step_targets():
    """Structured X (a dict) and a mean loss over (n, steps, outputs) targets, for chunk
    sizes 1, n - 1 and one that does not divide n: value, gradient, Hessian-vector
    product and dense Hessian as in the direct evaluation."""
    from miniml import MiniMLModel, MiniMLParam

    class TwoInputs(MiniMLModel):
        def __init__(self):
            self.a = MiniMLParam((3, 2))
            self.b = MiniMLParam((2, 2))
            super().__init__(loss=mean_squared_error_loss)

        def _predict_kernel(self, X, buffer):
            return jnp.tanh(X["u"] @ self.a(buffer)) + X["v"] @ self.b(buffer)

    n = 11
    model = TwoInputs()
    model.randomize(seed=3)
    X = {"u": jnp.asarray(rng.normal(size=(n, 5, 3))), "v": jnp.asarray(rng.normal(size=(n, 5, 2)))}
    data = (X, jnp.asarray(rng.normal(size=(n, 5, 2))))
    _, _, hyper = _setup(squared_error_loss)
    hyper = hyper._replace(reg_scales=jnp.asarray(model._reg_scales()))
    theta = model.get_buffer()
    vector = jnp.asarray(rng.normal(size=theta.shape))
    direct = objective_for(model, frozenset(), ())
    v1, g1 = direct.value_and_grad(theta, None, data, hyper)
    h1 = direct.hvp(theta, vector, None, data, hyper)
    H1 = direct.hessian(theta, None, data, hyper)
    for chunk in (1, n - 1, 4):
        chunked = objective_for(model, frozenset(), (), chunk)
        chunks = chunk_data(data, n, chunk)
        v2, g2 = chunked.value_and_grad(theta, None, chunks, hyper)
        assert float(v2) == pytest.approx(float(v1), rel=1e-12)
        np.testing.assert_allclose(g2, g1, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(chunked.hvp(theta, vector, None, chunks, hyper), h1,
                                   rtol=1e-11, atol=1e-14)  # fmt: skip
        np.testing.assert_allclose(chunked.hessian(theta, None, chunks, hyper), H1,
                                   rtol=1e-11, atol=1e-14)  # fmt: skip
