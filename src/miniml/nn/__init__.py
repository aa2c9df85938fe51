"""Neural-network layers: each one a `MiniMLModel`, composable and fittable.

Conventions shared by every layer:

* The first axis of every input indexes samples; each layer documents its input and
  output shapes. Spatial layers (`Conv`, `MaxPool`, `AvgPool`) use channels-last
  inputs ``(N, *spatial, C)`` by default (``data_format="channels_first"`` gives
  PyTorch's ``(N, C, *spatial)``).
* A wrong rank, size or dtype raises a `MiniMLError` naming the layer, what it expected
  and what it got, when `fit`/`predict` traces the forward pass (shapes are static).
* Parameters have dotted names: ``W``/``b`` for affine maps, ``layers.{k}.W`` inside a
  `Stack` or `MLP`, ``branches.{k}....`` inside a `Parallel`.
* Layers meant to be fitted on their own (`Linear`, `MLP`, `Conv`, `LayerNorm`,
  `MultiHeadAttention`, `RBFLayer`) take a ``loss`` (default squared error); the
  others, and `Stack`/`Parallel` by default, have none: pass a loss to the outermost
  model you fit.
* Randomness (dropout) uses the ``rng_key`` of the forward pass, only in training mode.
"""

from miniml.nn.activations import (
    Activation,
    ActivationFunction,
    LeakyReLU,
    gelu,
    relu,
    sigmoid,
    silu,
    softplus,
    tanh,
)
from miniml.nn.compose import Flatten, Identity, Parallel, Stack, Take
from miniml.nn.conv import Conv
from miniml.nn.dropout import Dropout
from miniml.nn.embedding import Embedding
from miniml.nn.layer_norm import LayerNorm
from miniml.nn.linear import Linear
from miniml.nn.mha import MultiHeadAttention
from miniml.nn.mlp import MLP
from miniml.nn.ortho import CayleyMatrix
from miniml.nn.pool import AvgPool, MaxPool
from miniml.nn.positional import PositionalEmbedding, RotaryPositionalEmbedding
from miniml.nn.rbf import (
    PolyharmonicRBF,
    RBFunction,
    bump_rbf,
    gaussian_rbf,
    inverse_multiquadric_rbf,
    inverse_quadratic_rbf,
    linear_rbf,
    multiquadric_rbf,
    r_tanh_rbf,
)
from miniml.nn.rbfnet import RBFLayer

__all__ = [
    "MLP",
    "Activation",
    "ActivationFunction",
    "AvgPool",
    "CayleyMatrix",
    "Conv",
    "Dropout",
    "Embedding",
    "Flatten",
    "Identity",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "MaxPool",
    "MultiHeadAttention",
    "Parallel",
    "PolyharmonicRBF",
    "PositionalEmbedding",
    "RBFLayer",
    "RBFunction",
    "RotaryPositionalEmbedding",
    "Stack",
    "Take",
    "bump_rbf",
    "gaussian_rbf",
    "gelu",
    "inverse_multiquadric_rbf",
    "inverse_quadratic_rbf",
    "linear_rbf",
    "multiquadric_rbf",
    "r_tanh_rbf",
    "relu",
    "sigmoid",
    "silu",
    "softplus",
    "tanh",
]
