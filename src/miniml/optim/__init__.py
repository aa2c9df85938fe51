"""Optimizers accepted by `MiniMLModel.fit`."""

from miniml.optim.adam import AdamOptimizer, AdamWOptimizer
from miniml.optim.base import (
    FitOptions,
    FitResult,
    MiniMLOptimizer,
    MiniMLOptimResult,
    OptimizerResult,
    Problem,
    TrainableSlice,
)
from miniml.optim.lbfgs import LBFGS
from miniml.optim.optimizers import SGD, AdaGrad, Adam, AdamW, NAdam, RMSProp
from miniml.optim.schedules import (
    Schedule,
    constant_schedule,
    cosine_decay_schedule,
    exponential_decay,
    linear_schedule,
    warmup_cosine_decay_schedule,
    warmup_exponential_decay_schedule,
)
from miniml.optim.scipy import METHODS, ScipyOptimizer
from miniml.optim.stochastic import OptaxOptimizer, Optimizer, StochasticOptimizer

__all__ = [
    "LBFGS",
    "METHODS",
    "SGD",
    "AdaGrad",
    "Adam",
    "AdamOptimizer",
    "AdamW",
    "AdamWOptimizer",
    "FitOptions",
    "FitResult",
    "MiniMLOptimResult",
    "MiniMLOptimizer",
    "NAdam",
    "OptaxOptimizer",
    "Optimizer",
    "OptimizerResult",
    "Problem",
    "RMSProp",
    "Schedule",
    "ScipyOptimizer",
    "StochasticOptimizer",
    "TrainableSlice",
    "constant_schedule",
    "cosine_decay_schedule",
    "exponential_decay",
    "linear_schedule",
    "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule",
]
