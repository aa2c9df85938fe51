"""Contract test: the gradients of every layer match central finite differences.

For each layer, with a random parameter buffer :math:`\\theta` and fixed random output
weights :math:`w`, the scalar :math:`f(\\theta, X) = \\sum w \\odot \\mathrm{layer}(X;
\\theta)` is differentiated by JAX and compared, along random unit directions, with
:math:`(f(\\theta + h v) - f(\\theta - h v)) / 2h` in float64. Layers with a float
input are also checked with respect to that input (what a layer stacked below sees).
Hessian-vector products with respect to the parameters (what Newton-type SciPy methods
use) are checked on three composite networks that hold every layer with parameters.
"""

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import miniml.nn as nn
from miniml import MiniMLModel, PredictMode

H = 1e-5
RTOL = 1e-7


@dataclass
class Case:
    make: Any
    X: Any
    kwargs: dict = field(default_factory=dict)
    mode: PredictMode = PredictMode.INFERENCE


def _normal(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape)


def _mask(L, S):
    return np.triu(np.ones((L, S), bool), k=1)


TRAIN = PredictMode.TRAIN
ACTIVATIONS = [nn.relu, nn.sigmoid, nn.tanh, nn.gelu, nn.silu, nn.softplus, nn.LeakyReLU(0.2)]
RBFS = [
    nn.gaussian_rbf,
    nn.multiquadric_rbf,
    nn.inverse_multiquadric_rbf,
    nn.inverse_quadratic_rbf,
    nn.linear_rbf,
    nn.r_tanh_rbf,
    nn.bump_rbf,
    nn.PolyharmonicRBF(2),
    nn.PolyharmonicRBF(3),
]
CASES = {
    "Linear": Case(lambda: nn.Linear(4, 3), _normal(5, 4)),
    "Linear-3d-input": Case(lambda: nn.Linear(4, 3), _normal(2, 5, 4)),
    "MLP": Case(lambda: nn.MLP([3, 5, 4, 2], activation=nn.tanh), _normal(6, 3)),
    "MLP-dropout-train": Case(lambda: nn.MLP([3, 6, 2], dropout=0.3), _normal(6, 3), mode=TRAIN),
    # One case runs every activation function side by side (one compilation).
    "Activation-all": Case(
        lambda: nn.Parallel([nn.Activation(f) for f in ACTIVATIONS], mode="concat"), _normal(4, 5)
    ),
    "Stack": Case(
        lambda: nn.Stack([nn.Linear(3, 4), nn.Activation(nn.silu), nn.Linear(4, 2)]),
        _normal(5, 3),
    ),
    "Parallel-residual-sum": Case(
        lambda: nn.Parallel(
            [nn.Stack([nn.Linear(3, 3), nn.Activation(nn.tanh)]), nn.Identity()], mode="sum"
        ),
        _normal(5, 3),
    ),
    "Parallel-concat": Case(
        lambda: nn.Parallel([nn.Linear(3, 2), nn.Identity(0.5)], mode="concat"), _normal(5, 3)
    ),
    "Identity": Case(lambda: nn.Identity(2.5), _normal(3, 4)),
    "Take": Case(lambda: nn.Take([2, 0], axis=1), _normal(3, 4, 2)),
    "Flatten": Case(lambda: nn.Flatten(), _normal(3, 2, 2, 3)),
    "Dropout-train": Case(lambda: nn.Dropout(0.4), _normal(6, 5), mode=TRAIN),
    "Embedding": Case(lambda: nn.Embedding(6, 3), np.array([[0, 5, 2], [2, 2, 1]])),
    "Embedding-unknown": Case(
        lambda: nn.Embedding(4, 3, use_unknown=True), np.array([[0, 9, -1], [3, 2, 4]])
    ),
    "LayerNorm": Case(lambda: nn.LayerNorm((3, 4)), _normal(2, 3, 4)),
    "PositionalEmbedding": Case(lambda: nn.PositionalEmbedding(6, 4), _normal(2, 5, 4)),
    "RotaryPositionalEmbedding": Case(lambda: nn.RotaryPositionalEmbedding(6), _normal(2, 5, 6)),
    "MultiHeadAttention-self-bool-mask": Case(
        lambda: nn.MultiHeadAttention(4, 2), _normal(2, 5, 4), {"attn_mask": _mask(5, 5)}
    ),
    "MultiHeadAttention-cross-float-mask": Case(
        lambda: nn.MultiHeadAttention(4, 2, kdim=3, vdim=2),
        (_normal(2, 3, 4, seed=1), _normal(2, 5, 3, seed=2), _normal(2, 5, 2, seed=3)),
        {"attn_mask": _normal(3, 5, seed=4)},
    ),
    "MultiHeadAttention-dropout-train": Case(
        lambda: nn.MultiHeadAttention(4, 1, dropout=0.3), _normal(2, 4, 4), mode=TRAIN
    ),
    "Conv-1d": Case(lambda: nn.Conv(1, 4, 2, 3, stride=2, dilation=2, groups=2), _normal(2, 9, 4)),
    "Conv-2d-same": Case(lambda: nn.Conv(2, 2, 3, (3, 2), padding="same"), _normal(2, 5, 4, 2)),
    "Conv-2d-channels-first": Case(
        lambda: nn.Conv(2, 2, 2, 2, padding=1, data_format="channels_first", bias=False),
        _normal(2, 2, 4, 3),
    ),
    "MaxPool": Case(lambda: nn.MaxPool(2, 2, padding=1), _normal(2, 5, 4, 2)),
    "AvgPool": Case(
        lambda: nn.AvgPool(1, 3, 2, padding=1, count_include_pad=False), _normal(2, 7, 3)
    ),
    "CayleyMatrix": Case(lambda: nn.CayleyMatrix(4), _normal(3, 4)),
    "RBFLayer-scaling": Case(lambda: nn.RBFLayer(2, 2, 5), _normal(6, 2)),
    "RBFLayer-none-normalized": Case(
        lambda: nn.RBFLayer(2, 1, 4, projection="none", normalize=True), _normal(6, 2)
    ),
    # Every radial basis function, each in its own RBFLayer (one compilation).
    "RBFLayer-every-rbf": Case(
        lambda: nn.Parallel(
            [nn.RBFLayer(2, 1, 4, rbf, projection="none", loss=None) for rbf in RBFS],
            mode="concat",
        ),
        0.7 * _normal(6, 2),
    ),
    "RBFLayer-ortho": Case(lambda: nn.RBFLayer(3, 1, 3, projection="ortho"), _normal(5, 3)),
    "RBFLayer-full-normalized-iq": Case(
        lambda: nn.RBFLayer(2, 2, 3, nn.inverse_quadratic_rbf, projection="full", normalize=True),
        _normal(5, 2),
    ),
}


