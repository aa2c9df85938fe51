"""Saving and loading models in a safe format: ``.npz`` with JSON metadata, no pickle.

A file holds one array per parameter (``param:<dotted name>``) and a JSON header
(``__miniml_meta__``) with the format version, the model class, each parameter's name,
shape and dtype, and the constructor arguments when they can be written as JSON (numpy
and jax arrays among them go to side arrays ``arg:<n>``). Loading uses
``allow_pickle=False`` and never imports a module named by the file. A file may name
MiniML model classes, and classes and functions defined in ``miniml``, ``jax`` or the
module of the class being loaded; each name is looked up without running any code, only
in that module and the classes defined in it, and must be the object's own
``module:qualname``. The only objects rebuilt from their attributes are instances of
MiniML's own plain classes. The whole header is checked before anything is built.
Writes go to a temporary file that replaces the target only when complete.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from miniml._codec import ArgDecoder, ArgEncoder, UnencodableError, class_ref
from miniml.errors import MiniMLError

if TYPE_CHECKING:
    from miniml.model import MiniMLModel

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "load_model", "load_state", "save_model"]

FORMAT_NAME = "miniml-model"
FORMAT_VERSION = 1
_META_KEY = "__miniml_meta__"
_PARAM_PREFIX = "param:"


def save_model(model: MiniMLModel, path: str | Path, state_only: bool = False) -> None:
    """Write ``model`` to ``path`` atomically; see the module docstring for the format."""
    where = f"{type(model).__name__}.save"
    model._require_bound("save")
    if model.root is not model:
        raise MiniMLError(f"{where}: save the outermost model ({type(model.root).__name__}).")
    encoder = ArgEncoder(type(model).__module__)
    init = None
    if not state_only:
        args, kwargs = model._miniml_init_args
        try:
            init = {
                "args": [encoder.encode(a) for a in args],
                "kwargs": {k: encoder.encode(v) for k, v in kwargs.items()},
            }
        except UnencodableError as err:
            raise MiniMLError(
                f"{where}: the constructor argument {err} cannot be stored safely. Save with "
                f"state_only=True and restore with {type(model).__name__}(...).load_state(path)."
            ) from err
    params = model.get_params()
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "class": class_ref(type(model)),
        "dtype": model.dtype.name,
        "params": [
            {"name": n, "shape": list(v.shape), "dtype": str(v.dtype)} for n, v in params.items()
        ],
        "init": init,
    }
    arrays = {f"{_PARAM_PREFIX}{n}": np.asarray(v) for n, v in params.items()}
    arrays.update(encoder.arrays)
    arrays[_META_KEY] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    target = Path(path)
    if target.suffix != ".npz":
        target = target.with_name(target.name + ".npz")
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _read(path: str | Path, where: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    given = Path(path)
    if (
        not given.exists()
        and given.suffix != ".npz"
        and given.with_name(given.name + ".npz").exists()
    ):
        path = given.with_name(given.name + ".npz")  # save("x") wrote x.npz
    try:
        # Opening the file ourselves guarantees it is closed when numpy fails midway.
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as err:  # a damaged archive can fail in many ways (zlib, zipfile, numpy)
        raise MiniMLError(
            f"{where}: {str(path)!r} is not a readable MiniML model file (truncated or "
            f"corrupted?): {type(err).__name__}: {err}"
        ) from err
    raw = arrays.pop(_META_KEY, None)
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise MiniMLError(f"{where}: {str(path)!r} has no MiniML header; it is not a model file.")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MiniMLError(f"{where}: the header of {str(path)!r} is corrupted: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise MiniMLError(f"{where}: {str(path)!r} is not a MiniML model file.")
    version = meta.get("format_version")
    # JSON's true is an int equal to 1 in Python: not a version.
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or not 1 <= version <= FORMAT_VERSION
    ):
        raise MiniMLError(
            f"{where}: {str(path)!r} has format version {version!r}; this MiniML reads "
            f"versions 1 to {FORMAT_VERSION}. Upgrade MiniML to read it."
        )
    if not isinstance(meta.get("params"), list) or not isinstance(meta.get("class"), str):
        raise MiniMLError(f"{where}: the header of {str(path)!r} is incomplete.")
    return meta, arrays


def _check_class(meta: dict[str, Any], cls: type, where: str) -> None:
    if meta["class"] != class_ref(cls):
        raise MiniMLError(
            f"{where}: the file holds a {meta['class']!r} model, not a {class_ref(cls)!r}. "
            "Load it with the class it was saved from."
        )


def load_state(model: MiniMLModel, path: str | Path) -> None:
    """Load the parameters of a file into an existing model of the same structure."""
    where = f"{type(model).__name__}.load_state"
    meta, arrays = _read(path, where)
    _check_class(meta, type(model), where)
    _apply_params(model, meta, arrays, where)


def _apply_params(
    model: MiniMLModel, meta: dict[str, Any], arrays: dict[str, np.ndarray], where: str
) -> None:
    if meta.get("dtype") != model.dtype.name:
        raise MiniMLError(
            f"{where}: the file holds a {meta.get('dtype')!r} model, but this model is "
            f"{model.dtype.name}."
        )
    expected = [(n, tuple(p.shape), p.dtype.name) for n, p in model.params.items()]
    try:
        stored = [(e["name"], tuple(e["shape"]), e["dtype"]) for e in meta["params"]]
    except (KeyError, TypeError) as err:
        raise MiniMLError(f"{where}: the parameter list in the file is corrupted.") from err
    for index in range(max(len(expected), len(stored))):
        want = expected[index] if index < len(expected) else None
        have = stored[index] if index < len(stored) else None
        if want != have:
            raise MiniMLError(
                f"{where}: the file does not match the model's structure at parameter "
                f"#{index}: the model has {_describe(want)}, the file has {_describe(have)}."
            )
    values = {}
    for name, shape, dtype in stored:
        array = arrays.get(f"{_PARAM_PREFIX}{name}")
        if array is None or array.shape != shape or array.dtype.name != dtype:
            raise MiniMLError(
                f"{where}: the stored values of parameter {name!r} are missing or do not "
                "match the header; the file is corrupted."
            )
        values[name] = array
    model.bind()
    model.set_params(values)


def _describe(entry: tuple[str, tuple[int, ...], str] | None) -> str:
    if entry is None:
        return "nothing"
    name, shape, dtype = entry
    return f"{name!r} with shape {shape} and dtype {dtype}"


def load_model(cls: type[MiniMLModel], path: str | Path) -> Any:
    """Rebuild a ``cls`` from its stored constructor arguments and load its parameters."""
    where = f"{cls.__name__}.load"
    meta, arrays = _read(path, where)
    _check_class(meta, cls, where)
    if meta.get("init") is None:
        raise MiniMLError(
            f"{where}: the file was saved with state_only=True, so it holds no constructor "
            f"arguments. Build the model yourself and call model.load_state(path)."
        )
    init = meta["init"]
    if not isinstance(init, dict) or set(init) != {"args", "kwargs"}:
        raise MiniMLError(
            f"{where}: the constructor arguments in the file are corrupted (expected "
            "'args' and 'kwargs'). Build the model yourself and call model.load_state(path)."
        )
    decoder = ArgDecoder(arrays, cls.__module__, where)
    arguments = decoder.check_arguments(init["args"], init["kwargs"])  # builds nothing
    try:
        args, kwargs = arguments()
        model = cls(*args, **kwargs)
    except MiniMLError:
        raise
    except Exception as err:
        raise MiniMLError(
            f"{where}: rebuilding the model from the stored constructor arguments failed "
            f"({type(err).__name__}: {err}); the file may be corrupted."
        ) from err
    _apply_params(model, meta, arrays, where)
    return model
