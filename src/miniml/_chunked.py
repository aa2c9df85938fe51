"""Exact full-batch evaluation in chunks (Kormos' idea), inside one compiled function.

The data are padded once, at the start of a fit, to a whole number of chunks and
reshaped to ``(n_chunks, chunk_size, ...)`` with a mask that marks real rows. The
value, gradient and Hessian-vector product are accumulated over chunks by
`jax.lax.scan`, each chunk differentiated on its own, so peak memory holds one chunk's
activations instead of the whole data set's.

Exactness needs a loss that is a sum or a mean of per-sample terms, which every loss
of `miniml.loss` is: a chunk's rows are scored one by one (``loss(y[i:i+1],
y_pred[i:i+1])``), masked, and added up; a mean loss is divided by the number of real
rows at the end. The penalty is added once, outside the scan.

A model that draws random numbers in training mode (``rng_key``: dropout, noise) gets
its own key per chunk, the fit's key folded with the chunk's index (chunk 0 keeps the
fit's key, so a one-chunk evaluation is the direct one): every row is drawn from the
same distribution as in the direct evaluation, but not with the same draws, so such
objectives are not equal chunked and unchunked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array as JXArray

from miniml.errors import MiniMLError
from miniml.param import split_parameter_views

if TYPE_CHECKING:
    from miniml.model import MiniMLModel
    from miniml.objective import Hyper

__all__ = ["chunk_data", "chunked_functions"]


def chunk_data(data: Any, n_samples: int, chunk_size: int) -> Any:
    """``(X, y)`` → ``(X_chunks, y_chunks, mask)`` with leading axes ``(n_chunks, chunk)``."""
    n_chunks = -(-n_samples // chunk_size)
    pad = n_chunks * chunk_size - n_samples

    def reshape(leaf: JXArray) -> JXArray:
        if pad:
            # Padding rows repeat row 0, so every padded value is valid input to the model.
            filler = jnp.broadcast_to(leaf[:1], (pad, *leaf.shape[1:]))
            leaf = jnp.concatenate([leaf, filler], axis=0)
        return leaf.reshape(n_chunks, chunk_size, *leaf.shape[1:])

    mask = (np.arange(n_chunks * chunk_size) < n_samples).reshape(n_chunks, chunk_size)
    X, y = data
    return jax.tree.map(reshape, X), jax.tree.map(reshape, y), jnp.asarray(mask)


def chunked_functions(
    model: MiniMLModel,
    trainable: np.ndarray | None,
    static_kwargs: dict[str, Any],
    reduction: str,
) -> tuple[Callable[..., JXArray], Callable[..., Any], Callable[..., JXArray]]:
    """``(value, value_and_grad, hvp)`` over chunked data ``(X_chunks, y_chunks, mask)``."""
    from miniml.model import PredictMode, split_kernel_output

    loss = model.loss_function
    assert loss is not None

    def full_buffer(theta: JXArray, base: JXArray | None) -> JXArray:
        return theta if trainable is None else base.at[trainable].set(theta)  # type: ignore[union-attr]

    def chunk_term(theta: JXArray, base: Any, chunk: Any, hyper: Hyper) -> JXArray:
        (X, y, mask), index = chunk
        # One key per chunk: the same key would repeat every chunk's random draws.
        key = jax.lax.select(index == 0, hyper.rng_key, jax.random.fold_in(hyper.rng_key, index))
        buffer = full_buffer(theta, base)
        with split_parameter_views(buffer, model):
            out = model._predict_kernel(X, buffer, rng_key=key, mode=PredictMode.TRAIN,
                                        **static_kwargs)  # fmt: skip
        y_pred, activity = split_kernel_output(out)
        if activity is not None:
            raise MiniMLError(
                f"{type(model).__name__}.fit: chunked evaluation cannot split an activity "
                "loss over chunks exactly; fit without batch_size/chunk_size."
            )
        rows = jax.vmap(lambda t, p: loss(t[None], p[None]))(y, y_pred)
        return jnp.sum(jnp.where(mask, rows, 0.0))

    def indexed(data: Any) -> tuple[Any, JXArray]:
        """The chunks with their indices, for `jax.lax.scan`."""
        return data, jnp.arange(data[2].shape[0], dtype=jnp.uint32)

    def scale(data: Any, hyper: Hyper) -> JXArray:
        mask = data[2]
        n_real = jnp.sum(mask).astype(hyper.data_scale.dtype)
        return hyper.data_scale / n_real if reduction == "mean" else hyper.data_scale

    def penalty(theta: JXArray, base: Any, hyper: Hyper) -> JXArray:
        buffer = full_buffer(theta, base)
        with split_parameter_views(buffer, model):
            return hyper.reg_lambda * model._regularization(buffer, hyper.reg_scales)

    def value(theta: JXArray, base: Any, data: Any, hyper: Hyper) -> JXArray:
        def body(total: JXArray, chunk: Any) -> tuple[JXArray, None]:
            return total + chunk_term(theta, base, chunk, hyper), None

        total, _ = jax.lax.scan(body, jnp.zeros((), theta.dtype), indexed(data))
        return (scale(data, hyper) * total + penalty(theta, base, hyper)).reshape(())

    def value_and_grad(theta: JXArray, base: Any, data: Any, hyper: Hyper) -> Any:
        chunk_vg = jax.value_and_grad(chunk_term)

        def body(carry: Any, chunk: Any) -> tuple[Any, None]:
            v, g = chunk_vg(theta, base, chunk, hyper)
            return (carry[0] + v, carry[1] + g), None

        start = (jnp.zeros((), theta.dtype), jnp.zeros_like(theta))
        (total, grad), _ = jax.lax.scan(body, start, indexed(data))
        factor = scale(data, hyper)
        p_value, p_grad = jax.value_and_grad(penalty)(theta, base, hyper)
        return (factor * total + p_value).reshape(()), factor * grad + p_grad

    def hvp(theta: JXArray, vector: JXArray, base: Any, data: Any, hyper: Hyper) -> JXArray:
        chunk_grad = jax.grad(chunk_term)
        penalty_grad = jax.grad(penalty)

        def body(acc: JXArray, chunk: Any) -> tuple[JXArray, None]:
            product = jax.jvp(lambda t: chunk_grad(t, base, chunk, hyper), (theta,), (vector,))[1]
            return acc + product, None

        total, _ = jax.lax.scan(body, jnp.zeros_like(theta), indexed(data))
        p_hvp = jax.jvp(lambda t: penalty_grad(t, base, hyper), (theta,), (vector,))[1]
        return scale(data, hyper) * total + p_hvp

    return value, value_and_grad, hvp
