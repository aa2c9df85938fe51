"""Numerical parity with PyTorch (float64, tolerance 1e-10) on stored fixtures.

The fixtures are made by ``fixtures/make_torch_fixtures.py``; each holds PyTorch's
weights in PyTorch's layout, so these tests also pin down the documented mapping from
PyTorch's parameters to MiniML's.
"""

import numpy as np
import pytest

from miniml.nn import (
    AvgPool,
    Conv,
    Embedding,
    LayerNorm,
    Linear,
    MaxPool,
    MultiHeadAttention,
)
from tests.nn.helpers import TOL, load_cases, to_channels_last, torch_conv_weight, with_params

CONV = load_cases("conv")
POOL = load_cases("pool")
LAYER_NORM = load_cases("layer_norm")
MHA = load_cases("mha")


def _close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=TOL, atol=TOL)


def test_linear_matches_torch():
    case = load_cases("linear")["linear"]
    cfg = case["config"]
    layer = with_params(Linear(cfg["n_in"], cfg["n_out"]), W=case["weight"].T, b=case["bias"])
    _close(layer.predict(case["x"]), case["out"])


def _conv_layer(cfg, case, data_format):
    layer = Conv(**cfg, data_format=data_format)
    params = {"W": torch_conv_weight(case["weight"])}
    if cfg["bias"]:
        params["b"] = case["bias"]
    return with_params(layer, **params)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("name", sorted(CONV))
def test_conv_matches_torch(name, data_format):
    case = CONV[name]
    cfg = dict(case["config"])
    if isinstance(cfg["padding"], list) and isinstance(cfg["padding"][0], list):
        cfg["padding"] = [tuple(p) for p in cfg["padding"]]
    layer = _conv_layer(cfg, case, data_format)
    if data_format == "channels_first":
        _close(layer.predict(case["x"]), case["out"])
    else:
        _close(layer.predict(to_channels_last(case["x"])), to_channels_last(case["out"]))


def _pool_layer(cfg, data_format):
    kwargs = {k: cfg[k] for k in ("n_dim", "kernel_size", "stride", "padding")}
    if cfg["kind"] == "max":
        return MaxPool(**kwargs, dilation=cfg["dilation"], data_format=data_format)
    return AvgPool(**kwargs, count_include_pad=cfg["count_include_pad"], data_format=data_format)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("name", sorted(POOL))
def test_pooling_matches_torch(name, data_format):
    case = POOL[name]
    layer = _pool_layer(case["config"], data_format)
    layer.bind()
    if data_format == "channels_first":
        _close(layer.predict(case["x"]), case["out"])
    else:
        _close(layer.predict(to_channels_last(case["x"])), to_channels_last(case["out"]))


@pytest.mark.parametrize("name", sorted(LAYER_NORM))
def test_layer_norm_matches_torch(name):
    case = LAYER_NORM[name]
    cfg = case["config"]
    layer = LayerNorm(tuple(cfg["normalized_shape"]), eps=cfg["eps"])
    with_params(layer, gamma=case["weight"], beta=case["bias"])
    _close(layer.predict(case["x"]), case["out"])


def test_embedding_matches_torch():
    case = load_cases("embedding")["embedding"]
    cfg = case["config"]
    layer = with_params(Embedding(cfg["n_vocab"], cfg["dim"]), embeddings=case["weight"])
    _close(layer.predict(case["x"]), case["out"])


def _mha_layer(case):
    cfg = case["config"]
    layer = MultiHeadAttention(cfg["embed_dim"], cfg["num_heads"], cfg["kdim"], cfg["vdim"])
    return with_params(
        layer,
        Wq=case["wq"].T,
        Wk=case["wk"].T,
        Wv=case["wv"].T,
        bq=case["bq"],
        bk=case["bk"],
        bv=case["bv"],
        **{"out_proj.W": case["wo"].T, "out_proj.b": case["bo"]},
    )


@pytest.mark.parametrize("name", sorted(MHA))
def test_multi_head_attention_matches_torch_with_masks_as_keywords(name):
    case = MHA[name]
    layer = _mha_layer(case)
    masks = {k: case[k] for k in ("attn_mask", "key_padding_mask") if k in case}
    self_attention = name.startswith("self")
    X = case["query"] if self_attention else (case["query"], case["key"], case["value"])
    _close(layer.predict(X, **masks), case["out"])
    # Per-sample masks (and, for fit, every mask) can travel inside X as a dict.
    n = case["query"].shape[0]
    inside = dict(masks)
    if "attn_mask" in inside and inside["attn_mask"].ndim == 2:
        inside["attn_mask"] = np.broadcast_to(inside["attn_mask"], (n, *inside["attn_mask"].shape))
    X_dict = {"query": case["query"], **inside}
    if not self_attention:
        X_dict.update(key=case["key"], value=case["value"])
    _close(layer.predict(X_dict), case["out"])


def test_mha_fixtures_cover_bool_float_and_padding_masks():
    """The parity cases above must keep exercising every kind of mask."""
    kinds = {
        (k, str(case[k].dtype), case[k].ndim)
        for case in MHA.values()
        for k in ("attn_mask", "key_padding_mask")
        if k in case
    }
    assert ("attn_mask", "bool", 2) in kinds and ("attn_mask", "float64", 2) in kinds
    assert ("attn_mask", "bool", 3) in kinds and ("attn_mask", "float64", 4) in kinds
    assert ("key_padding_mask", "bool", 2) in kinds
    assert any(case["config"]["kdim"] != case["config"]["embed_dim"] for case in MHA.values())
