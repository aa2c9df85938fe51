"""QA regressions for the fit monitor: progress bar streams, argument checks of
`EarlyStopping` and ``verbose``, and Keras' early-stopping semantics."""

import io
import math
import re
import sys

import numpy as np
import pytest

from miniml import MiniMLError
from miniml.callbacks import EarlyStopping, FitState
from miniml.history import History
from miniml.optim import Adam, ScipyOptimizer
from tests.models import LinearModel

rng = np.random.default_rng(7)
X = rng.normal(size=(30, 3))
Y = X @ np.array([[1.0], [-2.0], [0.5]]) + 0.1 * rng.normal(size=(30, 1))


def _model():
    model = LinearModel(3, 1)
    model.randomize(seed=0)
    return model


@pytest.mark.parametrize("verbose", [None, 1])
def test_fit_runs_when_sys_stderr_is_none(monkeypatch, verbose):
    """pythonw and some daemons run with ``sys.stderr = None``: the bar has nowhere to
    go, so it is off instead of crashing the fit (AttributeError on isatty/write)."""
    monkeypatch.setattr(sys, "stderr", None)
    res = _model().fit(X, Y, verbose=verbose, optimizer=ScipyOptimizer("L-BFGS-B"))
    assert res.success and len(res.history) == res.n_iterations


def test_fit_runs_when_sys_stderr_is_closed(monkeypatch):
    closed = io.StringIO()
    closed.close()  # isatty() raises ValueError on a closed stream
    monkeypatch.setattr(sys, "stderr", closed)
    res = _model().fit(X, Y, optimizer=ScipyOptimizer("L-BFGS-B"))
    assert res.success


