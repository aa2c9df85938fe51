"""Composite networks survive `save` / `Class.load` with their structure and values."""

import numpy as np
import pytest

import miniml.nn as nn
from miniml.loss import CrossEntropyLogLoss
from tests.nn.helpers import random_params


def _convnet():
    return nn.Stack(
        [
            nn.Conv(2, 1, 3, 3, padding="same", loss=None),
            nn.Activation(nn.LeakyReLU(0.1)),
            nn.MaxPool(2, 2),
            nn.Dropout(0.2),
            nn.Flatten(),
            nn.Parallel(
                [nn.Linear(12, 4, loss=None), nn.MLP([12, 5, 4], activation=nn.gelu, loss=None)],
                mode="concat",
            ),
            nn.Linear(8, 3, loss=None),
        ],
        loss=CrossEntropyLogLoss(expect_labels=True),
    )


def _transformer_block():
    attention = nn.Parallel(
        [nn.MultiHeadAttention(4, 2, dropout=0.1, loss=None), nn.Identity()], "sum"
    )
    return nn.Stack(
        [
            nn.PositionalEmbedding(6, 4),
            nn.RotaryPositionalEmbedding(4, base=50.0),
            attention,
            nn.LayerNorm(4, loss=None),
            nn.Flatten(),
            nn.RBFLayer(20, 2, 3, nn.PolyharmonicRBF(3), projection="ortho", loss=None),
        ],
        loss=None,
    )


CASES = {
    "convnet": (_convnet, lambda rng: rng.normal(size=(3, 4, 4, 1))),
    "transformer-rbf": (_transformer_block, lambda rng: rng.normal(size=(2, 5, 4))),
    "embedding-unknown": (
        lambda: nn.Stack([nn.Embedding(4, 3, use_unknown=True), nn.Flatten()]),
        lambda rng: np.array([[0, 3, 9], [1, -2, 2]]),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_composite_network_round_trip(name, tmp_path):
    make, data = CASES[name]
    model = make()
    random_params(model, seed=3)
    model.save(tmp_path / "net.npz")
    loaded = type(model).load(tmp_path / "net.npz")
    assert loaded.param_names == model.param_names
    np.testing.assert_array_equal(np.asarray(loaded.get_buffer()), np.asarray(model.get_buffer()))
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert repr(loaded.loss_function) == repr(model.loss_function)
    X = data(np.random.default_rng(0))
    np.testing.assert_array_equal(np.asarray(loaded.predict(X)), np.asarray(model.predict(X)))


def test_loaded_layers_keep_their_settings(tmp_path):
    model = random_params(_convnet())
    model.save(tmp_path / "net.npz")
    loaded = nn.Stack.load(tmp_path / "net.npz")
    conv, activation, pool, dropout = (loaded.layers[i] for i in range(4))
    assert conv.padding == "same" and conv.kernel_size == (3, 3)
    assert activation.f == nn.LeakyReLU(0.1)
    assert pool.stride == (2, 2) and dropout.rate == 0.2
    assert loaded.layers[5].branches[1].activation is nn.gelu
