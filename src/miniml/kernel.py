"""The forward-pass contract: modes, outputs with activity losses, short kernels."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from enum import StrEnum
from typing import Any, NamedTuple

from jax import Array as JXArray

__all__ = ["PredictKernelOutput", "PredictMode", "split_kernel_output", "wrap_short_kernel"]


class PredictMode(StrEnum):
    """Why the forward pass runs: ``TRAIN`` inside `fit`, ``INFERENCE`` in `predict`."""

    TRAIN = "train"
    INFERENCE = "inference"


class PredictKernelOutput(NamedTuple):
    """What a forward pass returns when it also has an activity penalty.

    ``activity_loss`` is added to the objective times ``active_reg_lambda``.
    """

    y_pred: Any
    activity_loss: JXArray


def split_kernel_output(out: Any) -> tuple[Any, JXArray | None]:
    """Return ``(y_pred, activity_loss or None)`` from a forward pass's output."""
    if isinstance(out, PredictKernelOutput):
        return out.y_pred, out.activity_loss
    return out, None


def wrap_short_kernel(kernel: Callable[..., Any]) -> Callable[..., Any]:
    """Let ``_predict_kernel(self, X, buffer)`` be called with ``rng_key`` and ``mode``.

    MiniML's README writes the short form; composite models call children with the long
    form. Arguments the user's kernel does not declare are not passed to it.
    """
    params = inspect.signature(kernel).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kernel
    accepts_rng, accepts_mode = "rng_key" in params, "mode" in params
    if accepts_rng and accepts_mode:
        return kernel

    @functools.wraps(kernel)
    def kernel_with_defaults(
        self: Any,
        X: Any,
        buffer: JXArray,
        rng_key: JXArray | None = None,
        mode: PredictMode = PredictMode.INFERENCE,
        **kwargs: Any,
    ) -> Any:
        if accepts_rng:
            kwargs["rng_key"] = rng_key
        if accepts_mode:
            kwargs["mode"] = mode
        return kernel(self, X, buffer, **kwargs)

    return kernel_with_defaults
