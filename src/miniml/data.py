"""Validation and conversion of user data at the public boundary, before any tracing.

Inputs and targets may be an array (or array-like), or a tuple/dict of arrays that
share their first (sample) axis, e.g. ``X = (user_ids, item_ids)``. Floating leaves
are converted to the model's dtype; integer and boolean leaves are kept as they are.
Nothing is silently ignored: a masked array is used only when nothing is masked, and a
pandas object with nullable dtypes (``Float64``, ``Int64``, ``boolean``) only when it
has no missing values (``pd.NA``); otherwise the error says how many and how to fix it.
"""

from __future__ import annotations

import sys
import warnings
import weakref
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from miniml.errors import MiniMLError

__all__ = [
    "as_data",
    "check_no_masked_entries",
    "check_same_samples",
    "describe",
    "describe_signature",
    "signature_of",
    "to_device",
]


def _leaf_to_array(leaf: Any, label: str, where: str) -> np.ndarray | jax.Array:
    if isinstance(leaf, jax.Array):
        return leaf
    if isinstance(leaf, np.ma.MaskedArray):
        return _unmasked(leaf, label, where)
    stacked = _stacked_masked_list(leaf)
    if stacked is not None:
        return _unmasked(stacked, label, where)
    from_pandas = _from_pandas_nullable(leaf, label, where)
    if from_pandas is not None:
        return from_pandas
    try:
        array = np.asarray(leaf)
    except ValueError as err:
        raise MiniMLError(
            f"{where}: {label} could not be turned into an array ({err}). Ragged nested "
            "lists are not arrays: pad them to a common length or pass a tuple of arrays."
        ) from err
    return array


def _stacked_masked_list(value: Any) -> np.ma.MaskedArray | None:
    """A list holding masked arrays (e.g. rows) or ``np.ma.masked`` entries as one
    masked array; None for anything else.

    ``np.asarray`` would drop their masks; ``np.ma.asarray`` keeps them (and warns that
    it stores NaN under an ``np.ma.masked`` entry, which `_unmasked` refuses anyway).
    """
    if not (isinstance(value, list) and any(isinstance(v, np.ma.MaskedArray) for v in value)):
        return None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Warning: converting a masked element to nan")
        return np.ma.asarray(value)


def _unmasked(leaf: np.ma.MaskedArray, label: str, where: str) -> np.ndarray:
    """The data of a masked array without masked entries; one with any is refused.

    ``np.asarray`` would silently drop the mask and use the values under it.
    """
    mask = np.ma.getmaskarray(leaf)
    n_masked = int(mask.sum())
    if n_masked:
        samples = ""
        if mask.ndim >= 1:
            rows = int(mask.reshape(mask.shape[0], -1).any(axis=1).sum())
            samples = f" (in {rows} of {mask.shape[0]} samples)"
        raise MiniMLError(
            f"{where}: {label} is a masked array with {n_masked} masked "
            f"{'entry' if n_masked == 1 else 'entries'}{samples}; "
            "expected data without masked entries, as MiniML would otherwise use the "
            f"values hidden under the mask. Fill them, e.g. {label}.filled(value), or "
            "drop the samples that contain them."
        )
    return np.asarray(np.ma.getdata(leaf))


def check_no_masked_entries(value: Any, label: str, where: str) -> Any:
    """Refuse a masked array with masked entries, for entry points that convert their
    inputs themselves (the scikit-learn wrappers, whose ``validate_data`` drops masks;
    `miniml.metrics`, where ``jnp.asarray`` refuses every masked array), also in a
    list of masked rows. Returns ``value``, or the data when nothing is masked."""
    if isinstance(value, np.ma.MaskedArray):
        return _unmasked(value, label, where)
    stacked = _stacked_masked_list(value)
    return value if stacked is None else _unmasked(stacked, label, where)


def _from_pandas_nullable(leaf: Any, label: str, where: str) -> np.ndarray | None:
    """A pandas object with nullable numeric dtypes (``Float64``, ``Int64``,
    ``boolean``, numeric pyarrow types) as the numpy array of its numpy dtypes, or an
    error counting its missing values; None for anything else (numpy-backed pandas
    objects convert fine with ``np.asarray``).

    ``np.asarray`` turns such a frame into an object array, or one with ``pd.NA`` into
    objects or NaN, whose errors would not say what is wrong.
    """
    pd = sys.modules.get("pandas")  # never imported here: a pandas object implies it
    if pd is None:
        return None
    frame = isinstance(leaf, pd.DataFrame)
    if frame:
        dtypes = list(leaf.dtypes)
    elif isinstance(leaf, (pd.Series, pd.Index, pd.api.extensions.ExtensionArray)):
        dtypes = [leaf.dtype]
    else:
        return None
    if all(isinstance(dtype, np.dtype) for dtype in dtypes):
        return None
    numpy_dtypes = [
        dtype if isinstance(dtype, np.dtype) else getattr(dtype, "numpy_dtype", None)
        for dtype in dtypes
    ]
    if not all(isinstance(d, np.dtype) and d.kind in "biuf" for d in numpy_dtypes):
        return None  # e.g. categories or strings: the usual dtype error applies
    missing = np.asarray(pd.isna(leaf), bool)
    n_missing = int(missing.sum())
    if n_missing:
        columns = ""
        if frame and missing.ndim == 2:
            names = [leaf.columns[i] for i in np.flatnonzero(missing.any(axis=0))]
            shown = f"{names[:10]}" if len(names) <= 10 else f"{names[:10]} and more"
            columns = f" in {len(names)} of {len(dtypes)} column(s) {shown}"
        raise MiniMLError(
            f"{where}: {label} has {n_missing} missing value(s) (pd.NA){columns}; MiniML "
            "fits and predicts only on complete, finite data. Drop or impute them first, "
            f"e.g. {label}.dropna() or {label}.fillna(value)."
        )
    array: np.ndarray = leaf.to_numpy(dtype=np.result_type(*numpy_dtypes))
    return array


