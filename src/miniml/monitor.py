"""The per-iteration host step of a fit: history, validation, callbacks, progress bar.

Optimizers call `Problem.report_iteration` once per iteration or epoch; the fit driver
points that at a `FitMonitor`, so both optimizer families get the same records.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from miniml.callbacks import Callback, FitState
from miniml.errors import MiniMLError
from miniml.history import BASE_COLUMNS, History
from miniml.objective import Hyper

if TYPE_CHECKING:
    from miniml.model import MiniMLModel

__all__ = ["FitMonitor", "Validator"]


class Validator:
    """Compiled evaluation of ``val_loss`` and metrics on validation data (inference mode).

    ``val_loss`` is the training objective's formula on the validation data: data loss
    plus ``reg_lambda`` times the penalty (plus any activity term), as in Keras.
    """

    def __init__(
        self,
        model: MiniMLModel,
        X: Any,
        y: Any,
        metrics: dict[str, Callable[..., Any]],
        static: tuple,
        where: str,
    ) -> None:
        self.X, self.y = X, y
        key = ("validation", tuple(metrics.items()), static)
        compiled = model._compiled.get(key)
        if compiled is None:
            compiled = jax.jit(_validation_function(model, metrics, dict(static)))
            model._compiled[key] = compiled
        self.compiled = compiled
        self.columns = ["val_loss", *(f"val_{name}" for name in metrics)]
        self._check(model, where)

    def _check(self, model: MiniMLModel, where: str) -> None:
        hyper = _dummy_hyper(model)
        buffer = jax.ShapeDtypeStruct((model.size,), model.dtype)
        try:
            shapes = jax.eval_shape(self.compiled, buffer, self.X, self.y, hyper)
        except MiniMLError:
            raise
        except Exception as err:
            raise MiniMLError(
                f"{where}: evaluating validation_data or a metric failed: "
                f"{type(err).__name__}: {err}. Metrics must be JAX functions "
                "(y_true, y_pred) -> scalar (use jnp, not numpy or scikit-learn)."
            ) from err
        for name, shape in shapes.items():
            if shape.shape != ():
                raise MiniMLError(
                    f"{where}: metric {name!r} must return a scalar, but returns shape "
                    f"{shape.shape}. Reduce it, e.g. with jnp.mean."
                )

    def __call__(self, buffer: Any, hyper: Hyper) -> dict[str, float]:
        values = self.compiled(buffer, self.X, self.y, hyper)
        return {name: float(value) for name, value in values.items()}


def _dummy_hyper(model: MiniMLModel) -> Hyper:
    dtype = model.dtype
    return Hyper(
        reg_lambda=jnp.zeros((), dtype),
        active_reg_lambda=jnp.zeros((), dtype),
        reg_scales=jnp.asarray(model._reg_scales()),
        rng_key=jax.random.key(0),
        data_scale=jnp.ones((), dtype),
    )


def _validation_function(
    model: MiniMLModel, metrics: dict[str, Callable[..., Any]], static: dict[str, Any]
) -> Callable[..., Any]:
    from miniml.model import PredictMode, split_kernel_output

    loss = model.loss_function
    assert loss is not None

    def evaluate(buffer: Any, X: Any, y: Any, hyper: Hyper) -> dict[str, Any]:
        out = model._predict_kernel(X, buffer, rng_key=None, mode=PredictMode.INFERENCE, **static)
        y_pred, activity = split_kernel_output(out)
        value = loss(y, y_pred) + hyper.reg_lambda * model._regularization(buffer, hyper.reg_scales)
        if activity is not None:
            value = value + hyper.active_reg_lambda * activity
        results = {"val_loss": jnp.asarray(value).reshape(())}
        for name, metric in metrics.items():
            results[f"val_{name}"] = jnp.asarray(metric(y, y_pred))
        return results

    return evaluate


def _is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal; False for None (pythonw) or a closed stream."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _writable(stream: Any) -> bool:
    """Whether the bar can write to ``stream`` (not None, not closed)."""
    return stream is not None and not getattr(stream, "closed", False)


def check_verbose(value: Any, where: str) -> int | None:
    """``verbose`` as None or an int >= 0; bools and numpy integers are accepted."""
    if value is None or isinstance(value, bool | np.bool_):
        return None if value is None else int(value)
    if not isinstance(value, int | np.integer) or value < 0:
        raise MiniMLError(
            f"{where}: verbose must be None, True/False or an int >= 0, got {value!r}; pass "
            "verbose=0 for no progress bar, verbose=1 to force it on, or None to show it "
            "when stderr is a terminal."
        )
    return int(value)


class _Progress:
    """A tqdm bar per fit, updated once per record; off unless asked or on a terminal.

    The bar writes to stderr; with no usable stderr (None, as under pythonw, or closed)
    it is off even when asked for.
    """

    def __init__(self, verbose: int | None) -> None:
        stream = sys.stderr
        enabled = _is_terminal(stream) if verbose is None else bool(verbose)
        self.bar: Any = None
        if enabled and _writable(stream):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=None, unit="it", leave=True, dynamic_ncols=True, file=stream)

    def update(self, record: dict[str, Any]) -> None:
        if self.bar is None:
            return
        # No refresh until the count moves: the label, count and values on a line are
        # then all this record's. set_description_str: set_description's ": " would be
        # doubled by tqdm's own for a bar without a total ("Adam: : 3it").
        self.bar.set_description_str(str(record["stage"]), refresh=False)
        postfix = {"loss": f"{record['loss']:.6g}"}
        if record.get("val_loss") is not None:
            postfix["val_loss"] = f"{record['val_loss']:.6g}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class FitMonitor:
    """Turns optimizer reports into history records and runs validation and callbacks."""

    def __init__(
        self,
        model: MiniMLModel,
        callbacks: list[Callback],
        validator: Validator | None,
        validation_freq: int,
        verbose: int | bool | None,
    ) -> None:
        self.history = History()
        self.callbacks = callbacks
        self.validator = validator
        self.validation_freq = validation_freq
        columns = list(BASE_COLUMNS) + (validator.columns if validator else [])
        self.state = FitState(model, self.history, columns)
        where = f"{type(model).__name__}.fit"
        self.progress = _Progress(check_verbose(verbose, where))
        self.start = time.perf_counter()
        self.count_offset = (0, 0)
        self.stage_counts = (0, 0)
        self.ended_stage: tuple[str, int, int, int] | None = None

    @property
    def wants_iterates(self) -> bool:
        """Whether anything reads each iteration's parameters: callbacks or validation."""
        return bool(self.callbacks) or self.validator is not None

    def begin(self) -> None:
        for callback in self.callbacks:
            callback.on_fit_begin(self.state)

    def begin_stage(self, stage: str, to_buffer: Callable[[Any], Any], hyper: Hyper) -> None:
        """Start a stage; ``to_buffer`` maps the stage's trainable vector to a full buffer."""
        self.state.stage = stage
        self.to_buffer, self.hyper = to_buffer, hyper
        self.iteration = 0

    def end_stage(self) -> None:
        # What the stage reported, for a result of a stage that a KeyboardInterrupt ended.
        self.ended_stage = (self.state.stage, self.iteration, *self.stage_counts)
        fg, hv = self.count_offset
        self.count_offset = (fg + self.stage_counts[0], hv + self.stage_counts[1])
        self.stage_counts = (0, 0)

    def __call__(
        self,
        x: Any,
        fun: float,
        grad_norm: float | None,
        learning_rate: float | None,
        n_iterations: int | None,
        step_losses: Any,
        counts: tuple[int, int, int],
    ) -> bool:
        self.iteration += 1
        if x is not None:  # None: an iterate nothing reads (see `wants_iterates`)
            self.state.set_iterate(x, self.to_buffer)
        self.stage_counts = (counts[1] or counts[0], counts[2])
        record: dict[str, Any] = {
            "stage": self.state.stage,
            "iteration": self.iteration,
            "loss": float(fun),
            "grad": None if grad_norm is None else float(grad_norm),
            "fg_evals": self.count_offset[0] + self.stage_counts[0],
            "hessp_evals": self.count_offset[1] + self.stage_counts[1],
            "learning_rate": None if learning_rate is None else float(learning_rate),
            "time": time.perf_counter() - self.start,
        }
        if self.validator is not None:
            due = self.iteration % self.validation_freq == 0
            values = self.validator(self.state.buffer, self.hyper) if due else {}
            record.update({column: values.get(column) for column in self.validator.columns})
        if step_losses is not None:
            self.history.step_losses[(self.state.stage, self.iteration)] = np.asarray(
                step_losses
            ).tolist()
        self.history.append(record)
        self.progress.update(record)
        stop = False
        for callback in self.callbacks:
            stop = bool(callback.on_iteration_end(self.state, record)) or stop
        return stop or self.state.stop_reason is not None

    @property
    def last_buffer(self) -> Any:
        """The full buffer at the latest reported iterate, or None before the first."""
        return self.state.buffer

    def end(self) -> None:
        try:
            for callback in self.callbacks:
                callback.on_fit_end(self.state)
        finally:
            self.progress.close()


def check_validation_freq(value: Any, where: str) -> int:
    """``validation_freq`` as a Python int; Python and numpy integers >= 1, not bools."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise MiniMLError(
            f"{where}: validation_freq must be an int >= 1, got {value!r}; pass e.g. "
            "validation_freq=5 to validate every 5th iteration or epoch."
        )
    return int(value)