def test_progress_bar_lines_pair_each_stage_with_its_own_count(monkeypatch):
    """A non-terminal stderr gets every refresh: the stage shown with a count must be
    that record's stage (the label was refreshed one record early), and the label is
    not followed by a doubled colon ("Adam: : 1it")."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    res = _model().fit(X, Y, verbose=1, epochs=3, batch_size=30,
                       optimizer=[Adam(lr=0.1), ScipyOptimizer("L-BFGS-B")])  # fmt: skip
    text = stream.getvalue()
    assert ": :" not in text
    shown = re.findall(r"(Adam|L-BFGS-B): (\d+)it", text)
    assert shown and shown[-1] == ("L-BFGS-B", str(len(res.history)))
    for stage, count in shown:
        assert (stage == "Adam") == (int(count) <= 3), (stage, count)


@pytest.mark.parametrize("verbose", ["no", "0", -1, 0.5])
def test_bad_verbose_is_rejected(verbose):
    with pytest.raises(MiniMLError, match=r"LinearModel\.fit: verbose must be .*got") as err:
        _model().fit(X, Y, verbose=verbose)
    assert repr(verbose) in str(err.value) and "verbose=0" in str(err.value)


@pytest.mark.parametrize("verbose", [0, 1, 2, True, False, np.int64(0)])
def test_good_verbose_values_are_accepted(verbose):
    assert _model().fit(X, Y, verbose=verbose).success


@pytest.mark.parametrize(
    "kwargs, text",
    [
        ({"min_delta": "abc"}, "min_delta must be a number >= 0, got 'abc'"),
        ({"min_delta": None}, "min_delta must be a number >= 0, got None"),
        ({"min_delta": True}, "min_delta must be a number >= 0, got True"),
        ({"patience": True}, "patience must be an int >= 1, got True"),
        ({"patience": 2.0}, "patience must be an int >= 1, got 2.0"),
        ({"monitor": None}, "monitor must be a history column name"),
        ({"monitor": 3}, "monitor must be a history column name"),
        ({"restore_best": "no"}, "restore_best must be True or False, got 'no'"),
    ],
)
def test_bad_early_stopping_arguments_are_miniml_errors(kwargs, text):
    with pytest.raises(MiniMLError, match="EarlyStopping: ") as err:
        EarlyStopping(**kwargs)
    assert text in str(err.value)
    assert "e.g." in str(err.value)


def test_early_stopping_accepts_numpy_integers_and_floats():
    stopper = EarlyStopping(patience=np.int64(3), min_delta=np.float32(0.5), restore_best=np.True_)
    assert stopper.patience == 3 and type(stopper.patience) is int
    assert stopper.min_delta == 0.5 and stopper.restore_best is True


def _keras_stop(values, patience, min_delta, mode):
    """Keras 3 `EarlyStopping.on_epoch_end` (without baseline/start_from_epoch): the
    epoch it stops at and the best epoch."""
    delta = abs(min_delta) * (1 if mode == "max" else -1)
    better = (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b)
    best, best_at, wait = (-math.inf if mode == "max" else math.inf), None, 0
    for epoch, value in enumerate(values):
        wait += 1
        if better(value - delta, best):
            best, best_at, wait = value, epoch, 0
            continue
        if wait >= patience and epoch > 0:
            return epoch, best_at
    return None, best_at


def _ours(values, patience, min_delta, mode):
    stopper = EarlyStopping(monitor="loss", patience=patience, min_delta=min_delta, mode=mode)
    state = FitState(None, History(), ["loss"])
    stopper.on_fit_begin(state)
    for epoch, value in enumerate(values):
        state.set_iterate(np.array([float(epoch)]), lambda x: x)
        record = {"loss": value, "stage": "s", "iteration": epoch + 1}
        if stopper.on_iteration_end(state, record):
            return epoch, _best_epoch(stopper)
    return None, _best_epoch(stopper)


def _best_epoch(stopper):
    return None if stopper.best_buffer is None else int(stopper.best_buffer[0])


@pytest.mark.parametrize("mode", ["min", "max"])
def test_early_stopping_matches_keras_on_hand_made_sequences(mode):
    """min_delta, mode and patience as Keras counts them (values on a 1/8 grid, so the
    comparisons with min_delta have no round-off ties), NaN and infinite values included:
    never an improvement, and no stop at the first evaluation."""
    grid = np.random.default_rng(3)
    for _ in range(400):
        values = grid.integers(-8, 8, size=grid.integers(2, 10)) / 8
        values[grid.random(values.size) < 0.2] = grid.choice([np.nan, np.inf, -np.inf])
        values = values.tolist()
        patience = int(grid.integers(1, 4))
        min_delta = float(grid.choice([0.0, 0.125, 0.375]))
        assert _ours(values, patience, min_delta, mode) == _keras_stop(
            values, patience, min_delta, mode
        ), (values, patience, min_delta)


@pytest.mark.parametrize("nan", [np.nan, np.float64(np.nan), np.float32(np.nan)])
def test_early_stopping_on_values_that_are_never_finite_says_so(nan):
    stopper = EarlyStopping(monitor="loss", patience=1)
    state = FitState(None, History(), ["loss"])
    stopper.on_fit_begin(state)
    state.set_iterate(np.zeros(1), lambda x: x)
    assert not stopper.on_iteration_end(state, {"loss": nan, "stage": "s", "iteration": 1})
    assert stopper.on_iteration_end(state, {"loss": nan, "stage": "s", "iteration": 2})
    assert "loss did not improve" in state.stop_reason
    assert "none of its values was finite (last nan)" in state.stop_reason


@pytest.mark.parametrize("mode", ["min", "max"])
def test_early_stopping_rounds_its_min_delta_comparison_as_keras(mode):
    """Values and min_delta on a 0.1 grid (not representable exactly), so that
    ``value + min_delta`` and ``best - min_delta`` round differently at ties: the stop
    epoch and the best epoch still equal the Keras transcription's."""
    grid = np.random.default_rng(4)
    for _ in range(400):
        values = list(np.round(grid.integers(0, 10, size=grid.integers(2, 10)) * 0.1, 1))
        patience = int(grid.integers(1, 4))
        min_delta = float(grid.choice([0.1, 0.2, 0.3]))
        assert _ours(values, patience, min_delta, mode) == _keras_stop(
            values, patience, min_delta, mode
        ), (values, patience, min_delta)
