"""Validation of `miniml.batched.fit_batched`'s per-member arguments, before tracing."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from miniml.data import as_data, describe
from miniml.errors import MiniMLError

__all__ = [
    "WHERE",
    "member_count",
    "per_member_numbers",
    "prepare_data",
    "random_starts",
    "seed_list_of",
    "starts_of",
]

WHERE = "miniml.fit_batched"


def prepare_data(
    X: Any, y: Any, rows: Any, shared: bool, dtype: Any, counts: dict[str, int]
) -> tuple[Any, Any, str, int, tuple[Any, Any]]:
    """``(data, vmap axes, mode, samples per member, member 0's (X, y))``."""
    if not isinstance(shared, bool):
        raise MiniMLError(f"{WHERE}: shared must be True or False, got {shared!r}.")
    if rows is None and not shared:
        X_data, k_x = as_data(X, "X", WHERE, dtype)
        y_data, k_y = as_data(y, "y", WHERE, dtype)
        sizes = {}
        for label, tree in (("X", X_data), ("y", y_data)):
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
                name = label + jax.tree_util.keystr(path)
                if leaf.ndim < 2:
                    raise MiniMLError(
                        f"{WHERE}: stacked {name} must have shape (K, n, ...) (members, "
                        f"samples, ...), got shape {tuple(leaf.shape)}. For one data set "
                        "shared by all members pass shared=True or rows=..."
                    )
                sizes[name] = leaf.shape[1]
        if k_x != k_y or len(set(sizes.values())) > 1:
            listing = ", ".join(f"{k}: {v}" for k, v in sizes.items())
            raise MiniMLError(
                f"{WHERE}: stacked X and y must agree on members and samples; got {k_x} "
                f"and {k_y} members and samples {listing}. For one data set shared by all "
                "members pass shared=True or rows=..."
            )
        n = next(iter(sizes.values()))
        _count(counts, "stacked X", k_x)
        if n == 0:
            raise MiniMLError(
                f"{WHERE}: stacked X and y hold no samples (shapes {describe(X_data)} and "
                f"{describe(y_data)}); every member needs at least one."
            )
        data = (X_data, y_data)
        return data, 0, "stacked", n, jax.tree.map(lambda a: a[0], data)
    X_data, n_x = as_data(X, "X", WHERE, dtype)
    y_data, n_y = as_data(y, "y", WHERE, dtype)
    if n_x != n_y:
        raise MiniMLError(f"{WHERE}: shared X has {n_x} samples but y has {n_y}; they must match.")
    data = (X_data, y_data)
    if rows is None:
        return data, None, "shared", n_x, data
    index = np.asarray(rows)
    if index.ndim != 2 or index.dtype.kind not in "biu":
        raise MiniMLError(
            f"{WHERE}: rows must be a (K, m) integer array of row indices or a (K, n) "
            f"boolean mask; got dtype {index.dtype} and shape {index.shape}."
        )
    _count(counts, "rows", index.shape[0])
    if index.shape[1] == 0:
        raise MiniMLError(f"{WHERE}: rows selects no sample (shape {index.shape}); every "
                          "member needs at least one.")  # fmt: skip
    if index.dtype.kind == "b":
        if index.shape[1] != n_x:
            raise MiniMLError(
                f"{WHERE}: a boolean rows mask must have shape (K, {n_x}) for {n_x} "
                f"samples, got {index.shape}."
            )
        per_member = index.sum(axis=1)
        if np.any(per_member == 0):
            raise MiniMLError(
                f"{WHERE}: rows selects no sample for member(s) "
                f"{np.flatnonzero(per_member == 0)[:5].tolist()}; every member needs data."
            )
        if np.all(per_member == per_member[0]):
            index = np.stack([np.flatnonzero(r) for r in index])
        else:
            one_chunk = jax.tree.map(lambda a: a[None], data)
            masked = (*one_chunk, jnp.asarray(index[:, None, :]))
            return masked, (None, None, 0), "masked", n_x, data
    if index.size == 0 or index.min() < 0 or index.max() >= n_x:
        raise MiniMLError(
            f"{WHERE}: rows must index the {n_x} samples (0 to {n_x - 1}); got values from "
            f"{index.min() if index.size else None} to {index.max() if index.size else None}."
        )
    gathered = jax.tree.map(lambda a: a[jnp.asarray(index)], data)
    return gathered, 0, "stacked", index.shape[1], jax.tree.map(lambda a: a[0], gathered)


def per_member_numbers(
    value: Any, name: str, counts: dict[str, int], positive: bool = False
) -> np.ndarray:
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise MiniMLError(
            f"{WHERE}: {name} must be a number or a (K,) array, got {value!r}."
        ) from err
    if raw.dtype.kind not in "iuf":  # np.asarray(..., float) would take "1" and True
        raise MiniMLError(
            f"{WHERE}: {name} must be a number or a (K,) array of numbers, got {value!r} "
            f"(dtype {raw.dtype})."
        )
    array = raw.astype(np.float64)
    if array.ndim > 1:
        raise MiniMLError(
            f"{WHERE}: {name} must be a number or a (K,) array, got shape {array.shape}."
        )
    if not np.all(np.isfinite(array)) or np.any(array < 0) or (positive and np.any(array <= 0)):
        bound = "> 0" if positive else ">= 0"
        raise MiniMLError(f"{WHERE}: every {name} must be finite and {bound}, got {value!r}.")
    if array.ndim == 1:
        _count(counts, name, array.shape[0])
    return array


def seed_list_of(seeds: Any, counts: dict[str, int]) -> list[int] | None:
    if seeds is None:
        return None
    items = list(seeds) if isinstance(seeds, list | tuple | np.ndarray | range) else None
    if items is None or not all(isinstance(s, int | np.integer) and not isinstance(s, bool)
                                for s in items) or not items:  # fmt: skip
        raise MiniMLError(
            f"{WHERE}: seeds must be a non-empty sequence of K ints (e.g. range(20)), got "
            f"{seeds!r}."
        )
    out_of_range = [s for s in items if not 0 <= s < 2**63]
    if out_of_range:
        raise MiniMLError(
            f"{WHERE}: seeds must lie in [0, 2**63), as fit's seed; got {out_of_range[:3]}."
        )
    counts["seeds"] = len(items)
    return [int(s) for s in items]


def starts_of(x0: Any, model: Any, counts: dict[str, int]) -> np.ndarray:
    array = np.asarray(x0, model.dtype)
    if array.ndim not in (1, 2) or array.shape[-1] != model.size:
        raise MiniMLError(
            f"{WHERE}: x0 must have shape ({model.size},) or (K, {model.size}) for a model "
            f"with {model.size} parameters, got shape {array.shape}."
        )
    if not np.all(np.isfinite(array)):
        raise MiniMLError(f"{WHERE}: x0 contains NaN or infinite values.")
    if array.ndim == 2:
        _count(counts, "x0", array.shape[0])
    return array


def _count(counts: dict[str, int], name: str, k: int) -> None:
    """Record that ``name`` gives K = ``k`` members; K = 0 is an error."""
    if k == 0:
        raise MiniMLError(f"{WHERE}: {name} gives zero members; a batch needs at least one.")
    counts[name] = k


def member_count(counts: dict[str, int]) -> int:
    if not counts:
        raise MiniMLError(
            f"{WHERE}: cannot tell how many members to fit: give stacked (K, n, ...) data, "
            "rows, an array reg_lambda, a (K, size) x0 or seeds."
        )
    if len(set(counts.values())) > 1:
        listing = ", ".join(f"{k}: {v}" for k, v in counts.items())
        raise MiniMLError(
            f"{WHERE}: the per-member arguments disagree on the number of members K "
            f"({listing}); give every per-member argument K entries."
        )
    return next(iter(counts.values()))


def random_starts(model: Any, seeds: list[int]) -> np.ndarray:
    """The buffers ``model.randomize(seed=s)`` draws, one per seed (on a clone)."""
    scratch = model.clone()
    rows = []
    for seed in seeds:
        scratch.randomize(seed=seed)
        rows.append(np.asarray(scratch.get_buffer(copy=False)))
    return np.stack(rows)
