"""Callbacks: code that runs at the start, after every iteration or epoch, and at the end.

A callback subclasses `Callback` and overrides any of its three methods. They run on
the host, once per iteration of a SciPy method or once per epoch of a stochastic
optimizer, the same way for both. ``on_iteration_end`` returning True (or calling
``state.stop(reason)``) ends the fit after that iteration.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from miniml.errors import MiniMLError

if TYPE_CHECKING:
    from miniml.history import History
    from miniml.model import MiniMLModel

__all__ = ["Callback", "EarlyStopping", "FitState", "LambdaCallback"]


class FitState:
    """What callbacks see of a running fit.

    Attributes:
        model: the model being fitted (its buffer holds the stage's start, not the
            current iterate, until the stage ends).
        history: the `History` so far.
        stage: the current stage's label.
        buffer: the full parameter buffer at the latest accepted iterate.
        columns: the history columns this fit produces (known before it starts).
        stop_reason: why the fit was asked to stop, or None.
    """

    def __init__(self, model: MiniMLModel, history: History, columns: list[str]) -> None:
        self.model = model
        self.history = history
        self.columns = columns
        self.stage = ""
        self.stop_reason: str | None = None
        self.restore_buffer: Any = None
        self.restore_reason: str | None = None
        self._iterate: tuple[Any, Callable[[Any], Any]] | None = None
        self._buffer: Any = None

    @property
    def buffer(self) -> Any:
        """The full parameter buffer at the latest accepted iterate, or None."""
        # Built on first access: most iterations of most fits never need it, and
        # building it costs a host-to-device copy.
        if self._buffer is None and self._iterate is not None:
            x, to_buffer = self._iterate
            self._buffer = to_buffer(x)
        return self._buffer

    def set_iterate(self, x: Any, to_buffer: Callable[[Any], Any]) -> None:
        """Record the latest accepted iterate ``x`` (a stage's trainable vector)."""
        # SciPy may reuse its arrays: keep a copy of host iterates.
        self._iterate = (np.array(x) if isinstance(x, np.ndarray) else x, to_buffer)
        self._buffer = None

    def stop(self, reason: str) -> None:
        """Ask the fit to stop after the current iteration."""
        self.stop_reason = reason

    def restore(self, buffer: Any, reason: str) -> None:
        """Ask the fit to end with ``buffer`` as the model's parameters."""
        self.restore_buffer, self.restore_reason = buffer, reason


class Callback:
    """Base class of callbacks; every method is optional."""

    def on_fit_begin(self, state: FitState) -> None:
        """Called once before the first stage starts."""

    def on_iteration_end(self, state: FitState, record: dict[str, Any]) -> bool | None:
        """Called after each iteration (SciPy) or epoch (stochastic); True stops the fit."""
        return None

    def on_fit_end(self, state: FitState) -> None:
        """Called once when the fit ends, also after a stop or a KeyboardInterrupt."""


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_iteration_end=f)``."""

    def __init__(
        self, on_fit_begin: Any = None, on_iteration_end: Any = None, on_fit_end: Any = None
    ) -> None:
        for name, function in (("on_fit_begin", on_fit_begin),
                               ("on_iteration_end", on_iteration_end),
                               ("on_fit_end", on_fit_end)):  # fmt: skip
            if function is not None and not callable(function):
                raise MiniMLError(f"LambdaCallback: {name} must be callable, got {function!r}.")
        self._begin, self._iteration, self._end = on_fit_begin, on_iteration_end, on_fit_end

    def on_fit_begin(self, state: FitState) -> None:
        if self._begin is not None:
            self._begin(state)

    def on_iteration_end(self, state: FitState, record: dict[str, Any]) -> bool | None:
        return None if self._iteration is None else self._iteration(state, record)

    def on_fit_end(self, state: FitState) -> None:
        if self._end is not None:
            self._end(state)


def _number_or_none(value: Any) -> float | None:
    """``value`` as a float if it is a real number (not a bool or a string), else None."""
    if isinstance(value, bool | np.bool_ | str | bytes):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class EarlyStopping(Callback):
    """Stop when a monitored history column stops improving, and restore the best point.

    Args:
        monitor: the history column, e.g. ``"val_loss"`` (needs ``validation_data``),
            ``"loss"`` or ``"val_<metric>"``.
        patience: how many evaluations of ``monitor`` without improvement to allow.
        min_delta: the smallest change that counts as an improvement.
        restore_best: end the fit with the parameters of the best evaluation, whether
            this callback stopped the fit or it ended otherwise (converged, out of
            iterations, stopped by another callback), as Keras 3 does; the result's
            message then says which point was restored. False keeps the last point.
        mode: ``"min"`` (losses) or ``"max"`` (accuracy, R²).
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 10,
        min_delta: float = 0.0,
        restore_best: bool = True,
        mode: str = "min",
    ) -> None:
        if not isinstance(monitor, str):
            raise MiniMLError(
                f"EarlyStopping: monitor must be a history column name (a str), got "
                f"{monitor!r}; e.g. monitor='val_loss' or monitor='loss'."
            )
        if isinstance(patience, bool) or not isinstance(patience, int | np.integer) or patience < 1:
            raise MiniMLError(
                f"EarlyStopping: patience must be an int >= 1, got {patience!r}; e.g. "
                "patience=10 (evaluations without improvement before stopping)."
            )
        delta = _number_or_none(min_delta)
        if delta is None or not math.isfinite(delta) or delta < 0:
            raise MiniMLError(
                f"EarlyStopping: min_delta must be a number >= 0, got {min_delta!r}; e.g. "
                "min_delta=0.0 (any decrease counts) or min_delta=1e-4."
            )
        if not isinstance(restore_best, bool | np.bool_):
            raise MiniMLError(
                f"EarlyStopping: restore_best must be True or False, got {restore_best!r}; "
                "e.g. restore_best=False to keep the last point."
            )
        if mode not in ("min", "max"):
            raise MiniMLError(
                f"EarlyStopping: mode must be 'min' or 'max', got {mode!r}; e.g. mode='max' "
                "for accuracy or R²."
            )
        self.monitor, self.patience, self.min_delta = monitor, int(patience), delta
        self.restore_best, self.mode = bool(restore_best), mode

    def on_fit_begin(self, state: FitState) -> None:
        if self.monitor not in state.columns:
            hint = " Pass validation_data=(X_val, y_val) to fit." if self.monitor.startswith(
                "val_") else ""  # fmt: skip
            raise MiniMLError(
                f"EarlyStopping: this fit has no history column {self.monitor!r}; its "
                f"columns are {state.columns}.{hint}"
            )
        self.best = math.inf
        self.best_buffer: Any = None
        self.best_at = ""
        self.wait = 0
        self.evaluations = 0

    def on_iteration_end(self, state: FitState, record: dict[str, Any]) -> bool | None:
        value = record.get(self.monitor)
        if value is None:
            return None
        score = float(value) if self.mode == "min" else -float(value)
        self.evaluations += 1
        # Keras's comparison, rounding included: value + min_delta < best (mode "min").
        if score + self.min_delta < self.best:  # False for NaN: never an improvement
            self.best, self.best_buffer, self.wait = score, state.buffer, 0
            self.best_at = f"{record['stage']} iteration {record['iteration']}"
            return None
        self.wait += 1
        # As Keras, never at the first evaluation (only a NaN or an infinity gets here).
        if self.wait >= self.patience and self.evaluations > 1:
            if self.best_buffer is not None:
                best = f"best {self._best_value():.6g} at {self.best_at}"
            else:
                best = f"none of its values was finite (last {float(value)})"
            state.stop(
                f"EarlyStopping: {self.monitor} did not improve by more than {self.min_delta} "
                f"in {self.patience} evaluations; {best}."
            )
            return True
        return None

    def _best_value(self) -> float:
        return self.best if self.mode == "min" else -self.best

    def on_fit_end(self, state: FitState) -> None:
        if self.restore_best and self.best_buffer is not None:
            state.restore(self.best_buffer, f"restored the best {self.monitor} from {self.best_at}")
