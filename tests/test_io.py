"""Saving and loading: bit-exact round trips, safe format, clear errors."""

import gc
import json
import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from miniml import MiniMLError, MiniMLModel, MiniMLParam
from miniml.io import FORMAT_VERSION
from miniml.loss import BinaryCrossEntropyLogLoss, LNormRegularization, squared_error_loss
from tests.models import LinearModel, TinyMLP


class Configured(MiniMLModel):
    """A model whose constructor takes every kind of storable argument."""

    def __init__(self, sizes, scale=1.0, name="m", reg=None, table=None, child=None):
        self.W = MiniMLParam(tuple(sizes), reg_loss=reg)
        self.child = child if child is not None else LinearModel(sizes[1], 1)
        self.scale, self.name, self.table = scale, name, table
        super().__init__(loss=BinaryCrossEntropyLogLoss())

    def _predict_kernel(self, X, buffer):
        return self.child._predict_kernel(X @ self.W(buffer) * self.scale, buffer)


class Keeper(MiniMLModel):
    """A model that keeps its keyword arguments, whatever they are."""

    def __init__(self, n, **extra):
        self.w = MiniMLParam((n,))
        self.extra = extra
        super().__init__()

    def _predict_kernel(self, X, buffer):
        return X * self.w(buffer)


def _halve(x):
    """A function of the module that defines `Keeper`: a file may name it."""
    return x / 2


class _Doubler:
    @staticmethod
    def apply(x):
        return 2 * x


def _saved_keeper(tmp_path, **extra):
    model = Keeper(2, **extra)
    model.randomize(seed=0)
    path = tmp_path / "keeper.npz"
    model.save(path)
    return path


def _header(path):
    with np.load(path) as archive:
        return json.loads(archive["__miniml_meta__"].tobytes())


def _tamper(path, **kwargs):
    """Overwrite stored constructor keyword arguments, as an attacker editing the file."""
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(arrays["__miniml_meta__"].tobytes())
    meta["init"]["kwargs"].update(kwargs)
    arrays["__miniml_meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)


def test_round_trip_is_bit_exact(tmp_path):
    model = TinyMLP(3, 4, 2)
    model.randomize(seed=1)
    path = tmp_path / "mlp.npz"
    model.save(path)
    loaded = TinyMLP.load(path)
    np.testing.assert_array_equal(np.asarray(loaded.get_buffer()), np.asarray(model.get_buffer()))
    X = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_array_equal(np.asarray(loaded.predict(X)), np.asarray(model.predict(X)))


def test_round_trip_with_rich_constructor_arguments(tmp_path):
    model = Configured(
        (3, 2),
        scale=0.5,
        name="net",
        reg=LNormRegularization(1, root=True),
        table=np.arange(4.0),
        child=LinearModel(2, 1, bias=False),
    )
    model.randomize(seed=2)
    model.save(tmp_path / "c.npz")
    loaded = Configured.load(tmp_path / "c.npz")
    assert loaded.scale == 0.5 and loaded.name == "net"
    np.testing.assert_array_equal(loaded.table, np.arange(4.0))
    assert isinstance(loaded.W.reg_loss, LNormRegularization) and loaded.W.reg_loss.root
    assert loaded.param_names == model.param_names
    np.testing.assert_array_equal(np.asarray(loaded.get_buffer()), np.asarray(model.get_buffer()))


def test_a_path_saved_without_the_npz_suffix_loads_by_the_same_path(tmp_path):
    """save("m") writes m.npz (numpy's rule); load("m") and load_state("m") find it."""
    model = LinearModel(3, 2)
    model.randomize(seed=0)
    model.save(tmp_path / "m")
    assert (tmp_path / "m.npz").exists() and not (tmp_path / "m").exists()
    loaded = LinearModel.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.get_buffer(), model.get_buffer())
    other = LinearModel(3, 2)
    other.load_state(str(tmp_path / "m"))
    np.testing.assert_array_equal(other.get_buffer(), model.get_buffer())
    with pytest.raises(FileNotFoundError):
        LinearModel.load(tmp_path / "missing")