# jax arrays are immutable: one that passed the finiteness check passes it forever.
# Keyed by id, with a weak reference that drops the entry when the array goes.
_FINITE_JAX_ARRAYS: dict[int, weakref.ref[Any]] = {}


def _jax_array_is_finite(array: Any) -> bool:
    key = id(array)
    known = _FINITE_JAX_ARRAYS.get(key)
    if known is not None and known() is array:
        return True
    if all(device.platform == "cpu" for device in array.devices()):
        # A host array: numpy reads it in place, without compiling a reduction.
        finite = bool(np.isfinite(np.asarray(array)).all())
    else:
        finite = bool(jnp.isfinite(array).all())
    if finite:
        _FINITE_JAX_ARRAYS[key] = weakref.ref(array, lambda _: _FINITE_JAX_ARRAYS.pop(key, None))
    return finite


def _check_leaf(array: Any, label: str, where: str, dtype: np.dtype) -> Any:
    kind = np.dtype(array.dtype).kind
    if kind in "OUSV" or kind == "M" or kind == "m":
        raise MiniMLError(
            f"{where}: {label} has dtype {array.dtype}, expected numbers. Encode strings or "
            "categories as integer codes and convert objects with np.asarray(..., float)."
        )
    if kind == "c":
        raise MiniMLError(f"{where}: {label} is complex ({array.dtype}); expected real numbers.")
    if array.ndim == 0:
        raise MiniMLError(
            f"{where}: {label} is a scalar; expected an array whose first axis indexes "
            "samples. Use np.atleast_1d(...) or reshape it."
        )
    if array.shape[0] == 0:
        raise MiniMLError(
            f"{where}: {label} is empty (shape {tuple(array.shape)}); at least one sample "
            "is needed."
        )
    if kind == "f":
        if isinstance(array, np.ndarray):
            finite = bool(np.isfinite(array).all())
        else:
            finite = _jax_array_is_finite(array)
        if not finite:
            bad = int(np.size(array) - np.isfinite(np.asarray(array)).sum())
            raise MiniMLError(
                f"{where}: {label} contains {bad} NaN or infinite value(s); MiniML fits and "
                "predicts only on finite data. Drop or impute them first."
            )
        if array.dtype != dtype:
            array = array.astype(dtype)
    return array


def as_data(data: Any, label: str, where: str, dtype: Any) -> tuple[Any, int]:
    """Validate ``data`` and return ``(tree of device arrays, number of samples)``.

    Args:
        data: an array-like, or a tuple/dict of array-likes.
        label: the argument's name in messages (``"X"``, ``"y"``).
        where: the public function that was called, for messages.
        dtype: the model's floating dtype.
    """
    if data is None:
        raise MiniMLError(f"{where}: {label} is None; expected an array.")
    dtype = np.dtype(dtype)
    if isinstance(data, dict):
        if not all(isinstance(k, str) for k in data):
            raise MiniMLError(f"{where}: a dict {label} must have string keys.")
        items = {
            k: _check_leaf(
                _leaf_to_array(v, f"{label}[{k!r}]", where), f"{label}[{k!r}]", where, dtype
            )
            for k, v in data.items()
        }
        if not items:
            raise MiniMLError(f"{where}: {label} is an empty dict; expected arrays.")
        tree: Any = items
    elif isinstance(data, tuple):
        if not data:
            raise MiniMLError(f"{where}: {label} is an empty tuple; expected arrays.")
        tree = tuple(
            _check_leaf(_leaf_to_array(v, f"{label}[{i}]", where), f"{label}[{i}]", where, dtype)
            for i, v in enumerate(data)
        )
    else:
        tree = _check_leaf(_leaf_to_array(data, label, where), label, where, dtype)
    n_samples = check_same_samples(tree, label, where)
    return jax.tree.map(to_device, tree), n_samples


def to_device(array: Any) -> Any:
    """``array`` as a jax array: jax arrays as they are, others by a plain transfer.

    ``jnp.asarray`` of a numpy array can compile a small conversion program for every
    new shape (~10 ms each, which adds up in a cold start); ``jax.device_put`` does not.
    """
    return array if isinstance(array, jax.Array) else jax.device_put(np.asarray(array))


def check_same_samples(tree: Any, label: str, where: str) -> int:
    """The common first-axis length of all leaves, or a clear error."""
    sizes = {leaf.shape[0] for leaf in jax.tree.leaves(tree)}
    if len(sizes) > 1:
        listing = ", ".join(
            f"{label}{jax.tree_util.keystr(path)}: {leaf.shape[0]}"
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
        )
        raise MiniMLError(
            f"{where}: the arrays of {label} must share their first (sample) axis, got {listing}."
        )
    return sizes.pop()


def signature_of(tree: Any) -> Any:
    """Structure plus per-sample shapes and dtypes: what compiled code depends on."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((tuple(x.shape[1:]), np.dtype(x.dtype)) for x in leaves)


def describe_signature(signature: Any) -> str:
    """Readable form of a `signature_of`, ``n`` standing for the number of samples."""
    treedef, leaves = signature
    shapes = [f"{dtype}[{', '.join(['n', *map(str, shape)])}]" for shape, dtype in leaves]
    return str(jax.tree.unflatten(treedef, shapes))


def describe(tree: Any) -> str:
    """Readable shapes of a data tree, for messages."""
    return str(jax.tree.map(lambda x: f"{x.dtype}{list(x.shape)}", tree))