def _check(exact, plus, minus):
    numeric = (np.asarray(plus) - np.asarray(minus)) / (2 * H)
    exact = np.asarray(exact)
    np.testing.assert_array_less(np.abs(exact - numeric), RTOL * np.maximum(1.0, np.abs(exact)))


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_match_finite_differences(name):
    case = CASES[name]
    rng = np.random.default_rng(sorted(CASES).index(name))
    layer = case.make()
    layer.bind()
    buffer = jnp.asarray(0.5 * rng.normal(size=layer.size))
    key = jax.random.key(3)
    float_input = all(
        np.issubdtype(np.asarray(x).dtype, np.floating) for x in jax.tree.leaves(case.X)
    )
    if float_input:
        x_flat, unravel = ravel_pytree(case.X)
    else:
        x_flat, unravel = jnp.zeros(0), lambda _: case.X

    def f(buffer, x_flat, weights):
        y = layer._predict_kernel(
            unravel(x_flat), buffer, rng_key=key, mode=case.mode, **case.kwargs
        )
        return jnp.sum(weights * y)

    out = jax.eval_shape(
        lambda b: layer._predict_kernel(case.X, b, rng_key=key, mode=case.mode, **case.kwargs),
        buffer,
    )
    weights = rng.normal(size=out.shape)

    def unit(n):
        v = rng.normal(size=(3, n))
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-300)

    vb, vx = unit(layer.size), unit(x_flat.size)

    @jax.jit
    def derivatives(buffer, x_flat):
        gb, gx = jax.grad(f, argnums=(0, 1))(buffer, x_flat, weights)
        fb = jax.vmap(lambda d: f(buffer + d, x_flat, weights))
        fx = jax.vmap(lambda d: f(buffer, x_flat + d, weights))
        value = f(buffer, x_flat, weights)
        return value, (vb @ gb, fb(H * vb), fb(-H * vb)), (vx @ gx, fx(H * vx), fx(-H * vx))

    value, param_checks, input_checks = derivatives(buffer, x_flat)
    assert np.isfinite(value)
    if layer.size:
        _check(*param_checks)
    if float_input:
        _check(*input_checks)
    assert layer.size or float_input