def test_loading_into_a_different_structure_names_the_first_mismatch(tmp_path):
    model = LinearModel(3, 2)
    model.randomize(seed=0)
    model.save(tmp_path / "lin.npz")
    other = LinearModel(4, 2)
    with pytest.raises(MiniMLError, match=r"parameter #0: the model has 'W' with shape \(4, 2\)"):
        other.load_state(tmp_path / "lin.npz")


def test_loading_with_the_wrong_class_fails(tmp_path):
    model = LinearModel(3, 1)
    model.randomize(seed=0)
    model.save(tmp_path / "lin.npz")
    with pytest.raises(MiniMLError, match=r"holds a 'tests\.models:LinearModel' model"):
        TinyMLP.load(tmp_path / "lin.npz")


def test_state_only_files_need_load_state(tmp_path):
    model = LinearModel(2, 1)
    model.randomize(seed=0)
    model.save(tmp_path / "s.npz", state_only=True)
    with pytest.raises(MiniMLError, match="load_state"):
        LinearModel.load(tmp_path / "s.npz")
    target = LinearModel(2, 1)
    target.load_state(tmp_path / "s.npz")
    np.testing.assert_array_equal(np.asarray(target.get_buffer()), np.asarray(model.get_buffer()))


def test_truncated_and_corrupted_files_fail_clearly(tmp_path):
    model = LinearModel(3, 1)
    model.randomize(seed=0)
    path = tmp_path / "m.npz"
    model.save(path)
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(MiniMLError, match="truncated or corrupted"):
        LinearModel.load(tmp_path / "cut.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(MiniMLError, match="not a readable MiniML model file"):
        LinearModel.load(tmp_path / "junk.npz")


def test_newer_format_versions_are_refused(tmp_path):
    model = LinearModel(2, 1)
    model.randomize(seed=0)
    path = tmp_path / "m.npz"
    model.save(path)
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(arrays["__miniml_meta__"].tobytes())
    meta["format_version"] = FORMAT_VERSION + 1
    arrays["__miniml_meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(MiniMLError, match="format version"):
        LinearModel.load(path)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        pytest.param(
            {"__ref__": "os:system"},
            r"'os:system' as a function or class from module 'os'; a model file may not use",
            id="module-not-allowed",
        ),
        pytest.param(
            {"__ref__": "miniml.io:Path"},
            r"'miniml\.io:Path' .* a name imported from elsewhere, is not followed",
            id="name-imported-into-miniml",
        ),
        pytest.param(
            {"__ref__": "miniml:io"},
            r"'miniml:io' .* is not followed",
            id="module-object",
        ),
        pytest.param(
            {"__object__": "miniml.io:Path", "state": {}},
            r"'miniml\.io:Path' as a class, but .* is not followed",
            id="object-of-imported-class",
        ),
        pytest.param(
            {"__object__": "jaxlib._jax:ArrayImpl", "state": {}},
            r"to rebuild an object, but only instances of MiniML's own plain classes",
            id="object-of-jax-class",
        ),
        pytest.param(
            {"__object__": "tests.models:LinearModel", "state": {}},
            r"to rebuild an object, but only instances of MiniML's own plain classes",
            id="object-of-model-class",
        ),
        pytest.param(
            {"__model__": "miniml.loss:LNormRegularization", "args": [2], "kwargs": {}},
            r"as a model, but it is not a MiniMLModel",
            id="model-that-is-not-a-model",
        ),
        pytest.param(
            {"__model__": "miniml.io:tempfile.TemporaryFile", "args": [], "kwargs": {}},
            r"'miniml\.io:tempfile\.TemporaryFile' as a model class, but .* not followed",
            id="model-through-another-module",
        ),
        pytest.param(
            {"__ref__": "miniml.loss:squared_error_loss", "call": True},
            r"corrupted: they hold an entry .* that MiniML does not write",
            id="unknown-keys",
        ),
    ],
)
def test_files_cannot_name_arbitrary_callables(tmp_path, entry, message):
    model = LinearModel(2, 1)
    model.randomize(seed=0)
    path = tmp_path / "m.npz"
    model.save(path)
    _tamper(path, loss=entry)
    with pytest.raises(MiniMLError, match=r"^LinearModel\.load: .*" + message):
        LinearModel.load(path)


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param({"__float__": [1]}, id="float-not-a-string"),
        pytest.param({"__float__": "1e308 * 10"}, id="float-not-inf-or-nan"),
        pytest.param({"__tuple__": 3}, id="tuple-not-a-list"),
        pytest.param({"__array__": "param:w"}, id="array-of-a-parameter"),
        pytest.param({"__array__": "arg:7"}, id="missing-array"),
        pytest.param({"__jax_array__": ["arg:0"]}, id="jax-array-key-not-a-string"),
        pytest.param({"__dtype__": "not-a-dtype"}, id="unknown-dtype"),
        pytest.param({"__ref__": 42}, id="reference-not-a-string"),
        pytest.param(
            {"__model__": "tests.models:LinearModel", "args": {}, "kwargs": {}},
            id="model-args-not-a-list",
        ),
        pytest.param(
            {"__object__": "miniml.loss:LNormRegularization", "state": []},
            id="object-state-not-a-dict",
        ),
        pytest.param({}, id="untagged-dict"),
    ],
)
def test_malformed_argument_entries_are_reported_as_corrupted(tmp_path, entry):
    path = _saved_keeper(tmp_path, scale=0.5)
    _tamper(path, scale=entry)
    with pytest.raises(
        MiniMLError, match=r"^Keeper\.load: the constructor arguments in the file are corrupted"
    ):
        Keeper.load(path)


