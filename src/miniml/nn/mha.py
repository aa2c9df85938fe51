"""`MultiHeadAttention`: scaled dot-product attention with several heads."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array as JXArray

from miniml.errors import MiniMLError
from miniml.loss import LossFunction, RegLossFunction, squared_error_loss
from miniml.model import MiniMLModel, PredictMode
from miniml.nn._checks import (
    check_array,
    check_axis_size,
    check_rank,
    check_rate,
    layer_name,
    positive_int,
)
from miniml.nn.dropout import inverted_dropout
from miniml.nn.linear import L2, Linear
from miniml.param import MiniMLParam

__all__ = ["MultiHeadAttention"]

_INPUT_KEYS = ("query", "key", "value", "attn_mask", "key_padding_mask")


class MultiHeadAttention(MiniMLModel):
    r"""Multi-head attention (Vaswani et al. 2017), numerically equal to PyTorch's
    ``nn.MultiheadAttention(batch_first=True)``.

    For query :math:`Q_x` ``(N, L, embed_dim)``, key :math:`K_x` ``(N, S, kdim)`` and
    value :math:`V_x` ``(N, S, vdim)``, with :math:`H` heads of size
    :math:`d_h = E / H`:

    .. math::

        Q = Q_x W_q + b_q, \quad K = K_x W_k + b_k, \quad V = V_x W_v + b_v \\
        A_h = \mathrm{softmax}\Big(\frac{Q_h K_h^\top}{\sqrt{d_h}} + M\Big), \qquad
        \hat{y} = \big[\mathrm{drop}_p(A_1) V_1, \dots, \mathrm{drop}_p(A_H) V_H\big]
            W_o + b_o

    where :math:`Q_h` are columns :math:`h d_h, \dots, (h+1) d_h - 1` of :math:`Q` and
    the softmax runs over the :math:`S` keys. :math:`M` combines the masks: a boolean
    mask adds :math:`-\infty` where it is True (that key is hidden), a float mask is
    added as it is. A query whose keys are all hidden gets NaN, as in PyTorch.
    :math:`\mathrm{drop}_p` is dropout on the attention weights in training mode.

    Inputs (``X``):

    * an array ``(N, L, embed_dim)``: self-attention (query = key = value);
    * a tuple ``(query, key, value)``: cross-attention;
    * a dict with ``"query"`` and optionally ``"key"`` (default: query), ``"value"``
      (default: key), ``"attn_mask"`` and ``"key_padding_mask"``. Masks inside ``X``
      work in `fit`, which batches every entry of ``X`` along its first axis.

    Masks may also be given as forward-pass keywords (``model.predict(X,
    attn_mask=m)``): ``attn_mask`` of shape ``(L, S)``, ``(N, L, S)`` or
    ``(N, num_heads, L, S)``; ``key_padding_mask`` of shape ``(N, S)``; boolean (True
    hides) or float (added to the scores). Output: ``(N, L, embed_dim)``.

    Parameters: ``Wq`` ``(embed_dim, embed_dim)``, ``Wk`` ``(kdim, embed_dim)``, ``Wv``
    ``(vdim, embed_dim)`` (normal, std :math:`1/\sqrt{\text{fan-in}}`, regularized by
    ``reg_loss``), ``bq``, ``bk``, ``bv`` (zeros) and the output projection
    ``out_proj.W``, ``out_proj.b`` (a `Linear`). PyTorch's ``in_proj_weight`` rows
    ``[0:E]``, ``[E:2E]``, ``[2E:3E]`` are ``Wq.T``, ``Wk.T``, ``Wv.T``.

    Args:
        embed_dim: the model size :math:`E`; divisible by ``num_heads``.
        num_heads: the number of heads :math:`H`.
        kdim: the key features (default ``embed_dim``).
        vdim: the value features (default ``embed_dim``).
        dropout: drop probability on the attention weights (training mode only).
        loss: the data loss when the layer is fitted on its own (None inside models).
        reg_loss: regularizer of the projection matrices (default squared L2).
        dtype: float32 or float64 (default float64).
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int = 1,
        kdim: int | None = None,
        vdim: int | None = None,
        dropout: float = 0.0,
        loss: LossFunction | None = squared_error_loss,
        reg_loss: RegLossFunction | None = L2,
        dtype: Any = None,
    ) -> None:
        where = "MultiHeadAttention"
        self.embed_dim = positive_int(embed_dim, "embed_dim", where)
        self.num_heads = positive_int(num_heads, "num_heads", where)
        if embed_dim % num_heads:
            raise MiniMLError(
                f"{where}: embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})."
            )
        self.kdim = self.embed_dim if kdim is None else positive_int(kdim, "kdim", where)
        self.vdim = self.embed_dim if vdim is None else positive_int(vdim, "vdim", where)
        self.dropout = check_rate(dropout, "dropout", where)
        E = self.embed_dim
        self.Wq = MiniMLParam((E, E), dtype=dtype, reg_loss=reg_loss, rnd_scale=1 / math.sqrt(E))
        self.Wk = MiniMLParam(
            (self.kdim, E), dtype=dtype, reg_loss=reg_loss, rnd_scale=1 / math.sqrt(self.kdim)
        )
        self.Wv = MiniMLParam(
            (self.vdim, E), dtype=dtype, reg_loss=reg_loss, rnd_scale=1 / math.sqrt(self.vdim)
        )
        self.bq = MiniMLParam((E,), dtype=dtype, rnd_scale=0.0)
        self.bk = MiniMLParam((E,), dtype=dtype, rnd_scale=0.0)
        self.bv = MiniMLParam((E,), dtype=dtype, rnd_scale=0.0)
        self.out_proj = Linear(E, E, loss=None, reg_loss=reg_loss, dtype=dtype)
        super().__init__(loss=loss)

    def _unpack(self, X: Any, attn_mask: Any, key_padding_mask: Any) -> tuple[Any, ...]:
        name = layer_name(self)
        if isinstance(X, dict):
            unknown = sorted(set(X) - set(_INPUT_KEYS))
            if unknown or "query" not in X:
                raise MiniMLError(
                    f"{name}: a dict input needs the key 'query' and may have {_INPUT_KEYS[1:]}; "
                    f"got keys {sorted(X)}."
                )
            for mask_name, given in (
                ("attn_mask", attn_mask),
                ("key_padding_mask", key_padding_mask),
            ):
                if mask_name in X and given is not None:
                    raise MiniMLError(
                        f"{name}: {mask_name} was given both inside X and as a keyword; "
                        "pass it once."
                    )
            query = X["query"]
            key = X.get("key", query)
            value = X.get("value", key)
            attn_mask = X.get("attn_mask", attn_mask)
            key_padding_mask = X.get("key_padding_mask", key_padding_mask)
        elif isinstance(X, tuple | list):
            if len(X) != 3:
                raise MiniMLError(
                    f"{name}: a tuple input must be (query, key, value), got {len(X)} entries."
                )
            query, key, value = X
        else:
            query = key = value = X
        return query, key, value, attn_mask, key_padding_mask

    def _check_inputs(self, query: Any, key: Any, value: Any) -> tuple[int, int, int]:
        for what, array, dim in (
            ("query", query, self.embed_dim),
            ("key", key, self.kdim),
            ("value", value, self.vdim),
        ):
            layout = f"(N, {'L' if what == 'query' else 'S'}, {dim})"
            check_rank(self, array, (3,), layout, what)
            check_axis_size(self, array, -1, dim, layout, what)
        if not query.shape[0] == key.shape[0] == value.shape[0] or key.shape[1] != value.shape[1]:
            raise MiniMLError(
                f"{layer_name(self)}: query (N, L, E), key (N, S, kdim) and value (N, S, vdim) "
                f"must agree on N and S, got shapes {tuple(query.shape)}, {tuple(key.shape)}, "
                f"{tuple(value.shape)}."
            )
        return query.shape[0], query.shape[1], key.shape[1]

    def _mask_scores(
        self, scores: JXArray, mask: Any, shapes: list[tuple[int, ...]], what: str
    ) -> JXArray:
        """Apply a boolean (True hides) or additive float mask broadcast to the scores."""
        check_array(self, mask, what)
        shape = tuple(mask.shape)
        if shape not in shapes:
            raise MiniMLError(
                f"{layer_name(self)}: expected {what} of shape one of {shapes}, got {shape}."
            )
        if what == "key_padding_mask":
            mask = mask[:, None, None, :]
        elif mask.ndim == 2:
            mask = mask[None, None]
        elif mask.ndim == 3:
            mask = mask[:, None]
        if mask.dtype == jnp.bool_:
            return jnp.where(mask, -jnp.inf, scores)
        if not jnp.issubdtype(mask.dtype, jnp.floating):
            raise MiniMLError(
                f"{layer_name(self)}: {what} must be boolean (True hides a key) or float "
                f"(added to the scores), got dtype {mask.dtype}."
            )
        return scores + mask.astype(scores.dtype)

    def _predict_kernel(
        self,
        X: Any,
        buffer: JXArray,
        rng_key: JXArray | None = None,
        mode: PredictMode = PredictMode.INFERENCE,
        attn_mask: Any = None,
        key_padding_mask: Any = None,
    ) -> JXArray:
        query, key, value, attn_mask, key_padding_mask = self._unpack(
            X, attn_mask, key_padding_mask
        )
        N, L, S = self._check_inputs(query, key, value)
        H, d = self.num_heads, self.embed_dim // self.num_heads
        q = (query @ self.Wq(buffer) + self.bq(buffer)).reshape(N, L, H, d)
        k = (key @ self.Wk(buffer) + self.bk(buffer)).reshape(N, S, H, d)
        v = (value @ self.Wv(buffer) + self.bv(buffer)).reshape(N, S, H, d)
        scores = jnp.einsum("nlhd,nshd->nhls", q, k) / math.sqrt(d)
        if attn_mask is not None:
            shapes = [(L, S), (N, L, S), (N, H, L, S)]
            scores = self._mask_scores(scores, attn_mask, shapes, "attn_mask")
        if key_padding_mask is not None:
            scores = self._mask_scores(scores, key_padding_mask, [(N, S)], "key_padding_mask")
        weights = jax.nn.softmax(scores, axis=-1)
        weights = inverted_dropout(weights, self.dropout, rng_key, mode, layer_name(self))
        out = jnp.einsum("nhls,nshd->nlhd", weights, v).reshape(N, L, self.embed_dim)
        return self.out_proj._predict_kernel(out, buffer, mode=mode)
