"""Composition: `Stack` (sequential), `Parallel` (sum or concatenation), `Identity`,
`Take` and `Flatten`.

A residual block :math:`y = x + g(x)` is ``Parallel([g, Identity()], mode="sum")``;
see the `Parallel` docstring.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array as JXArray

from miniml.errors import MiniMLError
from miniml.loss import LossFunction
from miniml.model import MiniMLModel, MiniMLModelList, PredictMode
from miniml.nn._checks import check_array, check_choice, check_rank, layer_name, real_number
from miniml.nn._routing import finish, run_child, split_keys, union_kwargs

__all__ = ["Flatten", "Identity", "Parallel", "Stack", "Take"]


def _model_list(models: Iterable[MiniMLModel], where: str) -> MiniMLModelList:
    if isinstance(models, MiniMLModel):
        raise MiniMLError(f"{where}: expected a list of models, got a single {models!r}.")
    items = list(models)
    if not items:
        raise MiniMLError(f"{where}: expected a non-empty list of models, got an empty one.")
    return MiniMLModelList(items)


class Stack(MiniMLModel):
    r"""Sequential composition :math:`\hat{y} = f_K(\cdots f_2(f_1(X)))`.

    Input: what the first layer takes. Output: what the last layer returns. Each layer
    gets its own random subkey; keyword arguments of the forward pass go to the layers
    that declare them; activity losses of the layers are added up.

    Parameters: those of the layers, named ``layers.{k}.<name>``.

    Args:
        models: the layers, applied in order.
        loss: the data loss when the stack is the model being fitted (default None:
            pass one, e.g. ``CrossEntropyLogLoss(expect_labels=True)``, to fit it).
    """

    def __init__(self, models: Sequence[MiniMLModel], loss: LossFunction | None = None) -> None:
        self.layers = _model_list(models, "Stack")
        super().__init__(loss=loss)

    def _nn_kwarg_names(self) -> frozenset[str] | None:
        return union_kwargs(self.layers)

    def _predict_kernel(
        self,
        X: Any,
        buffer: JXArray,
        rng_key: JXArray | None = None,
        mode: PredictMode = PredictMode.INFERENCE,
        **kwargs: Any,
    ) -> Any:
        used: set[str] = set()
        activities = []
        for layer, key in zip(self.layers, split_keys(rng_key, len(self.layers)), strict=True):
            X, activity = run_child(layer, X, buffer, key, mode, kwargs, used)
            if activity is not None:
                activities.append(activity)
        return finish(self, X, activities, kwargs, used)


class Parallel(MiniMLModel):
    r"""Apply several layers to the same input and combine their outputs.

    ``mode="sum"``: :math:`\hat{y} = \sum_k f_k(X)` (all outputs must have the same
    shape). ``mode="concat"``: the outputs are concatenated along ``concat_axis`` (all
    other axes must agree). A residual block :math:`y = x + g(x)`::

        block = Parallel([Stack([Linear(d, d), Activation(relu), Linear(d, d)]),
                          Identity()], mode="sum")

    Parameters: those of the branches, named ``branches.{k}.<name>``.

    Args:
        models: the branches.
        mode: ``"sum"`` or ``"concat"``.
        concat_axis: the concatenation axis for ``mode="concat"``.
        loss: the data loss when this is the model being fitted (default None).
    """

    def __init__(
        self,
        models: Sequence[MiniMLModel],
        mode: str,
        concat_axis: int = -1,
        loss: LossFunction | None = None,
    ) -> None:
        self.mode = check_choice(mode, ("sum", "concat"), "mode", "Parallel")
        if not isinstance(concat_axis, int | np.integer) or isinstance(concat_axis, bool):
            raise MiniMLError(f"Parallel: concat_axis must be an int, got {concat_axis!r}.")
        if mode == "sum" and concat_axis != -1:
            raise MiniMLError(
                "Parallel: concat_axis applies to mode='concat' only; drop it for mode='sum'."
            )
        self.concat_axis = int(concat_axis)
        self.branches = _model_list(models, "Parallel")
        super().__init__(loss=loss)

    def _nn_kwarg_names(self) -> frozenset[str] | None:
        return union_kwargs(self.branches)

    def _predict_kernel(
        self,
        X: Any,
        buffer: JXArray,
        rng_key: JXArray | None = None,
        mode: PredictMode = PredictMode.INFERENCE,
        **kwargs: Any,
    ) -> Any:
        used: set[str] = set()
        outputs, activities = [], []
        for branch, key in zip(self.branches, split_keys(rng_key, len(self.branches)), strict=True):
            y, activity = run_child(branch, X, buffer, key, mode, kwargs, used)
            check_array(self, y, "every branch output")
            outputs.append(y)
            if activity is not None:
                activities.append(activity)
        shapes = [tuple(y.shape) for y in outputs]
        if self.mode == "sum":
            if len(set(shapes)) > 1:
                raise MiniMLError(
                    f"{layer_name(self)}: mode='sum' needs branch outputs of one shape, got "
                    f"shapes {shapes}. Make the branches agree, or use mode='concat'."
                )
            total = outputs[0]
            for y in outputs[1:]:
                total = total + y
            return finish(self, total, activities, kwargs, used)
        ranks = {len(s) for s in shapes}
        axis = self.concat_axis
        if len(ranks) > 1 or not -min(ranks) <= axis < min(ranks):
            raise MiniMLError(
                f"{layer_name(self)}: mode='concat' along axis {axis} needs branch outputs "
                f"of one rank that have that axis, got shapes {shapes}."
            )
        rest = {s[: axis % len(s)] + s[axis % len(s) + 1 :] for s in shapes}
        if len(rest) > 1:
            raise MiniMLError(
                f"{layer_name(self)}: mode='concat' along axis {axis} needs branch outputs "
                f"that agree on every other axis, got shapes {shapes}."
            )
        return finish(self, jnp.concatenate(outputs, axis=axis), activities, kwargs, used)


class Identity(MiniMLModel):
    r"""The parameter-free layer :math:`y = s X` (``scale`` :math:`s`, default 1).

    Input: any array (or, with ``scale=1``, any pytree). Output: the same shape.
    """

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = real_number(scale, "scale", "Identity")
        super().__init__(loss=None)

    def _predict_kernel(
        self,
        X: Any,
        buffer: JXArray,
        rng_key: JXArray | None = None,
        mode: PredictMode = PredictMode.INFERENCE,
    ) -> Any:
        if self.scale == 1.0:
            return X
        return jax.tree.map(lambda leaf: leaf * self.scale, X)


class Take(MiniMLModel):
    """Select entries along one axis: ``jnp.take(X, indices, axis)``.

    Input: an array with ``axis``. Output: with an int ``indices`` the axis is removed;
    with a list it keeps ``len(indices)`` entries. Negative indices count from the end;
    an index out of range is an error (never a silent fill value).

    Args:
        indices: an int or a list of ints.
        axis: the axis to select from (default: the last).
    """

    def __init__(self, indices: int | Sequence[int], axis: int = -1) -> None:
        where = "Take"
        if isinstance(indices, int | np.integer) and not isinstance(indices, bool):
            self.indices: int | tuple[int, ...] = int(indices)
        elif isinstance(indices, Sequence) and not isinstance(indices, str) and indices:
            if not all(
                isinstance(i, int | np.integer) and not isinstance(i, bool) for i in indices
            ):
                raise MiniMLError(f"{where}: indices must be ints, got {indices!r}.")
            self.indices = tuple(int(i) for i in indices)
        else:
            raise MiniMLError(
                f"{where}: indices must be an int or a non-empty list of ints, got {indices!r}."
            )
        if not isinstance(axis, int | np.integer) or isinstance(axis, bool):
            raise MiniMLError(f"{where}: axis must be an int, got {axis!r}.")
        self.axis = int(axis)
        super().__init__(loss=None)

    def _predict_kernel(
        self,
        X: Any,
        buffer: JXArray,
        rng_key: JXArray | None = None,
        mode: PredictMode = PredictMode.INFERENCE,
    ) -> JXArray:
        check_array(self, X)
        if not -X.ndim <= self.axis < X.ndim:
            raise MiniMLError(
                f"{layer_name(self)}: expected X with axis {self.axis}, got X of shape "
                f"{tuple(X.shape)} ({X.ndim} axes)."
            )
        size = X.shape[self.axis]
        wanted = (self.indices,) if isinstance(self.indices, int) else self.indices
        bad = [i for i in wanted if not -size <= i < size]
        if bad:
            raise MiniMLError(
                f"{layer_name(self)}: indices {bad} are out of range for axis {self.axis} of "
                f"size {size} (X of shape {tuple(X.shape)})."
            )
        return jnp.take(X, jnp.asarray(self.indices), axis=self.axis)


class Flatten(MiniMLModel):
    """Merge all axes from ``start_axis`` on: ``(N, d_1, ..., d_k) -> (N, d_1 ... d_k)``.

    Input: an array with more than ``start_axis`` axes. Output: shape
    ``X.shape[:start_axis] + (prod(X.shape[start_axis:]),)``, in C (row-major) order.

    Args:
        start_axis: the first axis to merge (default 1, keeping the sample axis).
    """

    def __init__(self, start_axis: int = 1) -> None:
        if not isinstance(start_axis, int | np.integer) or isinstance(start_axis, bool):
            raise MiniMLError(f"Flatten: start_axis must be an int, got {start_axis!r}.")
        if start_axis < 1:
            raise MiniMLError(
                f"Flatten: start_axis must be >= 1 so the sample axis is kept, got {start_axis}."
            )
        self.start_axis = int(start_axis)
        super().__init__(loss=None)

    def _predict_kernel(
        self,
        X: Any,
        buffer: JXArray,
        rng_key: JXArray | None = None,
        mode: PredictMode = PredictMode.INFERENCE,
    ) -> JXArray:
        check_rank(self, X, self.start_axis + 1, f"(N, d_1, ..., d_k) with k >= {self.start_axis}")
        return X.reshape((*X.shape[: self.start_axis], -1))