def test_tampered_file_cannot_rebuild_a_class_reached_through_another_module(tmp_path):
    # QA's exploit: an object whose __del__ deletes a file, reached as miniml.io's
    # `tempfile` module attribute, so that the module prefix looked like MiniML's.
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    path = _saved_keeper(tmp_path, scale=0.5)
    closer = {
        "__object__": "miniml.io:tempfile._TemporaryFileCloser",
        "state": {
            "file": {"__object__": "miniml.io:io.BytesIO", "state": {}},
            "name": str(victim),
            "delete": True,
        },
    }
    _tamper(path, scale=closer)
    with pytest.raises(
        MiniMLError,
        match=r"^Keeper\.load: the file names 'miniml\.io:tempfile\._TemporaryFileCloser' "
        r"as a class, but .*\(a path through another module",
    ):
        Keeper.load(path)
    gc.collect()  # a closer built from the file would delete the victim here
    assert victim.read_text() == "precious"


def test_tampered_file_cannot_reference_a_function_reached_through_another_module(
    tmp_path, monkeypatch
):
    calls = []
    monkeypatch.setattr(os, "system", lambda command: calls.append(command))
    path = _saved_keeper(tmp_path, scale=0.5)
    _tamper(path, scale={"__ref__": "miniml.io:os.system"})
    with pytest.raises(
        MiniMLError,
        match=r"^Keeper\.load: the file names 'miniml\.io:os\.system' as a function or "
        r"class, but .*\(a path through another module",
    ):
        Keeper.load(path)
    assert calls == []


def test_a_refused_entry_stops_the_load_before_anything_is_built(tmp_path, monkeypatch):
    model = Configured((3, 2), child=LinearModel(2, 1), scale=0.5)
    model.randomize(seed=0)
    model.save(tmp_path / "good.npz")
    (tmp_path / "bad.npz").write_bytes((tmp_path / "good.npz").read_bytes())
    _tamper(tmp_path / "bad.npz", scale={"__ref__": "os:system"})  # after `child`
    built = []
    build_linear_model = LinearModel.__init__

    def counting_init(self, *args, **kwargs):
        built.append(args)
        build_linear_model(self, *args, **kwargs)

    monkeypatch.setattr(LinearModel, "__init__", counting_init)
    with pytest.raises(MiniMLError, match=r"'os:system'.*may not use"):
        Configured.load(tmp_path / "bad.npz")
    assert built == []
    Configured.load(tmp_path / "good.npz")  # the counter does see the child being built
    assert built == [(2, 1)]


