"""Unlearning objectives as Pyro losses: the EUBO and reverse KL of Variational Bayesian Unlearning."""

from .eubo import EUBO, unlearning_model
from .rkl import RKL, ImportanceSamples, importance_samples

__all__ = [
    "EUBO",
    "RKL",
    "ImportanceSamples",
    "importance_samples",
    "unlearning_model",
]
