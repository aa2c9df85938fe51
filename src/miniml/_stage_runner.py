"""One optimizer stage of a fit: the `Problem` an optimizer sees, and the write-back.

`miniml.fitting.fit_model` validates the inputs and runs the stages; a `StageRunner`
holds what the stages of one fit share (data, chunked copies, hyperparameters) and
turns each stage's result into the model's new parameter buffer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from miniml._chunked import chunk_data
from miniml.data import to_device
from miniml.distributed import local_device_count, shard_rows, shard_samples
from miniml.errors import MiniMLError
from miniml.monitor import FitMonitor
from miniml.objective import Hyper, objective_for
from miniml.optim.base import FitOptions, MiniMLOptimizer, OptimizerResult, Problem, TrainableSlice

if TYPE_CHECKING:
    from miniml.model import MiniMLModel

__all__ = ["StageRunner"]


class StageRunner:
    """Runs one optimizer stage from the model's current parameters and writes back."""

    def __init__(
        self, model: MiniMLModel, static: tuple, data: Any, hyper: Hyper, n_samples: int,
        reduction: str | None, mesh: Any = None,
    ) -> None:  # fmt: skip
        self.model, self.static, self.data, self.hyper = model, static, data, hyper
        self.n_samples, self.reduction = n_samples, reduction
        self.mesh = mesh
        self.chunked: dict[int | str, Any] = {}
        self.last_chunk: int | None = None

    def effective_chunk(self, chunk: int | None) -> int | None:
        """The chunk size to evaluate with: None for direct evaluation.

        On a device mesh every evaluation is chunked (one chunk by default), with the
        chunk size rounded up to a multiple of the number of devices.
        """
        n = self.n_samples
        if self.mesh is None:
            return None if chunk is None or chunk >= n else chunk
        size = n if chunk is None else min(chunk, n)
        k = local_device_count(self.mesh)  # rows of this process, spread over its devices
        return -(-size // k) * k

    def data_for(self, chunk: int | None) -> Any:
        """The data as the objective expects it: plain, or padded and chunked."""
        if chunk is None:
            if self.mesh is None:
                return self.data
            if "samples" not in self.chunked:  # mini-batch training on a mesh
                where = f"{type(self.model).__name__}.fit"
                self.chunked["samples"] = shard_samples(self.data, self.n_samples, self.mesh,
                                                        where)  # fmt: skip
            return self.chunked["samples"]
        if chunk not in self.chunked:
            chunked = chunk_data(self.data, self.n_samples, chunk)
            self.chunked[chunk] = chunked if self.mesh is None else shard_rows(chunked, self.mesh)
        return self.chunked[chunk]

    def __call__(
        self,
        label: str,
        optimizer: MiniMLOptimizer,
        frozen: frozenset[str],
        options: FitOptions,
        monitor: FitMonitor,
        chunk: int | None = None,
    ) -> OptimizerResult:
        model = self.model
        dtype = model.dtype
        # Stochastic stages gather batches from the (sharded) rows: never chunked.
        chunk = None if optimizer.stochastic else self.effective_chunk(chunk)
        self.last_chunk = chunk
        if len(frozen) == len(model.params):
            # _pre_fit (or a stage hook) fixed every parameter, e.g. from a closed form:
            # a successful stage with nothing to do, as miniml-jax reports it.
            return OptimizerResult(
                x=model.get_buffer(copy=False),
                fun=self.objective_at(model.get_buffer(copy=False)),
                success=True,
                message="No parameters left to fit after pre-fitting (every parameter is fixed).",
            )
        objective = objective_for(model, frozen, self.static, chunk)
        buffer = model.get_buffer(copy=False)
        trainable = objective.trainable
        x0 = np.asarray(buffer if trainable is None else buffer[trainable])
        layout, start = [], 0
        for name, param in model.params.items():
            if name not in frozen:
                layout.append(TrainableSlice(name, param.shape, start))
                start += param.size
        base = None if trainable is None else buffer

        problem = Problem(objective, x0, base, self.data_for(chunk), self.hyper, layout,
                          self.n_samples, options, loss_reduction=self.reduction)  # fmt: skip

        def to_buffer(x: Any) -> Any:
            # A compiled optimizer's result is on the device already, and a SciPy point
            # usually is too: the device array its last evaluation made of it.
            theta = problem.on_device_at(x) if isinstance(x, np.ndarray) else x
            if not (isinstance(theta, jax.Array) and theta.dtype == dtype and not theta.committed):
                theta = to_device(np.asarray(x, dtype))
            return theta if trainable is None else buffer.at[trainable].set(theta)

        problem.monitor, problem.model = monitor, model
        monitor.begin_stage(label, to_buffer, self.hyper)
        try:
            outcome = optimizer.minimize(problem)
        finally:
            monitor.end_stage()
        theta = np.asarray(outcome.x, dtype)
        if not np.all(np.isfinite(theta)):
            raise MiniMLError(
                f"{type(model).__name__}.fit: optimizer {optimizer.name} returned non-finite "
                "parameters; they were not written into the model. A MiniMLOptimizer must "
                "return a finite point."
            )
        model.set_buffer(to_buffer(outcome.x))
        return outcome

    def objective_at(self, buffer: Any) -> float:
        objective = objective_for(self.model, frozenset(), self.static, self.last_chunk)
        return float(objective.value(buffer, None, self.data_for(self.last_chunk), self.hyper))
