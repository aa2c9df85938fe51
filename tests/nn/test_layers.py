"""Layer behaviour against numpy transcriptions of the documented formulas."""

import jax
import numpy as np
import pytest
from scipy.special import erf

import miniml.nn as nn
from miniml import ConvergenceWarning, MiniMLError, NonFiniteWarning, PredictMode
from miniml.loss import squared_error_loss
from miniml.optim import ScipyOptimizer
from tests.nn.helpers import TOL, random_params, with_params

RNG = np.random.default_rng(0)
X34 = RNG.normal(size=(3, 4)) * 3
TRAIN = PredictMode.TRAIN

ACTIVATIONS = {
    "relu": (nn.relu, lambda x: np.maximum(x, 0)),
    "sigmoid": (nn.sigmoid, lambda x: 1 / (1 + np.exp(-x))),
    "tanh": (nn.tanh, np.tanh),
    "gelu": (nn.gelu, lambda x: 0.5 * x * (1 + erf(x / np.sqrt(2)))),
    "silu": (nn.silu, lambda x: x / (1 + np.exp(-x))),
    "softplus": (nn.softplus, lambda x: np.log1p(np.exp(x))),
    "leaky_relu": (nn.LeakyReLU(0.1), lambda x: np.where(x > 0, x, 0.1 * x)),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_match_their_formulas(name):
    f, formula = ACTIVATIONS[name]
    np.testing.assert_allclose(np.asarray(f(X34)), formula(X34), rtol=1e-13, atol=1e-15)
    layer = nn.Activation(f)
    layer.bind()
    np.testing.assert_allclose(np.asarray(layer.predict(X34)), formula(X34), rtol=1e-13, atol=1e-15)


def test_linear_and_mlp_match_numpy():
    W1, b1, W2, b2 = (RNG.normal(size=s) for s in [(4, 5), (5,), (5, 2), (2,)])
    linear = with_params(nn.Linear(4, 5), W=W1, b=b1)
    np.testing.assert_allclose(np.asarray(linear.predict(X34)), X34 @ W1 + b1, rtol=TOL)
    mlp = nn.MLP([4, 5, 2], activation=nn.tanh)
    assert mlp.param_names == ["layers.0.W", "layers.0.b", "layers.1.W", "layers.1.b"]
    with_params(mlp, **{"layers.0.W": W1, "layers.0.b": b1, "layers.1.W": W2, "layers.1.b": b2})
    expected = np.tanh(X34 @ W1 + b1) @ W2 + b2
    np.testing.assert_allclose(np.asarray(mlp.predict(X34)), expected, rtol=TOL)


def test_randomize_uses_fan_in_scaling_and_neutral_starting_values():
    linear = nn.Linear(200, 100)
    linear.randomize(seed=0)
    assert np.std(np.asarray(linear.W.value)) == pytest.approx(1 / np.sqrt(200), rel=0.03)
    assert not np.any(np.asarray(linear.b.value))
    conv = nn.Conv(2, 8, 32, 5, groups=2)
    conv.randomize(seed=0)
    assert np.std(np.asarray(conv.W.value)) == pytest.approx(1 / np.sqrt(4 * 25), rel=0.05)
    norm = nn.LayerNorm(7)
    norm.randomize(seed=0)
    np.testing.assert_array_equal(np.asarray(norm.gamma.value), np.ones(7))
    np.testing.assert_array_equal(np.asarray(norm.beta.value), np.zeros(7))


def test_only_weights_are_regularized_by_default():
    assert nn.Linear(3, 2).get_regularization_scales() == {"W": 1.0}
    assert set(nn.Linear(3, 2, apply_bias_reg=True).get_regularization_scales()) == {"W", "b"}
    assert nn.Linear(3, 2, reg_loss=None).get_regularization_scales() == {}


def test_dropout_is_inverted_in_training_and_the_identity_at_inference():
    X = RNG.normal(size=(200, 50)) + 3
    layer = nn.Dropout(0.3)
    layer.bind()
    np.testing.assert_array_equal(np.asarray(layer.predict(X)), X)
    out = np.asarray(layer._predict_kernel(X, layer.get_buffer(), jax.random.key(0), TRAIN))
    kept = out != 0
    np.testing.assert_allclose(out[kept], X[kept] / 0.7, rtol=1e-15)
    assert kept.mean() == pytest.approx(0.7, abs=0.01)
    again = np.asarray(layer._predict_kernel(X, layer.get_buffer(), jax.random.key(1), TRAIN))
    assert np.any((again != 0) != kept)
    with pytest.raises(MiniMLError, match="rng_key is None"):
        layer._predict_kernel(X, layer.get_buffer(), None, TRAIN)


def test_residual_block_and_parallel_concatenation():
    W, b = RNG.normal(size=(4, 4)), RNG.normal(size=4)
    block = nn.Parallel(
        [nn.Stack([nn.Linear(4, 4), nn.Activation(nn.tanh)]), nn.Identity()], mode="sum"
    )
    with_params(block, **{"branches.0.layers.0.W": W, "branches.0.layers.0.b": b})
    np.testing.assert_allclose(np.asarray(block.predict(X34)), X34 + np.tanh(X34 @ W + b), rtol=TOL)
    concat = nn.Parallel([nn.Identity(2.0), nn.Take([3, 0])], mode="concat")
    concat.bind()
    expected = np.concatenate([2 * X34, X34[:, [3, 0]]], axis=1)
    np.testing.assert_array_equal(np.asarray(concat.predict(X34)), expected)


def test_parallel_refuses_mismatched_branch_shapes():
    layer = nn.Parallel([nn.Identity(), nn.Take([0])], mode="sum")
    layer.bind()
    with pytest.raises(MiniMLError, match=r"one shape, got shapes \[\(3, 4\), \(3, 1\)\]"):
        layer.predict(X34)


def test_take_identity_and_flatten():
    X = RNG.normal(size=(2, 3, 4))
    for layer, expected in [
        (nn.Take(1, axis=1), X[:, 1]),
        (nn.Take([-1, 0]), X[..., [-1, 0]]),
        (nn.Identity(-0.5), -0.5 * X),
        (nn.Flatten(), X.reshape(2, 12)),
        (nn.Flatten(start_axis=2), X),
    ]:
        layer.bind()
        np.testing.assert_array_equal(np.asarray(layer.predict(X)), expected)
    take = nn.Take([0, 4])
    take.bind()
    with pytest.raises(MiniMLError, match=r"indices \[4\] are out of range for axis -1 of size 4"):
        take.predict(X)


def test_stack_routes_keyword_arguments_to_the_layers_that_declare_them():
    mha = nn.MultiHeadAttention(4, 2)
    stack = nn.Stack([nn.Linear(4, 4), mha, nn.Activation(nn.relu)])
    random_params(stack)
    X = RNG.normal(size=(2, 3, 4))
    mask = np.triu(np.ones((3, 3), bool), k=1)
    buffer = stack.get_buffer()
    hidden = stack.layers[0]._predict_kernel(X, buffer)
    expected = np.maximum(mha._predict_kernel(hidden, buffer, attn_mask=mask), 0)
    np.testing.assert_allclose(np.asarray(stack.predict(X, attn_mask=mask)), expected, rtol=TOL)
    assert not np.allclose(np.asarray(stack.predict(X)), expected)
    with pytest.raises(MiniMLError, match=r"\['atn_mask'\] .* accepted by none of its layers"):
        stack.predict(X, atn_mask=mask)


def test_embedding_unknown_row_and_out_of_range_indices():
    table = RNG.normal(size=(4, 2))
    layer = with_params(nn.Embedding(3, 2, use_unknown=True), embeddings=table)
    idx = np.array([[0, 2, 3], [-1, 1, 100]])
    expected = table[[[0, 2, 3], [3, 1, 3]]]  # 3 (n_vocab) is the unknown row
    np.testing.assert_array_equal(np.asarray(layer.predict(idx)), expected)

    strict = with_params(nn.Embedding(3, 2), embeddings=table[:3])
    out = np.asarray(strict.predict(idx))
    np.testing.assert_array_equal(out[0, :2], table[[0, 2]])
    np.testing.assert_array_equal(out[1, 1], table[1])
    assert np.isnan(out[0, 2]).all() and np.isnan(out[1, 0]).all() and np.isnan(out[1, 2]).all()
    with pytest.raises(MiniMLError, match=r"3 index\(es\) lie outside \[0, 3\)"):
        strict.check_indices(idx)
    strict.check_indices(np.array([0, 1, 2]))
    with pytest.raises(MiniMLError, match="expected integer indices"):
        strict.predict(idx.astype(float))


def test_fitting_on_out_of_range_indices_stops_loudly_and_keeps_the_parameters():
    model = nn.Stack(
        [nn.Embedding(5, 2), nn.Flatten(), nn.Linear(2, 1, loss=None)], loss=squared_error_loss
    )
    model.randomize(seed=0)
    before = np.asarray(model.get_buffer())
    with pytest.warns(NonFiniteWarning):
        result = model.fit(np.array([[0], [1], [7]]), np.ones((3, 1)))
    assert not result.success
    np.testing.assert_array_equal(np.asarray(model.get_buffer()), before)


def test_positional_embeddings_match_numpy():
    X = RNG.normal(size=(2, 5, 6))
    table = RNG.normal(size=(8, 6))
    learned = with_params(nn.PositionalEmbedding(8, 6), embeddings=table)
    np.testing.assert_allclose(np.asarray(learned.predict(X)), X + table[:5], rtol=TOL)

    rope = nn.RotaryPositionalEmbedding(6, base=100.0)
    rope.bind()
    theta = 100.0 ** (-np.arange(3) * 2 / 6)
    angle = np.arange(5)[:, None] * theta
    first, second = X[..., :3], X[..., 3:]
    expected = np.concatenate(
        [
            first * np.cos(angle) - second * np.sin(angle),
            first * np.sin(angle) + second * np.cos(angle),
        ],
        axis=-1,
    )
    out = np.asarray(rope.predict(X))
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), np.linalg.norm(X, axis=-1))
    # The same vector pair at positions (1, 3) and (2, 4) has the same dot product.
    pair = np.zeros((1, 5, 6))
    pair[0, 1] = pair[0, 2] = X[0, 0]
    pair[0, 3] = pair[0, 4] = X[0, 1]
    rotated = np.asarray(rope.predict(pair))[0]
    assert rotated[1] @ rotated[3] == pytest.approx(rotated[2] @ rotated[4], rel=1e-12)


