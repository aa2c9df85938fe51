"""`Embedding`: a lookup table from integer indices to learned vectors."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import Array as JXArray

from miniml.errors import MiniMLError
from miniml.loss import RegLossFunction
from miniml.model import MiniMLModel, PredictMode
from miniml.nn._checks import check_array, layer_name, positive_int
from miniml.param import MiniMLParam

__all__ = ["Embedding"]


class Embedding(MiniMLModel):
    r"""Map integer indices to rows of a learned table: :math:`y_{\dots} = E_{x_{\dots}}`.

    Input: an integer array ``X`` of any shape ``(N, ...)``. Output: shape
    ``(N, ..., dim)``. Parameter: ``embeddings`` of shape ``(n_vocab, dim)``, or
    ``(n_vocab + 1, dim)`` with ``use_unknown=True`` (the last row is the "unknown"
    vector); initialized as standard normal values (as in PyTorch).

    Indices outside ``[0, n_vocab)`` (negative ones included: there is no wrap-around)
    are never silently read from another row:

    * ``use_unknown=True``: they map to the learned unknown row ``embeddings[n_vocab]``,
      which is trained like any other row.
    * ``use_unknown=False``: their output rows are NaN. `predict` returns NaN for those
      samples, and a `fit` on such data reaches a non-finite objective, which stops it
      with a `NonFiniteWarning` and leaves the parameters unchanged. (Values are not
      known while the forward pass is traced, so the layer cannot raise there; call
      `check_indices` on your data for an immediate error.)

    Args:
        n_vocab: the number of known indices.
        dim: the length of each vector.
        use_unknown: add a learned row for out-of-range indices.
        reg_loss: regularizer of the table (e.g. ``LNormRegularization(2)``), or None.
        dtype: float32 or float64 (default float64).
    """

    def __init__(
        self,
        n_vocab: int,
        dim: int,
        use_unknown: bool = False,
        reg_loss: RegLossFunction | None = None,
        dtype: Any = None,
    ) -> None:
        self.n_vocab = positive_int(n_vocab, "n_vocab", "Embedding")
        self.dim = positive_int(dim, "dim", "Embedding")
        if not isinstance(use_unknown, bool):
            raise MiniMLError(f"Embedding: use_unknown must be True or False, got {use_unknown!r}.")
        self.use_unknown = use_unknown
        self.embeddings = MiniMLParam(
            (self.n_vocab + int(use_unknown), self.dim), dtype=dtype, reg_loss=reg_loss
        )
        super().__init__(loss=None)

    def check_indices(self, indices: Any) -> None:
        """Raise a `MiniMLError` unless ``indices`` are integers in ``[0, n_vocab)``.

        Call it on the data before `fit`/`predict` when out-of-range indices are a bug
        rather than unseen categories.
        """
        array = np.asarray(indices)
        if array.dtype.kind not in "iu":
            raise MiniMLError(
                f"{layer_name(self)}.check_indices: expected integer indices, got dtype "
                f"{array.dtype}. Convert them with .astype(int)."
            )
        bad = (array < 0) | (array >= self.n_vocab)
        if bad.any():
            raise MiniMLError(
                f"{layer_name(self)}.check_indices: {int(bad.sum())} index(es) lie outside "
                f"[0, {self.n_vocab}) (range found: [{array.min()}, {array.max()}]). Map "
                "unseen categories to a known index, or build the layer with use_unknown=True."
            )

    def _predict_kernel(
        self,
        X: Any,
        buffer: JXArray,
        rng_key: JXArray | None = None,
        mode: PredictMode = PredictMode.INFERENCE,
    ) -> JXArray:
        check_array(self, X)
        if not jnp.issubdtype(X.dtype, jnp.integer):
            raise MiniMLError(
                f"{layer_name(self)}: expected integer indices of shape (N, ...), got dtype "
                f"{X.dtype}. Convert them with .astype(int) (MiniML converts float inputs "
                "to the model's dtype, so pass the indices as an integer array)."
            )
        table = self.embeddings(buffer)
        valid = (X >= 0) & (self.n_vocab > X)
        rows = jnp.take(table, jnp.where(valid, X, 0), axis=0)
        if self.use_unknown:
            fallback = table[self.n_vocab]
        else:
            fallback = jnp.full((self.dim,), jnp.nan, table.dtype)
        return jnp.where(valid[..., None], rows, fallback)
