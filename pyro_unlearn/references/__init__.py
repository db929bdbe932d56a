"""Retraining references: closed-form posteriors (and, later, NUTS/SVI retraining)."""

from .conjugate import BayesianLinearRegression, BetaBernoulli, GaussianPosterior

__all__ = ["BayesianLinearRegression", "BetaBernoulli", "GaussianPosterior"]
