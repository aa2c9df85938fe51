"""The constructor arguments of a model file: JSON with side arrays, and its safe decoding.

`miniml.io` writes a model's constructor arguments with `ArgEncoder` (numbers, strings,
containers, numpy and jax arrays as side arrays ``arg:<n>``, references to functions and
classes as ``module:qualname``, MiniML's own plain objects by their attributes, child
models) and reads them back with `ArgDecoder`. Decoding never imports a module and runs
no code of a class while it looks a name up: a reference resolves only inside the named
module (``miniml``, ``jax`` or the loaded model's own module) and the classes defined
there, and must be the object's own ``module:qualname``. The whole header is checked
before anything is built.
"""

from __future__ import annotations

import inspect
import json
import math
import sys
import types
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from miniml._config import X64_ENV_VAR
from miniml.errors import MiniMLError

__all__ = ["ARG_PREFIX", "ArgDecoder", "ArgEncoder", "UnencodableError", "class_ref"]

ARG_PREFIX = "arg:"


def class_ref(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


class UnencodableError(Exception):
    pass


# Encoded values are JSON dicts with exactly one of these tags and exactly these keys.
_TAG_KEYS = {
    "__float__": {"__float__"},
    "__tuple__": {"__tuple__"},
    "__dict__": {"__dict__"},
    "__array__": {"__array__"},
    "__jax_array__": {"__jax_array__"},
    "__dtype__": {"__dtype__"},
    "__model__": {"__model__", "args", "kwargs"},
    "__ref__": {"__ref__"},
    "__object__": {"__object__", "state"},
}
_ARRAY_KINDS = "biuf"  # bool, int, uint, float: what .npz stores without pickle
_NON_FINITE = {"inf", "-inf", "nan"}


class ArgEncoder:
    """Turns constructor arguments into JSON plus side arrays."""

    def __init__(self, owner_module: str) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.owner_module = owner_module

    def encode(self, value: Any) -> Any:
        from miniml.model import MiniMLModel

        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, int | np.integer):
            return int(value)
        if isinstance(value, float | np.floating):
            number = float(value)
            return number if math.isfinite(number) else {"__float__": repr(number)}
        if isinstance(value, list):
            return [self.encode(v) for v in value]
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(v) for v in value]}
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise UnencodableError("dict keys must be strings")
            return {"__dict__": {k: self.encode(v) for k, v in value.items()}}
        if isinstance(value, np.ndarray) and value.dtype.kind in _ARRAY_KINDS:
            return {"__array__": self._store(value)}
        # A jax array is stored like a numpy array; extended dtypes (PRNG keys) are not
        # numpy dtypes and cannot be.
        is_jax_array = isinstance(value, jax.Array) and isinstance(value.dtype, np.dtype)
        if is_jax_array and value.dtype.kind in _ARRAY_KINDS:
            return {"__jax_array__": self._store(np.asarray(value))}
        is_scalar_type = isinstance(value, type) and issubclass(value, np.generic)
        if isinstance(value, np.dtype) or is_scalar_type:
            return {"__dtype__": np.dtype(value).name}
        if isinstance(value, MiniMLModel):
            args, kwargs = value._miniml_init_args
            return {
                "__model__": self._class_name(type(value)),
                "args": [self.encode(a) for a in args],
                "kwargs": {k: self.encode(v) for k, v in kwargs.items()},
            }
        ref = _reference_of(value)
        if ref is not None and _module_allowed(ref.partition(":")[0], self.owner_module):
            return {"__ref__": ref}
        if _rebuildable(type(value)) and hasattr(value, "__dict__"):
            return {
                "__object__": self._class_name(type(value)),
                "state": {k: self.encode(v) for k, v in vars(value).items()},
            }
        raise UnencodableError(f"{value!r} of type {type(value).__name__}")

    def _store(self, array: np.ndarray) -> str:
        key = f"{ARG_PREFIX}{len(self.arrays)}"
        self.arrays[key] = array
        return key

    @staticmethod
    def _class_name(cls: type) -> str:
        ref = _reference_of(cls)
        if ref is None:  # e.g. defined inside a function: load could not find it
            raise UnencodableError(
                f"of class {cls.__qualname__!r}, which is not reachable by name from "
                f"module {cls.__module__!r},"
            )
        return ref


