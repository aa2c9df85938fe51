"""Clear errors: wrong input ranks, sizes and dtypes, and invalid layer arguments.

Every message names the layer (with its arguments), what it expected and what it got.
"""

import numpy as np
import pytest

import miniml.nn as nn
from miniml import MiniMLError


def _x(*shape):
    return np.random.default_rng(0).normal(size=shape)


BAD_INPUTS = {
    "Linear-size": (
        lambda: nn.Linear(3, 2),
        _x(5, 4),
        (
            r"Linear\(3, 2\): expected X of shape \(N, \.\.\., 3\) with size 3 on axis -1"
            r", got X of shape \(5, 4\)"
        ),
    ),
    "Linear-rank": (
        lambda: nn.Linear(1, 2),
        _x(5),
        (
            r"Linear\(1, 2\): expected X of shape \(N, \.\.\., 1\) \(at least 2 axes\)"
            r", got X of shape \(5,\)"
        ),
    ),
    "MLP-size": (
        lambda: nn.MLP([3, 2]),
        _x(5, 4),
        r"MLP\(\[3, 2\]\): expected X of shape \(N, \.\.\., 3\).*got X of shape \(5, 4\)",
    ),
    "Conv-rank": (
        lambda: nn.Conv(2, 1, 4, 3),
        _x(5, 8, 8),
        (
            r"Conv\(2, 1, 4, 3\): expected X of shape \(N, H, W, 1\) \(4 axes\)"
            r", got X of shape \(5, 8, 8\)"
        ),
    ),
    "Conv-channels": (
        lambda: nn.Conv(2, 1, 4, 3),
        _x(5, 1, 8, 8),
        r"with 1 channels, got X of shape \(5, 1, 8, 8\)\. If your data is channels_first",
    ),
    "Conv-too-small": (
        lambda: nn.Conv(1, 1, 1, 3, dilation=2),
        _x(2, 4, 1),
        r"too small: a window spans \(5,\)",
    ),
    "MaxPool-rank": (
        lambda: nn.MaxPool(2, 2),
        _x(5, 8),
        r"MaxPool\(2, 2\): expected X of shape \(N, H, W, C\) \(4 axes\), got X of shape \(5, 8\)",
    ),
    "MaxPool-window-of-padding": (
        lambda: nn.MaxPool(1, 2, stride=1, padding="same", dilation=3),
        _x(1, 1, 1),
        r"MaxPool\(1, 2, .*\): on spatial axis 0 \(size 1, padding \(1, 2\), kernel 2, "
        r"stride 1, dilation 3\) the window of output position 0 covers only padding",
    ),
    "AvgPool-dtype": (
        lambda: nn.AvgPool(1, 2),
        np.ones((2, 4, 1), int),
        r"AvgPool\(1, 2\): expected floating-point X, got dtype int",
    ),
    "LayerNorm-shape": (
        lambda: nn.LayerNorm(4),
        _x(5, 3),
        r"LayerNorm\(4\): expected X of shape \(N, \.\.\., 4\).*got X of shape \(5, 3\)",
    ),
    "Embedding-dtype": (
        lambda: nn.Embedding(4, 2),
        _x(5),
        r"Embedding\(4, 2\): expected integer indices",
    ),
    "PositionalEmbedding-length": (
        lambda: nn.PositionalEmbedding(4, 3),
        _x(2, 5, 3),
        r"expected sequences of length L <= 4, got X of shape \(2, 5, 3\)",
    ),
    "PositionalEmbedding-rank": (
        lambda: nn.PositionalEmbedding(4, 3),
        _x(2, 3),
        r"expected X of shape \(N, L, 3\) \(3 axes\), got X of shape \(2, 3\)",
    ),
    "RotaryPositionalEmbedding-size": (
        lambda: nn.RotaryPositionalEmbedding(4),
        _x(2, 3, 6),
        r"expected X of shape \(N, L, 4\) with size 4 on axis -1, got X of shape \(2, 3, 6\)",
    ),
    "MultiHeadAttention-rank": (
        lambda: nn.MultiHeadAttention(4, 2),
        _x(5, 4),
        (
            r"MultiHeadAttention\(4, 2\): expected query of shape \(N, L, 4\) \(3 axes\)"
            r", got query of shape \(5, 4\)"
        ),
    ),
    "MultiHeadAttention-kdim": (
        lambda: nn.MultiHeadAttention(4, 2, kdim=3),
        (_x(2, 3, 4), _x(2, 5, 4), _x(2, 5, 4)),
        r"expected key of shape \(N, S, 3\) with size 3 on axis -1, got key of shape \(2, 5, 4\)",
    ),
    "MultiHeadAttention-lengths": (
        lambda: nn.MultiHeadAttention(4),
        (_x(2, 3, 4), _x(2, 5, 4), _x(2, 6, 4)),
        r"must agree on N and S",
    ),
    "MultiHeadAttention-mask-shape": (
        lambda: nn.MultiHeadAttention(4),
        {"query": _x(2, 3, 4), "attn_mask": np.zeros((2, 3), bool)},
        (
            r"expected attn_mask of shape one of \[\(3, 3\), \(2, 3, 3\), \(2, 1, 3, 3\)\]"
            r", got \(2, 3\)"
        ),
    ),
    "MultiHeadAttention-mask-dtype": (
        lambda: nn.MultiHeadAttention(4),
        {"query": _x(2, 3, 4), "attn_mask": np.zeros((2, 3, 3), int)},
        r"must be boolean \(True hides a key\) or float",
    ),
    "MultiHeadAttention-dict-keys": (
        lambda: nn.MultiHeadAttention(4),
        {"q": _x(2, 3, 4)},
        r"a dict input needs the key 'query'",
    ),
    "RBFLayer-size": (
        lambda: nn.RBFLayer(2, 1, 3),
        _x(5, 3),
        (
            r"RBFLayer\(2, 1, 3\): expected X of shape \(N, 2\) with size 2 on axis -1"
            r", got X of shape \(5, 3\)"
        ),
    ),
    "CayleyMatrix-size": (
        lambda: nn.CayleyMatrix(3),
        _x(5, 4),
        r"CayleyMatrix\(3\): expected X of shape \(N, \.\.\., 3\)",
    ),
    "Flatten-rank": (
        lambda: nn.Flatten(),
        _x(5),
        r"Flatten\(\): expected X of shape .* \(at least 2 axes\), got X of shape \(5,\)",
    ),
    "Take-axis": (
        lambda: nn.Take(0, axis=2),
        _x(5, 3),
        r"Take\(0, axis=2\): expected X with axis 2, got X of shape \(5, 3\)",
    ),
    "Activation-tuple": (
        lambda: nn.Activation(nn.relu),
        (_x(2, 3), _x(2, 3)),
        r"Activation\(.*\): expected X to be one array, got a tuple",
    ),
    "Dropout-tuple": (
        lambda: nn.Dropout(0.1),
        (_x(2, 3),),
        r"Dropout\(0\.1\): expected X to be one array, got a tuple",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_wrong_inputs_raise_clear_errors_from_predict(name):
    make, X, message = BAD_INPUTS[name]
    layer = make()
    layer.bind()
    with pytest.raises(MiniMLError, match=message):
        layer.predict(X)


def test_wrong_inputs_raise_the_same_clear_error_from_fit():
    layer = nn.Linear(3, 1)
    with pytest.raises(MiniMLError, match=r"Linear\(3, 1\): expected X .* got X of shape \(4, 2\)"):
        layer.fit(_x(4, 2), _x(4, 1))


def test_wrong_inputs_inside_a_stack_name_the_inner_layer():
    net = nn.Stack([nn.Linear(3, 4), nn.Activation(nn.relu), nn.Linear(5, 1)])
    net.bind()
    with pytest.raises(MiniMLError, match=r"Linear\(5, 1\): expected X .* got X of shape \(2, 4\)"):
        net.predict(_x(2, 3))


BAD_ARGUMENTS = {
    "Linear-n_in": (lambda: nn.Linear(0, 2), r"Linear: n_in must be an int >= 1, got 0"),
    "Linear-float": (lambda: nn.Linear(2.5, 2), r"n_in must be an int >= 1, got 2\.5"),
    "Linear-bias-reg": (
        lambda: nn.Linear(2, 2, reg_loss=None, apply_bias_reg=True),
        r"apply_bias_reg=True needs a reg_loss",
    ),
    "MLP-short": (lambda: nn.MLP([3]), r"layer_sizes needs at least two entries"),
    "MLP-activation": (lambda: nn.MLP([3, 1], activation="relu"), r"activation must be a callable"),
    "MLP-dropout": (
        lambda: nn.MLP([3, 1], dropout=1.0),
        r"dropout .* must lie in \[0, 1\), got 1\.0",
    ),
    "Dropout-rate": (lambda: nn.Dropout(-0.1), r"Dropout: rate .* must lie in \[0, 1\)"),
    "Conv-groups": (
        lambda: nn.Conv(1, 3, 4, 3, groups=2),
        r"must both be divisible by groups \(2\)",
    ),
    "Conv-kernel": (
        lambda: nn.Conv(2, 1, 1, (3, 3, 3)),
        r"kernel_size must be an int or a sequence of 2 ints",
    ),
    "Conv-padding": (
        lambda: nn.Conv(2, 1, 1, 3, padding="full"),
        r"padding must be one of \['valid', 'same'\]",
    ),
    "Conv-padding-pair": (
        lambda: nn.Conv(2, 1, 1, 3, padding=[(1, 2, 3), 1]),
        r"each padding entry must be an int >= 0 or a \(low, high\) pair",
    ),
    "Conv-data-format": (
        lambda: nn.Conv(1, 1, 1, 3, data_format="NHWC"),
        r"data_format must be one of",
    ),
    "Conv-bias-reg": (
        lambda: nn.Conv(1, 1, 1, 3, bias=False, apply_bias_reg=True),
        r"apply_bias_reg=True needs bias=True",
    ),
    "MaxPool-padding": (lambda: nn.MaxPool(1, 2, padding=2), r"more than half the dilated window"),
    "AvgPool-flag": (
        lambda: nn.AvgPool(1, 2, count_include_pad=1),
        r"count_include_pad must be True or False",
    ),
    "LayerNorm-eps": (lambda: nn.LayerNorm(3, eps=0.0), r"eps must be > 0"),
    "Embedding-unknown": (
        lambda: nn.Embedding(3, 2, use_unknown=1),
        r"use_unknown must be True or False",
    ),
    "Rotary-odd": (lambda: nn.RotaryPositionalEmbedding(5), r"dim must be even"),
    "MHA-heads": (
        lambda: nn.MultiHeadAttention(6, 4),
        r"embed_dim \(6\) must be divisible by num_heads \(4\)",
    ),
    "Parallel-mode": (
        lambda: nn.Parallel([nn.Identity()], mode="mean"),
        r"mode must be one of \['sum', 'concat'\]",
    ),
    "Parallel-axis": (
        lambda: nn.Parallel([nn.Identity()], mode="sum", concat_axis=0),
        r"concat_axis applies to mode='concat' only",
    ),
    "Stack-empty": (lambda: nn.Stack([]), r"Stack: expected a non-empty list of models"),
    "Activation-f": (lambda: nn.Activation(3), r"Activation: f must be a callable"),
    "Take-indices": (lambda: nn.Take([]), r"indices must be an int or a non-empty list of ints"),
    "Flatten-axis": (lambda: nn.Flatten(0), r"start_axis must be >= 1"),
    "RBFLayer-projection": (
        lambda: nn.RBFLayer(2, 1, 3, projection="diag"),
        r"projection must be one of",
    ),
    "PolyharmonicRBF-degree": (lambda: nn.PolyharmonicRBF(0), r"degree must be an int >= 1"),
    "LeakyReLU-alpha": (lambda: nn.LeakyReLU("a"), r"LeakyReLU: alpha must be a real number"),
}


@pytest.mark.parametrize("name", sorted(BAD_ARGUMENTS))
def test_invalid_arguments_raise_clear_errors(name):
    make, message = BAD_ARGUMENTS[name]
    with pytest.raises(MiniMLError, match=message):
        make()
