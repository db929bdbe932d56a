"""Retraining references: closed-form posteriors (and, later, NUTS/SVI retraining)."""

from .conjugate import BayesianLinearRegression, BetaBernoulli, GaussianPosterior
from .retrain import Reference, convergence, retrain

__all__ = [
    "BayesianLinearRegression",
    "BetaBernoulli",
    "GaussianPosterior",
    "Reference",
    "convergence",
    "retrain",
]