def _reference_of(value: Any) -> str | None:
    """``module:qualname`` of a named class or function when `_resolve` finds it again."""
    module = getattr(value, "__module__", None)
    qualname = getattr(value, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None
    ref = f"{module}:{qualname}"
    return ref if _resolve(ref) is value else None


def _module_allowed(module: str, owner_module: str) -> bool:
    top = module.split(".")[0]
    return top in {"miniml", "jax", "jaxlib"} or (bool(owner_module) and module == owner_module)


def _resolve(ref: str) -> Any:
    """The class or function that ``module:qualname`` names, or None; runs no code.

    Only modules already imported are searched, and only the module's own namespace and
    then the namespaces of classes in it (``Outer.Inner.method``): a path through another
    module (``miniml.io:os.system``) is not followed. The object found must also say that
    it is that name (its own ``__module__`` and ``__qualname__``), so a name imported
    into the module from elsewhere (``miniml.io:Path``) does not resolve either.
    """
    module_name, _, qualname = ref.partition(":")
    module = sys.modules.get(module_name)
    if module is None or not qualname:
        return None
    namespace: Any = vars(module)
    obj: Any = None
    for part in qualname.split("."):
        if namespace is None:
            return None
        obj = namespace.get(part)
        if isinstance(obj, staticmethod):
            obj = obj.__func__
        namespace = vars(obj) if isinstance(obj, type) else None
    if obj is None or isinstance(obj, types.ModuleType | classmethod | property):
        return None
    named = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return obj if named == (module_name, qualname) else None


def _rebuildable(cls: type) -> bool:
    """Whether `load` may rebuild an instance of ``cls`` from its attributes.

    Only MiniML's own plain classes (losses, regularizers, ...): defined in ``miniml``,
    created by ``object.__new__`` so that building one runs no code of the class, not
    abstract, with no ``__del__``, and not a model (models are rebuilt by calling their
    constructor with their own stored arguments).
    """
    from miniml.model import MiniMLModel

    return (
        isinstance(cls, type)
        and cls.__module__.split(".")[0] == "miniml"
        and not issubclass(cls, MiniMLModel)
        and cls.__new__ is object.__new__
        and cls.__dictoffset__ != 0
        and not inspect.isabstract(cls)
        and not any("__del__" in vars(base) for base in cls.__mro__)
    )


_Build = Callable[[], Any]


class ArgDecoder:
    """Reads the stored constructor arguments in two steps.

    `check` validates the whole tree and looks up every name in it, building nothing and
    calling nothing; it returns a function that builds the values. So a file with one
    entry that is not allowed makes nothing run, not even the parts before that entry.
    """

    def __init__(self, arrays: dict[str, np.ndarray], owner_module: str, where: str) -> None:
        self.arrays = arrays
        self.owner_module = owner_module
        self.where = where

    def check(self, value: Any) -> _Build:
        if value is None or isinstance(value, bool | int | float | str):
            return lambda: value
        if isinstance(value, list):
            items = [self.check(v) for v in value]
            return lambda: [build() for build in items]
        tags = [key for key in value if key in _TAG_KEYS] if isinstance(value, dict) else []
        if len(tags) != 1 or set(value) != _TAG_KEYS[tags[0]]:
            raise self._corrupted(f"an entry {_preview(value)} that MiniML does not write")
        tag, content = tags[0], value[tags[0]]
        if tag == "__float__":
            if not isinstance(content, str) or content not in _NON_FINITE:
                raise self._corrupted(f"the number {_preview(content)}")
            return lambda: float(content)
        if tag == "__tuple__":
            items = [self.check(v) for v in self._expect(content, list, tag)]
            return lambda: tuple(build() for build in items)
        if tag == "__dict__":
            return self._check_dict(self._expect(content, dict, tag))
        if tag in ("__array__", "__jax_array__"):
            return self._check_array(content, tag)
        if tag == "__dtype__":
            return self._check_dtype(content)
        if tag == "__ref__":
            found = self._resolve(content, "a function or class")
            return lambda: found
        if tag == "__model__":
            return self._check_model(value)
        return self._check_object(value)

    def _check_dict(self, content: dict[str, Any]) -> _Build:
        items = {k: self.check(v) for k, v in content.items()}
        return lambda: {k: build() for k, build in items.items()}

    def _check_array(self, key: Any, tag: str) -> _Build:
        array = self.arrays.get(key) if isinstance(key, str) else None
        if array is None or not key.startswith(ARG_PREFIX) or array.dtype.kind not in _ARRAY_KINDS:
            raise self._corrupted(f"the array entry {_preview(key)}")
        if tag == "__array__":
            return lambda: array
        if jax.dtypes.canonicalize_dtype(array.dtype) != array.dtype:
            raise MiniMLError(
                f"{self.where}: a constructor argument is a {array.dtype} jax array, but "
                f"JAX's 64-bit mode is off (is {X64_ENV_VAR} set?). Load the file with "
                "64-bit mode on."
            )
        return lambda: jnp.asarray(array)

    def _check_dtype(self, name: Any) -> _Build:
        try:
            dtype = np.dtype(name) if isinstance(name, str) else None
        except (TypeError, ValueError):
            dtype = None
        if dtype is None:
            raise self._corrupted(f"the dtype {_preview(name)}")
        return lambda: dtype

    def _check_model(self, value: dict[str, Any]) -> _Build:
        from miniml.model import MiniMLModel

        cls = self._resolve(value["__model__"], "a model class", any_module=True)
        if not (isinstance(cls, type) and issubclass(cls, MiniMLModel)):
            raise self._refused(value["__model__"], "as a model, but it is not a MiniMLModel")
        arguments = self.check_arguments(value["args"], value["kwargs"])

        def build() -> Any:
            args, kwargs = arguments()
            return cls(*args, **kwargs)

        return build

    def check_arguments(
        self, args: Any, kwargs: Any
    ) -> Callable[[], tuple[list[Any], dict[str, Any]]]:
        """`check` for a constructor's positional and keyword arguments."""
        built_args = [self.check(a) for a in self._expect(args, list, "args")]
        built_kwargs = self._check_dict(self._expect(kwargs, dict, "kwargs"))
        return lambda: ([build() for build in built_args], built_kwargs())

    def _check_object(self, value: dict[str, Any]) -> _Build:
        cls = self._resolve(value["__object__"], "a class")
        if not _rebuildable(cls):
            raise self._refused(
                value["__object__"],
                "to rebuild an object, but only instances of MiniML's own plain classes "
                "(losses, regularizers, ...) are rebuilt from a file",
            )
        state = self._check_dict(self._expect(value["state"], dict, "state"))

        def build() -> Any:
            obj = object.__new__(cls)
            vars(obj).update(state())
            return obj

        return build

    def _resolve(self, ref: Any, kind: str, any_module: bool = False) -> Any:
        if not isinstance(ref, str) or ":" not in ref:
            raise self._corrupted(f"the reference {_preview(ref)}")
        module = ref.partition(":")[0]
        if not any_module and not _module_allowed(module, self.owner_module):
            raise self._refused(ref, f"as {kind} from module {module!r}")
        if module not in sys.modules:
            raise MiniMLError(
                f"{self.where}: the file refers to {ref!r}, but module {module!r} is not "
                "imported; loading never imports. Import the module that defines it first."
            )
        found = _resolve(ref)
        if found is None:
            raise self._refused(
                ref,
                f"as {kind}, but no such name is defined in {module!r} itself (a path through "
                "another module, or a name imported from elsewhere, is not followed)",
            )
        return found

    def _refused(self, ref: str, why: str) -> MiniMLError:
        return MiniMLError(
            f"{self.where}: the file names {ref!r} {why}; a model file may not use it. A "
            "file may name only MiniML models, classes and functions defined in miniml, "
            f"jax or the model's own module ({self.owner_module!r}), and MiniML's own "
            "objects. The file was not written by MiniML or was altered: do not load it."
        )

    def _expect(self, content: Any, kind: type, what: str) -> Any:
        if not isinstance(content, kind):
            raise self._corrupted(f"{what} {_preview(content)} (expected a {kind.__name__})")
        return content

    def _corrupted(self, what: str) -> MiniMLError:
        return MiniMLError(
            f"{self.where}: the constructor arguments in the file are corrupted: they hold "
            f"{what}. Save the model again, or build it yourself and call load_state(path)."
        )


def _preview(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."
