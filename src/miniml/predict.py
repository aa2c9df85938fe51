"""The compiled inference path behind `MiniMLModel.predict`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from miniml.data import as_data, describe, describe_signature, signature_of
from miniml.errors import MiniMLError

if TYPE_CHECKING:
    from miniml.model import MiniMLModel

__all__ = ["compiled_predict", "predict_model", "split_kwargs"]


def split_kwargs(kwargs: dict[str, Any], where: str) -> tuple[dict[str, Any], tuple]:
    """Split forward-pass keyword arguments into traced arrays and static values."""
    dynamic: dict[str, Any] = {}
    static: list[tuple[str, Any]] = []
    for name, value in sorted(kwargs.items()):
        if isinstance(value, jax.Array | np.ndarray):
            dynamic[name] = value
            continue
        try:
            hash(value)
        except TypeError as err:
            raise MiniMLError(
                f"{where}: keyword argument {name!r} of type {type(value).__name__} is "
                "neither an array (traced) nor hashable (static); pass an array or a "
                "hashable value such as a tuple."
            ) from err
        static.append((name, value))
    return dynamic, tuple(static)


def compiled_predict(model: MiniMLModel, static: tuple) -> Callable[..., Any]:
    """The jitted inference function of ``model`` for these static keyword arguments."""
    from miniml.model import PredictMode, split_kernel_output

    key = ("predict", static)
    fn = model._compiled.get(key)
    if fn is None:
        static_kwargs = dict(static)

        def predict(buffer: jax.Array, X: Any, dynamic: dict[str, Any]) -> Any:
            out = model._predict_kernel(
                X, buffer, rng_key=None, mode=PredictMode.INFERENCE, **dynamic, **static_kwargs
            )
            return split_kernel_output(out)[0]

        fn = jax.jit(predict)
        model._compiled[key] = fn
    return fn


def _conformed(data: Any, expected: Any, where: str) -> Any:
    """``data`` with integer leaves cast to the floating dtype the fit saw there (a model
    fitted on floats predicts on ``[[1, 2, 3]]``); any other difference is an error."""
    treedef, fitted = expected
    leaves, given = jax.tree.flatten(data)
    fitted_like = f"the model was fitted on X like {describe_signature(expected)}"
    if given != treedef or any(
        tuple(leaf.shape[1:]) != shape for leaf, (shape, _) in zip(leaves, fitted, strict=True)
    ):
        raise MiniMLError(
            f"{where}: {fitted_like} (shapes after the sample axis must match), but got X "
            f"like {describe(data)}."
        )
    cast = []
    for leaf, (_, dtype) in zip(leaves, fitted, strict=True):
        if leaf.dtype != dtype:
            if dtype.kind != "f" or np.dtype(leaf.dtype).kind not in "biu":
                raise MiniMLError(
                    f"{where}: {fitted_like}, but got X like {describe(data)}: a {leaf.dtype} "
                    f"input where the fit had {dtype}. Pass the inputs with the dtypes of the "
                    f"fit, e.g. np.asarray(X, {dtype.name})."
                )
            leaf = leaf.astype(dtype)
        cast.append(leaf)
    return jax.tree.unflatten(treedef, cast)


def predict_model(model: MiniMLModel, X: Any, kwargs: dict[str, Any]) -> Any:
    where = f"{type(model).__name__}.predict"
    model._require_bound("predict")
    data, _ = as_data(X, "X", where, model.dtype)
    expected = vars(model).get("_miniml_input_signature")
    if expected is not None and signature_of(data) != expected:
        data = _conformed(data, expected, where)
    dynamic, static = split_kwargs(kwargs, where)
    fn = compiled_predict(model, static)
    try:
        return fn(model.get_buffer(copy=False), data, dynamic)
    except MiniMLError:
        raise
    except Exception as err:
        raise MiniMLError(
            f"{where}: the forward pass failed for X like {describe(data)}: "
            f"{type(err).__name__}: {err}"
        ) from err