def test_files_with_references_of_every_allowed_kind_load(tmp_path):
    extra = {
        "loss": squared_error_loss,  # a function defined in miniml
        "activation": jax.nn.relu,  # a jax custom_jvp object
        "squash": jnp.tanh,  # a jitted jax function
        "own": _halve,  # a function of the model's own module
        "method": _Doubler.apply,  # a static method of a class of that module
        "reg_class": LNormRegularization,  # a class
        "reg": LNormRegularization(1, root=True),  # a MiniML object
        "dtype": np.dtype("float32"),
        "limit": float("inf"),
        "pair": (1, "a"),
    }
    path = _saved_keeper(tmp_path, **extra)
    stored = _header(path)["init"]["kwargs"]
    assert stored["loss"] == {"__ref__": "miniml.loss:squared_error_loss"}
    assert stored["own"] == {"__ref__": "tests.test_io:_halve"}
    assert stored["method"] == {"__ref__": "tests.test_io:_Doubler.apply"}
    assert stored["reg"] == {
        "__object__": "miniml.loss:LNormRegularization",
        "state": {"p": 1, "root": True},
    }
    loaded = Keeper.load(path)
    for name in ("loss", "activation", "squash", "own", "method", "reg_class"):
        assert loaded.extra[name] is extra[name], name
    assert type(loaded.extra["reg"]) is LNormRegularization
    assert vars(loaded.extra["reg"]) == {"p": 1, "root": True}
    assert loaded.extra["dtype"] == np.float32 and loaded.extra["limit"] == float("inf")
    assert loaded.extra["pair"] == (1, "a")


@pytest.mark.parametrize(
    "value",
    [
        jnp.arange(3.0),
        jnp.arange(6, dtype=jnp.int32).reshape(2, 3),
        jnp.array([True, False]),
        jnp.asarray(2.5, dtype=jnp.float32),
    ],
    ids=["float64", "int32-matrix", "bool", "float32-scalar"],
)
def test_jax_array_arguments_round_trip(tmp_path, value):
    path = _saved_keeper(tmp_path, extra=value, plain=np.arange(2.0))
    assert _header(path)["init"]["kwargs"]["extra"] == {"__jax_array__": "arg:0"}
    loaded = Keeper.load(path)
    back = loaded.extra["extra"]
    assert isinstance(back, jax.Array)
    assert back.dtype == value.dtype and back.shape == value.shape
    np.testing.assert_array_equal(np.asarray(back), np.asarray(value))
    assert type(loaded.extra["plain"]) is np.ndarray  # numpy arrays stay numpy arrays


def test_float64_jax_arrays_need_64_bit_mode_to_load(tmp_path):
    path = _saved_keeper(tmp_path, extra=jnp.arange(3.0))
    with (
        jax.enable_x64(False),
        pytest.raises(MiniMLError, match=r"a float64 jax array, but JAX's 64-bit mode is off"),
    ):
        Keeper.load(path)


def test_jax_values_that_are_not_plain_arrays_suggest_state_only(tmp_path):
    model = Keeper(2, key=jax.random.key(0))
    model.bind()
    with pytest.raises(
        MiniMLError, match=r"(?s)Keeper\.save: the constructor argument .*state_only=True"
    ):
        model.save(tmp_path / "k.npz")


def test_pickled_payloads_are_never_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, __miniml_meta__=np.array([{"a": 1}], dtype=object))
    with pytest.raises(MiniMLError):
        LinearModel.load(path)


def test_save_is_atomic(tmp_path, monkeypatch):
    model = LinearModel(2, 1)
    model.randomize(seed=0)
    path = tmp_path / "m.npz"
    model.save(path)
    good = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("miniml.io.os.replace", broken_replace)
    model.randomize(seed=1)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]
    assert zipfile.is_zipfile(path)


def test_unstorable_constructor_arguments_suggest_state_only(tmp_path):
    class Opaque:
        pass

    class Holder(MiniMLModel):
        def __init__(self, thing):
            self.w = MiniMLParam((1,))
            self.thing = thing
            super().__init__()

        def _predict_kernel(self, X, buffer):
            return X * self.w(buffer)

    model = Holder(Opaque())
    model.bind()
    with pytest.raises(MiniMLError, match="state_only=True"):
        model.save(tmp_path / "h.npz")