HVP_NETWORKS = {
    "convnet": Case(
        lambda: nn.Stack(
            [
                nn.Conv(2, 2, 3, 3, padding="same", groups=1),
                nn.Activation(nn.gelu),
                nn.MaxPool(2, 2, padding=1),
                nn.AvgPool(2, 2, count_include_pad=False, padding=1),
                nn.Flatten(),
                nn.LayerNorm(18),
                nn.MLP([18, 4, 2], activation=nn.silu),
            ]
        ),
        _normal(3, 5, 6, 2),
    ),
    "sequence": Case(
        lambda: nn.Stack(
            [
                nn.Embedding(5, 4, use_unknown=True),
                nn.PositionalEmbedding(4, 4),
                nn.RotaryPositionalEmbedding(4),
                nn.MultiHeadAttention(4, 2),
                nn.Flatten(),
                nn.Linear(12, 2),
            ]
        ),
        np.array([[0, 4, 7], [1, 2, 3]]),
        {"attn_mask": _normal(3, 3)},
    ),
    "rbf": Case(
        lambda: nn.Stack(
            [
                nn.CayleyMatrix(3),
                nn.Parallel(
                    [
                        nn.RBFLayer(3, 2, 3, projection="ortho", normalize=True),
                        nn.RBFLayer(3, 2, 2, nn.multiquadric_rbf, projection="full"),
                    ],
                    mode="sum",
                ),
            ]
        ),
        _normal(4, 3),
    ),
}


@pytest.mark.parametrize("name", sorted(HVP_NETWORKS))
def test_hessian_vector_products_match_finite_differences(name):
    case = HVP_NETWORKS[name]
    rng = np.random.default_rng(10)
    net = case.make()
    net.bind()
    buffer = jnp.asarray(0.5 * rng.normal(size=net.size))
    weights = rng.normal(
        size=jax.eval_shape(lambda b: net._predict_kernel(case.X, b, **case.kwargs), buffer).shape
    )
    v = rng.normal(size=net.size)
    v /= np.linalg.norm(v)

    def grad(b):
        return jax.grad(lambda b: jnp.sum(weights * net._predict_kernel(case.X, b, **case.kwargs)))(
            b
        )

    @jax.jit
    def products(buffer):
        hvp = jax.jvp(grad, (buffer,), (v,))[1]  # forward over reverse, as the objective
        return hvp, (grad(buffer + H * v) - grad(buffer - H * v)) / (2 * H)

    hvp, numeric = (np.asarray(a) for a in products(buffer))
    assert np.max(np.abs(hvp - numeric)) <= 1e-6 * max(1.0, np.max(np.abs(hvp)))


def test_every_layer_is_covered():
    layers = {
        name
        for name in nn.__all__
        if isinstance(getattr(nn, name), type) and issubclass(getattr(nn, name), MiniMLModel)
    }
    covered = {name.split("-")[0] for name in CASES}
    assert layers <= covered, sorted(layers - covered)