def test_attention_dropout_acts_only_in_training():
    layer = random_params(nn.MultiHeadAttention(4, 2, dropout=0.5))
    X = RNG.normal(size=(2, 3, 4))
    buffer = layer.get_buffer()
    plain = nn.MultiHeadAttention(4, 2)
    plain.bind()
    plain.set_buffer(buffer)
    np.testing.assert_array_equal(np.asarray(layer.predict(X)), np.asarray(plain.predict(X)))
    train = layer._predict_kernel(X, buffer, jax.random.key(0), TRAIN)
    assert not np.allclose(np.asarray(train), np.asarray(layer.predict(X)))


def test_attention_masks_travel_inside_the_input_through_fit():
    rng = np.random.default_rng(0)
    query = rng.normal(size=(8, 4, 4))
    causal = np.broadcast_to(np.triu(np.ones((4, 4), bool), k=1), (8, 4, 4))
    X = {"query": query, "attn_mask": causal}
    y = np.cumsum(query, axis=1) / np.arange(1, 5)[None, :, None]  # running mean
    layer = random_params(nn.MultiHeadAttention(4, 2), scale=0.3)
    start = float(layer.total_loss(y, layer.predict(X), reg_lambda=0.0))
    with pytest.warns(ConvergenceWarning):
        result = layer.fit(
            X, y, reg_lambda=0.0, optimizer=ScipyOptimizer("L-BFGS-B", {"maxiter": 30})
        )
    assert result.objective_value < 0.05 * start
    # With the causal mask, a change at the last position leaves earlier outputs alone.
    changed = query.copy()
    changed[:, -1] += 5.0
    before = np.asarray(layer.predict(X))
    after = np.asarray(layer.predict({"query": changed, "attn_mask": causal}))
    np.testing.assert_array_equal(after[:, :-1], before[:, :-1])
    assert not np.allclose(after[:, -1], before[:, -1])
