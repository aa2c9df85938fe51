"""Losses and regularizers against numpy transcriptions, scikit-learn and finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import log_softmax as np_log_softmax
from sklearn.metrics import log_loss

from miniml import MiniMLError
from miniml.loss import (
    BinaryCrossEntropyLogLoss,
    CrossEntropyLogLoss,
    LNormRegularization,
    binary_cross_entropy_log_loss,
    cross_entropy_loss,
    mean_squared_error_loss,
    reduction_of,
    squared_error_loss,
)

rng = np.random.default_rng(0)
Y = rng.normal(size=(7, 3))
P = rng.normal(size=(7, 3))


def test_squared_error_is_a_sum():
    assert float(squared_error_loss(Y, P)) == pytest.approx(np.sum((Y - P) ** 2), rel=1e-14)
    assert reduction_of(squared_error_loss, "t") == "sum"


def test_mean_squared_error_is_a_mean():
    assert float(mean_squared_error_loss(Y, P)) == pytest.approx(np.mean((Y - P) ** 2), rel=1e-14)
    assert reduction_of(mean_squared_error_loss, "t") == "mean"


def test_shape_mismatch_is_an_error_not_a_broadcast():
    with pytest.raises(MiniMLError, match=r"reshape\(-1, 1\)"):
        squared_error_loss(jnp.ones(4), jnp.ones((4, 1)))


def test_cross_entropy_of_probabilities_matches_sklearn():
    labels = rng.integers(0, 3, size=50)
    probs = jax.nn.softmax(jnp.asarray(rng.normal(size=(50, 3))), axis=-1)
    onehot = np.eye(3)[labels]
    expected = log_loss(labels, np.asarray(probs), normalize=False)
    assert float(cross_entropy_loss(onehot, probs)) == pytest.approx(expected, rel=1e-12)


def test_cross_entropy_gradient_is_finite_where_a_probability_is_zero():
    """d/dp of -sum y log p is -y/p, and 0 for a class with y = 0 even when p = 0 (a
    softmax that underflowed); xlogy's derivative there is 0/0."""
    y = jnp.array([[0.0, 1.0, 0.0], [0.3, 0.7, 0.0]])
    p = jnp.array([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]])
    grad = jax.grad(cross_entropy_loss, argnums=1)(y, p)
    expected = np.where(np.asarray(y) > 0, -np.asarray(y) / np.where(p > 0, p, 1.0), 0.0)
    np.testing.assert_allclose(grad, expected, rtol=1e-15)
    assert float(cross_entropy_loss(y, p)) == pytest.approx(-(0.3 + 0.7) * np.log(0.5), rel=1e-15)
    assert float(cross_entropy_loss(jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 1.0]]))) == np.inf


def test_cross_entropy_log_loss_onehot_labels_and_zero_ref():
    logits = rng.normal(size=(9, 4))
    labels = rng.integers(0, 4, size=9)
    onehot = np.eye(4)[labels]
    expected = -np.sum(np_log_softmax(logits, axis=-1)[np.arange(9), labels])
    assert float(CrossEntropyLogLoss()(onehot, logits)) == pytest.approx(expected, rel=1e-13)
    as_labels = CrossEntropyLogLoss(expect_labels=True)(labels, logits)
    assert float(as_labels) == pytest.approx(expected, rel=1e-13)
    reduced = logits[:, :3] - logits[:, 3:]  # the last class as reference (logit 0)
    zero_ref = CrossEntropyLogLoss(zero_ref=True)(onehot, reduced)
    assert float(zero_ref) == pytest.approx(expected, rel=1e-12)


def test_label_validation():
    loss = CrossEntropyLogLoss(expect_labels=True)
    loss.validate(np.array([0, 2, 1]), (3, 3), "t")
    with pytest.raises(MiniMLError, match=r"\[0, 3\)"):
        loss.validate(np.array([0, 3, 1]), (3, 3), "t")
    with pytest.raises(MiniMLError, match="integer"):
        loss.validate(np.array([0.0, 1.0, 1.0]), (3, 3), "t")


def test_binary_cross_entropy_on_logits_matches_sklearn():
    z = rng.normal(size=40) * 3
    labels = rng.integers(0, 2, size=40).astype(float)
    expected = log_loss(labels, 1 / (1 + np.exp(-z)), normalize=False)
    assert float(binary_cross_entropy_log_loss(labels, z)) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(MiniMLError, match=r"\[0, 1\]"):
        BinaryCrossEntropyLogLoss().validate(np.array([0.0, 2.0]), (2,), "t")


@pytest.mark.parametrize("p", [1, 2, 3, 1.5])
@pytest.mark.parametrize("root", [False, True])
def test_lnorm_regularization(p, root):
    w = rng.normal(size=(4, 5))
    total = np.sum(np.abs(w) ** p)
    expected = total ** (1 / p) if root else total
    assert float(LNormRegularization(p, root)(w)) == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("p", [1.5, 2, 3])
def test_rooted_lnorm_gradient_is_zero_at_zero_and_analytic_elsewhere(p):
    """The p-norm's gradient is sign(w)|w|^(p-1) / ||w||^(p-1); at w = 0 (a bias that
    starts at zero) the root's derivative is infinite, and the subgradient 0 is used."""
    norm = LNormRegularization(p, root=True)
    np.testing.assert_array_equal(jax.grad(norm)(jnp.zeros(3)), np.zeros(3))
    w = rng.normal(size=5)
    length = np.sum(np.abs(w) ** p) ** (1 / p)
    expected = np.sign(w) * np.abs(w) ** (p - 1) / length ** (p - 1)
    np.testing.assert_allclose(jax.grad(norm)(jnp.asarray(w)), expected, rtol=1e-13)


def test_lnorm_rejects_bad_order():
    with pytest.raises(MiniMLError, match="positive"):
        LNormRegularization(0)


def test_undeclared_reduction_is_reported():
    with pytest.raises(MiniMLError, match="reduction"):
        reduction_of(lambda y, p: jnp.sum(y - p), "MyModel.fit")


LOSSES = [
    (squared_error_loss, lambda: rng.normal(size=(5, 2))),
    (mean_squared_error_loss, lambda: rng.normal(size=(5, 2))),
    (CrossEntropyLogLoss(), lambda: np.eye(2)[rng.integers(0, 2, 5)]),
    (binary_cross_entropy_log_loss, lambda: rng.integers(0, 2, (5, 2)).astype(float)),
]


@pytest.mark.parametrize("loss, make_y", LOSSES)
def test_loss_gradients_match_finite_differences(loss, make_y):
    y = make_y()
    pred = rng.normal(size=(5, 2))
    grad = np.asarray(jax.grad(lambda q: loss(y, q))(pred))
    eps = 1e-6
    numeric = np.zeros_like(pred)
    for idx in np.ndindex(pred.shape):
        step = np.zeros_like(pred)
        step[idx] = eps
        numeric[idx] = (float(loss(y, pred + step)) - float(loss(y, pred - step))) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-8)
