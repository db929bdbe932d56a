"""Retraining references: closed-form posteriors (and, later, NUTS/SVI retraining)."""

from .conjugate import BayesianLinearRegression, BetaBernoulli
from .retrain import Reference, convergence, retrain

__all__ = [
    "BayesianLinearRegression",
    "BetaBernoulli",
    "Reference",
    "convergence",
    "retrain",
]
