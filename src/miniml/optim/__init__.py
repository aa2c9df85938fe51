"""Optimizers accepted by `MiniMLModel.fit`."""

from miniml.optim.base import (
    FitOptions,
    FitResult,
    MiniMLOptimizer,
    MiniMLOptimResult,
    OptimizerResult,
    Problem,
    TrainableSlice,
)
from miniml.optim.scipy import METHODS, ScipyOptimizer

__all__ = [
    "METHODS",
    "FitOptions",
    "FitResult",
    "MiniMLOptimResult",
    "MiniMLOptimizer",
    "OptimizerResult",
    "Problem",
    "ScipyOptimizer",
    "TrainableSlice",
]
