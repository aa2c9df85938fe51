"""Saving and loading: bit-exact round trips, safe format, clear errors."""

import json
import zipfile

import numpy as np
import pytest

from miniml import MiniMLError, MiniMLModel, MiniMLParam
from miniml.io import FORMAT_VERSION
from miniml.loss import BinaryCrossEntropyLogLoss, LNormRegularization
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


def test_files_cannot_name_arbitrary_callables(tmp_path):
    model = LinearModel(2, 1)
    model.randomize(seed=0)
    path = tmp_path / "m.npz"
    model.save(path)
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(arrays["__miniml_meta__"].tobytes())
    meta["init"]["kwargs"]["loss"] = {"__ref__": "os:system"}
    arrays["__miniml_meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(MiniMLError, match="may not use"):
        LinearModel.load(path)


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
